"""Documented public functions over the gkd:: ops."""
from __future__ import annotations

from typing import Optional

import torch

from .graph import Graph

Tensor = torch.Tensor
_lib = torch.ops.gkd

_REDUCES = ("sum", "mean", "max")


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
    t = _transpose_if_needed(graph, b)
    out = _lib.sddmm(graph.rowptr, graph.col, a, b, heads, *t)
    return out.squeeze(1) if squeeze else out


def _transpose_if_needed(graph: Graph, x: Tensor):
    if torch.is_grad_enabled() and x.requires_grad:
        return graph.transpose()
    return (None, None, None)


# ------------------------------------------------------------------ LSP
LSP_KERNELS = ("rbf", "laplacian", "cosine", "poly", "l2", "linear")
LSP_REDUCTIONS = ("node_mean", "edge_mean", "sum", "none")
# kernel -> (name of its parameter, default); kernels without one take none.
_LSP_PARAMS = {"rbf": ("gamma", 0.5), "laplacian": ("sigma", 100.0)}


def _lsp_param(kernel: str, kernel_params: dict) -> float:
    name, default = _LSP_PARAMS.get(kernel, (None, 0.0))
    unknown = set(kernel_params) - ({name} if name else set())
    if unknown:
        allowed = f"'{name}'" if name else "none"
        raise ValueError(f"gkd_ext.lsp_loss: unknown kernel parameter(s) {sorted(unknown)} for "
                         f"kernel {kernel!r} (it takes {allowed})")
    if name is None:
        return 0.0
    value = kernel_params.get(name, default)
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"gkd_ext.lsp_loss: '{name}' must be a number, got {value!r}") from None
    if not (value > 0 and value != float("inf")):
        raise ValueError(f"gkd_ext.lsp_loss: '{name}' of the {kernel} kernel must be a finite "
                         f"number > 0, got {value}")
    return value


def lsp_loss(graph: Graph, h_student: Tensor, h_teacher: Tensor, kernel: str = "rbf",
             reduction: str = "node_mean", **kernel_params) -> Tensor:
    r"""Local structure preserving (LSP) loss, fused: one pass over the edges, O(N) memory.

    For every edge :math:`j \to i` (CSR by destination) and each feature space, the kernel
    logit :math:`l_{ij} = k(h_i, h_j)`; per destination a softmax over its incoming edges,
    :math:`P_i(j) = \mathrm{softmax}_{j \in N_{in}(i)}\, l_{ij}`; and per node

    .. math:: \mathrm{KL}_i = \sum_{j} P^t_i(j)\,\big(\log P^t_i(j) - \log P^s_i(j)\big)

    (KL of teacher to student). A node without incoming edges has :math:`\mathrm{KL}_i = 0`.
    No self-loop is added. Kernels (the logit *is* the kernel value):

    - ``rbf``: :math:`\exp(-\gamma \|a-b\|^2)`, ``gamma=0.5``
    - ``laplacian``: :math:`\exp(-\|a-b\|_1 / \sigma)`, ``sigma=100``
    - ``cosine``: :math:`\langle a,b\rangle / (\|a\|\|b\|)` (each norm clamped at 1e-8)
    - ``poly``: cosine squared
    - ``l2``: :math:`+\|a-b\|_2` (farther neighbours get more mass)
    - ``linear``: :math:`\langle a,b\rangle`

    Args:
        graph: a square :class:`Graph` (``num_src == num_dst == N``).
        h_student: ``[N, D_s]`` student node representations.
        h_teacher: ``[N, D_t]`` teacher node representations; ``D_t`` may differ from ``D_s``.
            Same dtype and device as ``h_student``.
        kernel: one of ``rbf``, ``laplacian``, ``cosine``, ``poly``, ``l2``, ``linear``.
        reduction: ``node_mean`` (mean of KL_i over all N nodes: DGL / Alignahead / original
            LSP), ``edge_mean`` (sum of KL_i divided by E: PyG ``F.kl_div(..., 'mean')`` of
            efficient-gnns), ``sum``, or ``none`` (the ``[N]`` vector). With no nodes or no
            edges the means are 0.
        **kernel_params: ``gamma`` (rbf) or ``sigma`` (laplacian), finite and > 0.

    Returns:
        A scalar, or ``[N]`` for ``reduction="none"``, in the inputs' dtype.

    Dtypes: float32/float64 on CPU; float16/bfloat16 too on CUDA (accumulated in float32).
    Gradients flow to ``h_student`` and, when it requires grad, to ``h_teacher`` (online
    mutual distillation). Memory: O(N) statistics (the row log-sum-exps) forward and O(E)
    scalars backward; nothing of size ``E x D`` is formed (the unfused reference gathers
    ``E x D`` per model). The backward recomputes the kernel values and walks the graph's cached
    transpose for the neighbour side, so it is deterministic (no atomics).

    Example:
        >>> g = Graph.from_edge_index(torch.tensor([[0, 1, 2, 0], [1, 2, 0, 2]]), 3)
        >>> h_s = torch.randn(3, 16, requires_grad=True)
        >>> h_t = torch.randn(3, 32)
        >>> loss = lsp_loss(g, h_s, h_t, kernel="laplacian", reduction="node_mean", sigma=10.0)
        >>> loss.backward()
    """
    fn = "lsp_loss"
    _check_graph(fn, graph)
    if kernel not in LSP_KERNELS:
        raise ValueError(f"gkd_ext.lsp_loss: 'kernel' must be one of {LSP_KERNELS}, got {kernel!r}")
    if reduction not in LSP_REDUCTIONS:
        raise ValueError(f"gkd_ext.lsp_loss: 'reduction' must be one of {LSP_REDUCTIONS}, "
                         f"got {reduction!r}")
    param = _lsp_param(kernel, kernel_params)
    for name, h in (("h_student", h_student), ("h_teacher", h_teacher)):
        if not isinstance(h, Tensor):
            raise TypeError(f"gkd_ext.lsp_loss: '{name}' must be a torch.Tensor, got {type(h).__name__}")
        if h.dim() != 2:
            raise ValueError(f"gkd_ext.lsp_loss: '{name}' must be 2-D [N, D], got shape {list(h.shape)}")
        if not h.is_floating_point():
            raise ValueError(f"gkd_ext.lsp_loss: '{name}' must be floating point, got {h.dtype}")
    if not graph.is_square:
        raise ValueError(f"gkd_ext.lsp_loss: the graph must be square (num_src == num_dst), got "
                         f"{graph.num_src} sources and {graph.num_dst} destinations")
    n = graph.num_dst
    for name, h in (("h_student", h_student), ("h_teacher", h_teacher)):
        if h.size(0) != n:
            raise ValueError(f"gkd_ext.lsp_loss: '{name}' must have N = {n} rows (one per node), "
                             f"got shape {list(h.shape)}")
    if h_teacher.dtype != h_student.dtype:
        raise ValueError(f"gkd_ext.lsp_loss: 'h_teacher' has dtype {h_teacher.dtype} but "
                         f"'h_student' has {h_student.dtype}; cast one of them")
    _check_device(fn, graph, h_student, h_teacher)
    needs_grad = torch.is_grad_enabled() and (h_student.requires_grad or h_teacher.requires_grad)
    t = graph.transpose() if needs_grad else (None, None, None)
    kl, _ = _lib.lsp(graph.rowptr, graph.col, h_student, h_teacher, kernel, param, *t)
    if reduction == "none":
        return kl
    total = kl.sum()
    if reduction == "node_mean":
        return total / max(n, 1)
    if reduction == "edge_mean":
        return total / max(graph.num_edges, 1)
    return total
