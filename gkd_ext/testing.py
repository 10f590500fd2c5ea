"""Helpers for testing the ops: random graphs with the cases kernels get wrong (isolated
nodes, self-loops, duplicate edges), feature matrices, losses with their gradients, and the
low-precision accuracy rule. The test suite imports them; they need no test framework, so
users' own tests may use them too.

Example:
    >>> g = random_graph(20, 60, isolated=2, self_loops=True, duplicates=5)
    >>> h_s, h_t = feature_pair(20, 8, 16)
    >>> loss, g_s, g_t = loss_and_grads(lambda a, b: gkd_ext.lsp_loss(g, a, b), h_s, h_t)
"""
from __future__ import annotations

from typing import Callable, Optional, Tuple, Union

import torch

from .graph import Graph

Tensor = torch.Tensor

#: The (need_s, need_t) / (need_x, need_value) combinations a backward op is checked with.
NEEDS = ((True, True), (True, False), (False, True))


def random_graph(num_nodes: Union[int, Tuple[int, int]], num_edges: int, device="cpu",
                 seed: int = 0, *, isolated: int = 0, self_loops: bool = False,
                 duplicates: int = 0) -> Graph:
    """A seeded random graph of ``num_edges`` edges drawn uniformly, plus the awkward cases.

    Args:
        num_nodes: ``N`` (square) or ``(num_src, num_dst)``.
        num_edges: edges drawn uniformly (repeats possible).
        isolated: the last ``isolated`` destinations receive no edge.
        self_loops: add ``i -> i`` for every third node ``i`` that is not isolated.
        duplicates: repeat the first ``duplicates`` drawn edges.
    """
    n_src, n_dst = (num_nodes, num_nodes) if isinstance(num_nodes, int) else num_nodes
    gen = torch.Generator().manual_seed(seed)
    src = torch.randint(0, n_src, (num_edges,), generator=gen)
    dst = torch.randint(0, n_dst - isolated, (num_edges,), generator=gen)
    if self_loops:
        loops = torch.arange(0, min(n_src, n_dst - isolated), 3)
        src, dst = torch.cat([src, loops]), torch.cat([dst, loops])
    if duplicates:
        src, dst = torch.cat([src, src[:duplicates]]), torch.cat([dst, dst[:duplicates]])
    return Graph.from_edge_index(torch.stack([src, dst]), (n_src, n_dst)).to(device)


def features(n: int, d: int, device="cpu", dtype: torch.dtype = torch.float64,
             scale: float = 1.0, grad: bool = True) -> Tensor:
    """``scale * N(0, 1)`` features ``[n, d]``, drawn on the CPU generator (the same numbers on
    every device), a leaf that requires grad when ``grad``."""
    return (torch.randn(n, d, dtype=dtype) * scale).to(device).requires_grad_(grad)


def feature_pair(n: int, d_s: int, d_t: Optional[int] = None, device="cpu",
                 dtype: torch.dtype = torch.float64, scale: float = 1.0,
                 normalize: bool = False) -> Tuple[Tensor, Tensor]:
    """Student and teacher features ``[n, d_s]``, ``[n, d_t]`` (``d_t`` defaults to ``d_s``),
    rows L2-normalised when ``normalize``; both leaves requiring grad."""
    a = features(n, d_s, device, dtype, scale, grad=False)
    b = features(n, d_s if d_t is None else d_t, device, dtype, scale, grad=False)
    if normalize:
        a, b = torch.nn.functional.normalize(a, dim=1), torch.nn.functional.normalize(b, dim=1)
    return a.requires_grad_(), b.requires_grad_()


def float64_leaves(*tensors: Tensor) -> Tuple[Tensor, ...]:
    """Detached float64 copies requiring grad: the inputs of a float64 oracle."""
    return tuple(t.detach().double().requires_grad_() for t in tensors)


def grads(loss: Tensor, *inputs: Tensor) -> Tuple[Tensor, ...]:
    """Gradients of ``loss`` w.r.t. ``inputs``; a non-scalar loss is first reduced with
    distinct weights (0.5 .. 1.5), so that every element's gradient is checked."""
    if loss.dim() > 0:
        loss = (loss * torch.linspace(0.5, 1.5, loss.numel(), dtype=loss.dtype,
                                      device=loss.device)).sum()
    return torch.autograd.grad(loss, inputs)


def loss_and_grads(fn: Callable[..., Tensor], *inputs: Tensor) -> Tuple[Tensor, ...]:
    """``(fn(*inputs).detach(), *gradients w.r.t. inputs)``."""
    loss = fn(*inputs)
    return (loss.detach(), *grads(loss, *inputs))


def assert_low_precision_close(got: Tensor, exact: Tensor, torch_low: Tensor,
                               eps: float = 1e-3) -> None:
    """The accuracy rule for float16/bfloat16/tensor-core results: the kernel's error against
    the float64 result is at most twice the error of the same math in PyTorch at that
    precision, plus ``eps``: ``max|got - exact| <= 2 max|torch_low - exact| + eps``."""
    err = (got.double() - exact.double()).abs().max().item()
    base = (torch_low.double() - exact.double()).abs().max().item()
    assert err <= 2 * base + eps, (f"low-precision error {err:.3g} exceeds 2 x {base:.3g} "
                                   f"(PyTorch at the same precision) + {eps:.3g}")
