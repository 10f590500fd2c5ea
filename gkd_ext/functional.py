"""Documented public functions over the gkd:: ops."""
from __future__ import annotations

import contextlib
import math
from typing import Optional

import torch

from .graph import Graph
from .kernels import (GSP_KERNELS, KERNELS, LSP_KERNELS, LSP_REDUCTIONS, PRECISIONS,  # noqa: F401
                      SPMM_REDUCES, check_choice, resolve_kernel)

Tensor = torch.Tensor
_lib = torch.ops.gkd

IMPLS = ("fused", "reference")
_impl = "fused"


def set_impl(name: str) -> None:
    """Route every public function to the fused ops (``"fused"``, the default) or to the
    unfused pure-PyTorch references of :mod:`gkd_ext.reference` (``"reference"``): same math,
    the memory and speed of what users would write by hand. For comparisons and debugging."""
    global _impl
    _impl = check_choice("gkd_ext.set_impl", "name", name, IMPLS)


def get_impl() -> str:
    """The implementation the public functions use now: ``"fused"`` or ``"reference"``."""
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


def registered_kernels() -> dict:
    """Every ``gkd::`` op of this build with the dispatch keys that have a kernel for it, e.g.
    ``{"spmm": ("CPU", "CUDA", "Meta", "Autograd"), ...}``, as the op ``gkd::build_info``
    reads them from the dispatcher."""
    _, ops, keys = _lib.build_info()
    return {op: tuple(k.split(",")) if k else () for op, k in zip(ops, keys)}


# The CUDA kernels are registered when gkd_ext._C loads and never change afterwards.
_CUDA_OPS = frozenset(op for op, keys in registered_kernels().items() if "CUDA" in keys)


def has_cuda_kernels(op: str = "spmm") -> bool:
    """Whether this build of gkd_ext registered CUDA kernels for ``gkd::<op>``."""
    return op in _CUDA_OPS


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
    check_choice("gkd_ext.spmm", "reduce", reduce, SPMM_REDUCES)
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


# ---------------------------------------------------------------- similarity losses (G-CRD, GSP)
def _check_features(fn: str, name: str, t, rows: str) -> None:
    if not isinstance(t, Tensor):
        raise TypeError(f"gkd_ext.{fn}: '{name}' must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() != 2:
        raise ValueError(f"gkd_ext.{fn}: '{name}' must be 2-D [{rows}, D], got shape {list(t.shape)}")
    if not t.is_floating_point():
        raise ValueError(f"gkd_ext.{fn}: '{name}' must be a floating-point tensor, got {t.dtype}")


def _check_pair(fn: str, a, a_name: str, b, b_name: str, same_width: bool,
                b_more_rows: bool = False) -> None:
    # b_more_rows: b holds candidates, a's n positives first then extra negatives (InfoNCE).
    _check_features(fn, a_name, a, "n")
    _check_features(fn, b_name, b, "n")
    if b_more_rows:
        if b.size(0) < a.size(0):
            raise ValueError(f"gkd_ext.{fn}: '{b_name}' must have at least n = {a.size(0)} rows "
                             f"(rows 0..n-1 are the positives of the n anchors of '{a_name}', further "
                             f"rows extra negatives), got {list(b.shape)}")
    elif a.size(0) != b.size(0):
        raise ValueError(f"gkd_ext.{fn}: '{a_name}' and '{b_name}' must have the same number of rows "
                         f"n, got {list(a.shape)} and {list(b.shape)}")
    if same_width and a.size(1) != b.size(1):
        raise ValueError(f"gkd_ext.{fn}: '{a_name}' and '{b_name}' must have the same width D, got "
                         f"{list(a.shape)} and {list(b.shape)}")
    if a.size(0) == 0:
        raise ValueError(f"gkd_ext.{fn}: '{a_name}' has no rows (n = 0): the loss is a mean over nodes")
    if a.device != b.device:
        raise RuntimeError(f"gkd_ext.{fn}: '{a_name}' is on {a.device} but '{b_name}' is on {b.device}")
    if a.dtype != b.dtype:
        raise RuntimeError(f"gkd_ext.{fn}: '{a_name}' is {a.dtype} but '{b_name}' is {b.dtype}")
    op = "infonce" if fn == "contrastive_loss" else "gsp"
    if a.is_cuda and not has_cuda_kernels(op):
        raise RuntimeError(f"gkd_ext.{fn}: got CUDA tensors, but this gkd_ext build has CPU kernels "
                           "only (rebuild with FORCE_CUDA=1 on a machine with the CUDA toolkit)")


def contrastive_loss(z_s: Tensor, z_t: Tensor, temperature: float = 0.075,
                     symmetric: bool = False, precision: str = "ieee") -> Tensor:
    r"""Tiled in-batch InfoNCE between student and teacher embeddings (G-CRD).

    With logits :math:`S = z_s z_t^\top / \tau` (``n`` student anchors, ``m >= n`` teacher
    candidates, the positive of anchor i is candidate i):

    .. math:: L = \frac1n \sum_{i<n} \Big[\log \sum_{j<m} e^{S_{ij}} - S_{ii}\Big]

    which equals ``cross_entropy(z_s @ z_t.T / tau, arange(n))``. Candidates ``n..m-1`` are
    extra negatives: e.g. a distributed G-CRD, where each rank's anchors meet the candidates
    gathered from all ranks (rotated so that the rank's own come first), or memory-bank
    negatives. With ``symmetric=True`` (``m == n`` only) the loss is the mean of that and the
    teacher-anchored direction (rows of :math:`S^\top`).

    Args:
        z_s: student embeddings ``[n, D]`` (G-CRD feeds L2-normalised projections).
        z_t: teacher embeddings ``[m, D]``, ``m >= n``: rows ``0..n-1`` the positives of
            ``z_s``'s rows, any further rows extra negatives; same ``D``, dtype and device.
        temperature: :math:`\tau > 0` (0.075 in G-CRD, 0.05 with logit KD).
        symmetric: average both directions; needs ``m == n`` (an extra candidate has no
            positive to anchor on).
        precision: tile products in ``"ieee"`` (exact fp32/fp64, default), or on CUDA
            ``"tf32"`` / ``"bf16"`` tensor cores (inputs rounded, fp32 accumulation and
            statistics). CPU accepts only ``"ieee"``.

    Returns:
        A scalar tensor in the inputs' dtype. Gradients flow to ``z_s`` and ``z_t`` (all ``m``
        rows).

    Memory: O((n + m)·D): the forward keeps one log-sum-exp per row (and per column when
    symmetric) and the backward recomputes the logit tiles, so no ``n x m`` tensor is formed
    (16,384 nodes would need 1 GB of logits, 169k nodes 115 GB). Scratch on CPU: two
    256 x 2048 tiles per thread, plus one ``m x D`` gradient partial per thread for ``z_t``.

    Determinism: CPU results are bitwise reproducible for a given number of threads (per-thread
    partials are merged in a fixed order); the CUDA kernels use no atomics.

    Dtypes: float32/float64 on CPU; float16/bfloat16 too on CUDA (computed in float32).

    Example:
        >>> zs = torch.nn.functional.normalize(torch.randn(1000, 256), dim=1)
        >>> zt = torch.nn.functional.normalize(torch.randn(1000, 256), dim=1)
        >>> loss = contrastive_loss(zs, zt, temperature=0.075)
    """
    _check_pair("contrastive_loss", z_s, "z_s", z_t, "z_t", same_width=True, b_more_rows=True)
    if symmetric and z_t.size(0) != z_s.size(0):
        raise ValueError(f"gkd_ext.contrastive_loss: with symmetric=True 'z_t' must have exactly "
                         f"n = {z_s.size(0)} rows like 'z_s' (the teacher-anchored direction has no "
                         f"positive for an extra candidate), got {list(z_t.shape)}")
    temperature = float(temperature)
    if not (temperature > 0 and math.isfinite(temperature)):
        raise ValueError(f"gkd_ext.contrastive_loss: 'temperature' must be a finite number > 0, "
                         f"got {temperature}")
    check_choice("gkd_ext.contrastive_loss", "precision", precision, PRECISIONS)
    if precision != "ieee" and not z_s.is_cuda:
        raise ValueError(f"gkd_ext.contrastive_loss: precision={precision!r} needs CUDA tensor "
                         "cores; on CPU use precision='ieee'")
    if _impl == "reference":
        from .reference import infonce_dense
        return infonce_dense(z_s, z_t, temperature, bool(symmetric))
    return _lib.infonce(z_s, z_t, temperature, bool(symmetric), precision)[0]


def gsp_loss(h_s: Tensor, h_t: Tensor, kernel: str = "cosine", **kernel_params) -> Tensor:
    r"""Tiled global structure preserving (GSP) loss between student and teacher features.

    .. math:: L = \frac{1}{n^2} \sum_{a,b} \big(K^s_{ab} - K^t_{ab}\big)^2,
              \quad K^s_{ab} = k(h_s[a], h_s[b]),\ K^t_{ab} = k(h_t[a], h_t[b])

    Kernels ``k``: ``"cosine"`` :math:`\langle a,b\rangle/(\|a\|\|b\|)`; ``"poly"`` its square;
    ``"l2"`` :math:`\|a-b\|_2`; ``"rbf"`` :math:`\exp(-\gamma\|a-b\|^2)` (``gamma=0.5`` by
    default, the only kernel parameter). Distances are computed as
    :math:`\|a\|^2+\|b\|^2-2a\cdot b` of the rows minus their column mean (distances do not
    change under a common shift, and centring keeps a large common offset from cancelling the
    digits), clamped at 0 with an exact-zero diagonal; the ``l2`` gradient at distance 0 is
    defined as 0 (safe sqrt). Rows that are exact duplicates of other rows get a distance of
    rounding size rather than 0 from that identity. NaN or inf in the inputs give a NaN loss.

    Args:
        h_s: student features ``[n, D_s]``.
        h_t: teacher features ``[n, D_t]`` (``D_t`` may differ from ``D_s``); pass
            ``h_t.detach()`` for offline KD, or a tensor requiring grad for online KD.
        kernel: ``"cosine" | "poly" | "l2" | "rbf"``.
        **kernel_params: ``gamma`` (> 0) for ``"rbf"``.

    Returns:
        A scalar tensor in the inputs' dtype; gradients flow to both inputs.

    Memory: O(n·(D_s + D_t)): tiles of both kernel matrices are formed and reduced on the fly,
    the backward recomputes them; never ``n x n`` (nor the seed's ``n x n x D``).
    Determinism: per-block partials are added in a fixed order; no atomics.

    Example:
        >>> loss = gsp_loss(torch.randn(2048, 64), torch.randn(2048, 256), kernel="rbf", gamma=0.5)
    """
    _check_pair("gsp_loss", h_s, "h_s", h_t, "h_t", same_width=False)
    param = resolve_kernel("gkd_ext.gsp_loss", "gsp", kernel, kernel_params)
    if _impl == "reference":
        from .reference import gsp_dense
        return gsp_dense(h_s, h_t, kernel, **kernel_params)
    return _lib.gsp(h_s, h_t, kernel, param)[0]


# ------------------------------------------------------------------ LSP
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
        graph: a square :class:`Graph` (``num_src == num_dst == N``), or a sampled block
            (:mod:`gkd_ext.sampling`) whose destinations are its first ``num_dst`` sources:
            then the KL of those destinations, over the block's edges.
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
    param = resolve_kernel("gkd_ext.lsp_loss", "lsp", kernel, kernel_params)
    check_choice("gkd_ext.lsp_loss", "reduction", reduction, LSP_REDUCTIONS)
    _check_features(fn, "h_student", h_student, "N")
    _check_features(fn, "h_teacher", h_teacher, "N")
    if graph.num_dst > graph.num_src:
        raise ValueError(f"gkd_ext.lsp_loss: the graph must be square, or a sampled block whose "
                         f"destinations are its first sources (num_dst <= num_src), got "
                         f"{graph.num_src} sources and {graph.num_dst} destinations")
    n = graph.num_src
    for name, h in (("h_student", h_student), ("h_teacher", h_teacher)):
        if h.size(0) != n:
            raise ValueError(f"gkd_ext.lsp_loss: '{name}' must have N = {n} rows (one per node), "
                             f"got shape {list(h.shape)}")
    if not graph.is_square:   # a block: the KL of its destinations, over its edges
        from .sampling import padded_square
        kl = lsp_loss(padded_square(graph), h_student, h_teacher, kernel, "none",
                      **kernel_params)[: graph.num_dst]
        return _lsp_reduce(kl, graph.num_edges, reduction)
    if h_teacher.dtype != h_student.dtype:
        raise ValueError(f"gkd_ext.lsp_loss: 'h_teacher' has dtype {h_teacher.dtype} but "
                         f"'h_student' has {h_student.dtype}; cast one of them")
    _check_device(fn, graph, h_student, h_teacher)
    if _impl == "reference":
        from .reference import lsp_reference_pyg
        return lsp_reference_pyg(graph, h_student, h_teacher, kernel, reduction, **kernel_params)
    needs_grad = torch.is_grad_enabled() and (h_student.requires_grad or h_teacher.requires_grad)
    t = graph.transpose() if needs_grad else (None, None, None)
    kl, _, _ = _lib.lsp(graph.rowptr, graph.col, h_student, h_teacher, kernel, param, *t)
    return _lsp_reduce(kl, graph.num_edges, reduction)


def _lsp_reduce(kl: Tensor, num_edges: int, reduction: str) -> Tensor:
    """The per-destination KL ``kl`` reduced as ``lsp_loss``'s ``reduction`` says."""
    if reduction == "none":
        return kl
    total = kl.sum()
    if reduction == "node_mean":
        return total / max(kl.numel(), 1)
    if reduction == "edge_mean":
        return total / max(num_edges, 1)
    return total
