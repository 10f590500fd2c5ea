"""Documented public functions over the gkd:: ops."""
from __future__ import annotations

import contextlib
from typing import Optional

import torch

from .graph import Graph

Tensor = torch.Tensor
_lib = torch.ops.gkd

_REDUCES = ("sum", "mean", "max")
_IMPLS = ("fused", "reference")
_impl = "fused"


def set_impl(name: str) -> None:
    """Route every public function to the fused ops (``"fused"``, the default) or to the
    unfused pure-PyTorch references of :mod:`gkd_ext.reference` (``"reference"``): same math,
    the memory and speed of what users would write by hand. For comparisons and debugging."""
    global _impl
    if name not in _IMPLS:
        raise ValueError(f"gkd_ext.set_impl: 'name' must be one of {_IMPLS}, got {name!r}")
    _impl = name


def get_impl() -> str:
    return _impl


@contextlib.contextmanager
def use_impl(name: str):
    """``with use_impl("reference"): ...`` runs the block on the references."""
    previous = _impl
    set_impl(name)
    try:
        yield
    finally:
        set_impl(previous)


def has_cuda_kernels(op: str = "spmm") -> bool:
    """Whether this build of gkd_ext registered CUDA kernels for ``gkd::<op>``."""
    return torch._C._dispatch_has_kernel_for_dispatch_key(f"gkd::{op}", "CUDA")


def _check_device(fn: str, graph: Graph, *tensors: Tensor) -> None:
    for t in tensors:
        if t is None:
            continue
        if t.device != graph.device:
            raise RuntimeError(f"gkd_ext.{fn}: tensors must be on the graph's device {graph.device}, "
                               f"got one on {t.device} (move the graph with graph.to(device))")
        if t.is_cuda and not has_cuda_kernels():
            raise RuntimeError(
                f"gkd_ext.{fn}: got a CUDA tensor, but this gkd_ext build has CPU kernels only. "
                "Rebuild on a machine with the CUDA toolkit and a CUDA build of torch "
                "(FORCE_CUDA=1 pip install --no-build-isolation -e .)")


def _check_graph(fn: str, graph) -> None:
    if not isinstance(graph, Graph):
        raise TypeError(f"gkd_ext.{fn}: 'graph' must be a gkd_ext.Graph (build one with "
                        f"Graph.from_edge_index or Graph.from_sparse), got {type(graph).__name__}")


def spmm(graph: Graph, x: Tensor, value: Optional[Tensor] = None, reduce: str = "sum",
         validate: bool = False) -> Tensor:
    r"""Sparse-dense matrix product over a graph: message passing in one fused kernel.

    .. math:: \text{out}[i] = \bigoplus_{e=(j \to i)} \text{value}[e] \cdot x[j]

    with :math:`\oplus` one of ``sum``, ``mean`` (sum / in-degree) or ``max`` (element-wise);
    a node with no incoming edge gets 0.

    Args:
        graph: a :class:`Graph` with ``num_src`` sources and ``num_dst`` destinations.
        x: source features ``[num_src, D]``, or ``[num_src, H, F]`` with per-head values.
        value: edge values in the graph's edge order, ``[E]`` or ``[E, H]`` (one per head;
            with a 2-D ``x`` the ``D`` features split into ``H`` heads of ``D / H``).
            Defaults to ``graph.value``; None means 1 per edge.
        reduce: ``"sum"``, ``"mean"`` or ``"max"``.
        validate: also check the graph's structure (O(E)) before the call.

    Returns:
        ``[num_dst, D]`` (or ``[num_dst, H, F]``), in ``x``'s dtype.

    Dtypes: float32/float64 on CPU; float16/bfloat16 too on CUDA (accumulated in float32).
    Gradients flow to ``x`` and ``value``. The backward walks the graph's cached transpose,
    so it is deterministic (no atomics) and uses O(N + E) extra memory, never ``E x D``:
    the value gradient is a fused per-edge dot product. Memory of the forward: the output only.

    Example:
        >>> g = Graph.from_edge_index(torch.tensor([[0, 1, 2], [1, 2, 0]]), 3)
        >>> out = spmm(g, torch.randn(3, 16))
    """
    _check_graph("spmm", graph)
    if reduce not in _REDUCES:
        raise ValueError(f"gkd_ext.spmm: 'reduce' must be one of {_REDUCES}, got {reduce!r}")
    if not isinstance(x, Tensor):
        raise TypeError(f"gkd_ext.spmm: 'x' must be a torch.Tensor, got {type(x).__name__}")
    if value is None:
        value = graph.value
    _check_device("spmm", graph, x, value)
    if validate:
        graph.validate()
    heads_shape = None
    if x.dim() == 3:
        heads_shape = x.shape[1:]
        if value is None or value.dim() != 2 or value.size(1) != x.size(1):
            raise ValueError(f"gkd_ext.spmm: a 3-D 'x' [N, H, F] needs 'value' of shape [E, H] with "
                             f"H = {x.size(1)}, got {None if value is None else list(value.shape)}")
        x = x.reshape(x.size(0), -1)
    elif x.dim() != 2:
        raise ValueError(f"gkd_ext.spmm: 'x' must be [N_src, D] or [N_src, H, F], got shape {list(x.shape)}")
    if x.size(0) != graph.num_src:
        raise ValueError(f"gkd_ext.spmm: 'x' must have num_src = {graph.num_src} rows, got {x.size(0)}")
    if _impl == "reference":
        from .reference import spmm_reference
        out = spmm_reference(graph, x, value, reduce)
        return out if heads_shape is None else out.view(out.size(0), *heads_shape)
    t = _transpose_if_needed(graph, x)
    out, _ = _lib.spmm(graph.rowptr, graph.col, value, x, reduce, *t)
    return out if heads_shape is None else out.view(out.size(0), *heads_shape)


def sddmm(graph: Graph, a: Tensor, b: Tensor, heads: Optional[int] = None) -> Tensor:
    r"""Per-edge dot products (sampled dense-dense product).

    .. math:: \text{out}[e, h] = \langle a[i, h, :],\ b[j, h, :] \rangle \quad e = (j \to i)

    Args:
        graph: a :class:`Graph`.
        a: destination features ``[num_dst, D]`` or ``[num_dst, H, F]``.
        b: source features of the same width, ``[num_src, D]`` or ``[num_src, H, F]``.
        heads: number of heads ``H`` for 2-D inputs (``D`` split into ``H`` blocks); taken from
            the inputs when they are 3-D; None with 2-D inputs means a single head.

    Returns:
        ``[E]`` for a single head with 2-D inputs and ``heads=None``, else ``[E, H]``, in the
        graph's edge order. This is the gradient of :func:`spmm` w.r.t. its edge values and the
        raw score of GAT-style attention. O(E·H) memory; deterministic backward.
    """
    _check_graph("sddmm", graph)
    _check_device("sddmm", graph, a, b)
    squeeze = heads is None and a.dim() == 2
    if a.dim() == 3:
        if b.dim() != 3 or b.shape[1:] != a.shape[1:]:
            raise ValueError(f"gkd_ext.sddmm: 'a' {list(a.shape)} and 'b' {list(b.shape)} must share [H, F]")
        heads = a.size(1)
        a, b = a.reshape(a.size(0), -1), b.reshape(b.size(0), -1)
    heads = 1 if heads is None else int(heads)
    if a.dim() != 2 or b.dim() != 2:
        raise ValueError(f"gkd_ext.sddmm: 'a' and 'b' must be 2-D or 3-D, got {list(a.shape)} and {list(b.shape)}")
    if a.size(0) != graph.num_dst or b.size(0) != graph.num_src:
        raise ValueError(f"gkd_ext.sddmm: 'a' needs num_dst = {graph.num_dst} rows and 'b' num_src = "
                         f"{graph.num_src} rows, got {a.size(0)} and {b.size(0)}")
    if _impl == "reference":
        from .reference import sddmm_reference
        out = sddmm_reference(graph, a, b, heads)
        return out.squeeze(1) if squeeze else out
    t = _transpose_if_needed(graph, b)
    out = _lib.sddmm(graph.rowptr, graph.col, a, b, heads, *t)
    return out.squeeze(1) if squeeze else out


def _transpose_if_needed(graph: Graph, x: Tensor):
    if torch.is_grad_enabled() and x.requires_grad:
        return graph.transpose()
    return (None, None, None)
