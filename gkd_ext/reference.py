"""Pure-PyTorch, unfused references of every gkd_ext op.

They are the oracle of the tests (run in float64) and the "what users would write instead"
baseline of the benchmarks. They materialise what the fused kernels avoid (E x D gathers,
n x n similarity matrices), so use them only at sizes where that fits.
"""
from __future__ import annotations

from typing import Optional

import torch

from .graph import Graph, quiet_sparse_csr
from .kernels import LSP_REDUCTIONS, SPMM_REDUCES, check_choice, resolve_kernel

Tensor = torch.Tensor


def spmm_reference(graph: Graph, x: Tensor, value: Optional[Tensor] = None,
                   reduce: str = "sum") -> Tensor:
    """Gather-then-scatter SpMM: materialises the ``E x D`` messages."""
    check_choice("spmm_reference", "reduce", reduce, SPMM_REDUCES)
    if value is None:
        value = graph.value
    shape3 = x.shape[1:] if x.dim() == 3 else None
    x2 = x.reshape(x.size(0), -1)
    D = x2.size(1)
    msg = x2[graph.col]                                        # [E, D]
    if value is not None:
        H = 1 if value.dim() == 1 else value.size(1)
        msg = (msg.view(-1, H, D // H) * value.view(-1, H, 1)).view(-1, D)
    index = graph.row.view(-1, 1).expand(-1, D)
    out = x2.new_zeros(graph.num_dst, D)
    if reduce == "sum":
        out = out.scatter_add(0, index, msg)
    elif reduce == "mean":
        out = out.scatter_add(0, index, msg)
        deg = graph.degree("in").clamp(min=1).to(x.dtype).view(-1, 1)
        out = out / deg
    else:
        out = out.scatter_reduce(0, index, msg, reduce="amax", include_self=False)
    return out if shape3 is None else out.view(-1, *shape3)


def spmm_torch_sparse(graph: Graph, x: Tensor, value: Optional[Tensor] = None) -> Tensor:
    """``A @ x`` with a torch sparse CSR matrix (MKL on CPU, cuSPARSE on CUDA); sum only."""
    if value is None:
        value = graph.value if graph.value is not None else \
            torch.ones(graph.num_edges, dtype=x.dtype, device=x.device)
    with quiet_sparse_csr():
        adj = torch.sparse_csr_tensor(graph.rowptr, graph.col, value, (graph.num_dst, graph.num_src))
    return adj @ x


def sddmm_reference(graph: Graph, a: Tensor, b: Tensor, heads: int = 1) -> Tensor:
    """Per-edge dot products by gathering both endpoints: ``[E, heads]``."""
    a2, b2 = a.reshape(a.size(0), -1), b.reshape(b.size(0), -1)
    E, D = graph.num_edges, a2.size(1)
    prod = a2[graph.row] * b2[graph.col]
    return prod.view(E, heads, D // heads).sum(-1)


def infonce_dense(z_s: Tensor, z_t: Tensor, temperature: float = 0.075,
                  symmetric: bool = False) -> Tensor:
    """G-CRD InfoNCE as the seed wrote it: ``n x m`` logits and cross-entropy with targets
    ``arange(n)`` (student anchors ``[n, D]``, teacher candidates ``[m, D]``, m >= n, the first
    n the positives); ``symmetric`` (m == n) averages it with the teacher-anchored one."""
    if z_t.size(0) < z_s.size(0) or (symmetric and z_t.size(0) != z_s.size(0)):
        raise ValueError(f"infonce_dense: 'z_t' must have {'exactly' if symmetric else 'at least'} "
                         f"n = {z_s.size(0)} rows, got {list(z_t.shape)}")
    logits = z_s @ z_t.T / temperature
    target = torch.arange(z_s.size(0), device=z_s.device)
    loss = torch.nn.functional.cross_entropy(logits, target)
    if symmetric:
        loss = 0.5 * (loss + torch.nn.functional.cross_entropy(logits.T, target))
    return loss


def _safe_sqrt(d2: Tensor) -> Tensor:
    # sqrt with gradient 0 (not inf/NaN) where d2 == 0, e.g. the diagonal.
    pos = d2 > 0
    return torch.where(pos, d2.clamp_min(torch.finfo(d2.dtype).tiny).sqrt(), d2.new_zeros(()))


def gsp_kernel_dense(h: Tensor, kernel: str = "cosine", **kernel_params) -> Tensor:
    """The ``n x n`` kernel matrix of the GSP loss (cosine | poly | l2 | rbf, with ``gamma``).

    Distances use ``|a|^2 + |b|^2 - 2 a.b`` of the rows centred on their column mean (distances
    do not change under a common shift, and without it a common offset cancels most of the
    digits: float32 rows near 1000 +- 0.05 kept about one), clamped at 0 with an exact-zero
    diagonal (the seed's ``(h[:, None] - h[None]) ** 2`` form needs ``n x n x D`` memory);
    ``l2`` uses a safe sqrt."""
    gamma = resolve_kernel("gsp_kernel_dense", "gsp", kernel, kernel_params)
    if kernel in ("cosine", "poly"):
        u = torch.nn.functional.normalize(h, dim=1)
        k = u @ u.T
        return k * k if kernel == "poly" else k
    h = h - h.mean(0, keepdim=True)
    sq = (h * h).sum(1)
    d2 = (sq[:, None] + sq[None, :] - 2 * (h @ h.T)).clamp_min(0)
    d2 = d2 * (1 - torch.eye(h.size(0), dtype=h.dtype, device=h.device))
    return _safe_sqrt(d2) if kernel == "l2" else torch.exp(-gamma * d2)


def gsp_dense(h_s: Tensor, h_t: Tensor, kernel: str = "cosine", **kernel_params) -> Tensor:
    """GSP loss ``mean_{a,b} (K_s[a,b] - K_t[a,b])^2`` with both ``n x n`` kernels formed."""
    return (gsp_kernel_dense(h_s, kernel, **kernel_params)
            - gsp_kernel_dense(h_t, kernel, **kernel_params)).pow(2).mean()


# ------------------------------------------------------------------ LSP
def lsp_edge_kernel(x_i: Tensor, x_j: Tensor, kernel: str, **kernel_params) -> Tensor:
    """The LSP kernel logit ``k(x_i, x_j)`` of gathered endpoint rows ``[E, D]`` -> ``[E]``."""
    p = resolve_kernel("lsp reference", "lsp", kernel, kernel_params)
    if kernel == "rbf":
        return torch.exp(-p * (x_i - x_j).pow(2).sum(-1))
    if kernel == "laplacian":
        return torch.exp(-(x_i - x_j).abs().sum(-1) / p)
    if kernel in ("cosine", "poly"):
        # Per-vector norm clamp, as torch.nn.functional.cosine_similarity does.
        c = (x_i * x_j).sum(-1) / (x_i.norm(dim=-1).clamp_min(1e-8) * x_j.norm(dim=-1).clamp_min(1e-8))
        return c if kernel == "cosine" else c * c
    if kernel == "l2":
        return (x_i - x_j).norm(dim=-1)
    return (x_i * x_j).sum(-1)  # linear


def _lsp_reduce(per_node: Tensor, num_edges: int, reduction: str) -> Tensor:
    check_choice("lsp reference", "reduction", reduction, LSP_REDUCTIONS)
    if reduction == "none":
        return per_node
    if reduction == "sum":
        return per_node.sum()
    if reduction == "node_mean":
        return per_node.sum() / max(per_node.numel(), 1)
    return per_node.sum() / max(num_edges, 1)  # edge_mean


def _segment_log_softmax_torch(logit: Tensor, index: Tensor, n: int) -> Tensor:
    """log-softmax of ``logit`` within groups ``index`` (pure torch: amax + index_add)."""
    m = logit.new_full((n,), float("-inf")).scatter_reduce(0, index, logit, "amax", include_self=True)
    shifted = logit - m.detach()[index]
    denom = logit.new_zeros(n).index_add(0, index, shifted.exp())
    return shifted - denom.log()[index]


def lsp_reference_pyg(graph: Graph, h_s: Tensor, h_t: Tensor, kernel: str = "rbf",
                      reduction: str = "edge_mean", backend: str = "auto", **params) -> Tensor:
    """Unfused LSP in the PyG style of efficient-gnns: gather both endpoints of every edge
    (``E x D`` per model), a kernel value per edge, ``scatter_log_softmax`` / ``scatter_softmax``
    over each destination's incoming edges, then ``F.kl_div(log_p_s, p_t)``. Its native
    reduction, ``F.kl_div(..., reduction='mean')`` over the E edge terms, is ``edge_mean``.

    ``backend``: ``"torch_scatter"``, ``"torch"`` (scatter_reduce amax + index_add), or
    ``"auto"`` (torch_scatter when importable)."""
    row, col, n = graph.row, graph.col, graph.num_dst
    s = lsp_edge_kernel(h_s[row], h_s[col], kernel, **params)
    t = lsp_edge_kernel(h_t[row], h_t[col], kernel, **params)
    ts = None
    if backend in ("auto", "torch_scatter"):
        try:
            import torch_scatter as ts  # noqa: F811  (optional dependency, imported lazily)
        except (ImportError, OSError):   # absent, or built for another torch (OSError)
            if backend == "torch_scatter":
                raise
            ts = None
    elif backend != "torch":
        raise ValueError(f"lsp_reference_pyg: unknown backend {backend!r}")
    if ts is not None and graph.num_edges > 0:
        log_p_s = ts.scatter_log_softmax(s, row, dim=0, dim_size=n)
        p_t = ts.scatter_softmax(t, row, dim=0, dim_size=n)
    else:
        log_p_s = _segment_log_softmax_torch(s, row, n)
        p_t = _segment_log_softmax_torch(t, row, n).exp()
    if reduction == "edge_mean":
        if graph.num_edges == 0:
            return (h_s.sum() + h_t.sum()) * 0
        # F.kl_div(..., reduction="mean") of 1-D edge terms, written as sum / E (same value,
        # without torch's deprecation warning about 'mean').
        return torch.nn.functional.kl_div(log_p_s, p_t, reduction="sum") / graph.num_edges
    per_edge = torch.nn.functional.kl_div(log_p_s, p_t, reduction="none")
    per_node = per_edge.new_zeros(n).index_add(0, row, per_edge)
    return _lsp_reduce(per_node, graph.num_edges, reduction)


def lsp_reference_dgl(graph: Graph, h_s: Tensor, h_t: Tensor, kernel: str = "laplacian",
                      reduction: str = "node_mean", **params) -> Tensor:
    """Unfused LSP in the DGL style of the original LSP / Alignahead code: an edge-wise kernel
    (L1 "distance" kernel by default), ``edge_softmax`` over incoming edges, the per-edge term
    ``p_t (log p_t - log p_s)`` summed into each destination (``update_all`` with sum), then
    the mean over all nodes: ``node_mean``. Pure torch (no DGL)."""
    row, col, n = graph.row, graph.col, graph.num_dst
    s = lsp_edge_kernel(h_s[row], h_s[col], kernel, **params)
    t = lsp_edge_kernel(h_t[row], h_t[col], kernel, **params)
    log_p_s = _segment_log_softmax_torch(s, row, n)
    log_p_t = _segment_log_softmax_torch(t, row, n)
    per_edge = log_p_t.exp() * (log_p_t - log_p_s)
    per_node = per_edge.new_zeros(n).index_add(0, row, per_edge)
    return _lsp_reduce(per_node, graph.num_edges, reduction)


def mutual_reference(logits, alpha: Tensor, T: Tensor, lambda_kd: float, lambda_ent: float,
                     target: Optional[Tensor] = None, rows: Optional[Tensor] = None) -> Tensor:
    """The graph-mutual-learning losses of K peers written out peer by peer and node by node
    (the oracle of :class:`gkd_ext.losses.MutualLoss`): ``alpha[k, j, v]`` weighs peer j's
    detached logits in peer k's target at node v, ``T [n]`` the temperatures. Returns ``[K]``."""
    K, n = len(logits), logits[0].size(0)
    out = []
    for k in range(K):
        kl_sum = logits[k].new_zeros(())
        ent_sum = logits[k].new_zeros(())
        for v in range(n):
            mixed = sum(alpha[k, j, v] * logits[j][v].detach() for j in range(K) if j != k)
            q = torch.softmax(mixed / T[v], -1)
            log_p = torch.log_softmax(logits[k][v] / T[v], -1)
            kl_sum = kl_sum + (q * (q.log() - log_p)).sum()
            ent_sum = ent_sum - (log_p.exp() * log_p).sum()
        loss = lambda_kd * kl_sum / n - lambda_ent * ent_sum / n
        if target is not None:
            z, y = (logits[k], target) if rows is None else (logits[k][rows], target[rows])
            loss = loss + torch.nn.functional.cross_entropy(z, y)
        out.append(loss)
    return torch.stack(out)


# ------------------------------------------------------------------ neighbour sampling
_M64 = (1 << 64) - 1


def _mix64(z: int) -> int:
    z = (z + 0x9E3779B97F4A7C15) & _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


def _draw_word(seed: int, node: int, i: int) -> int:
    return _mix64((_mix64((seed & _M64) ^ _mix64(node & _M64)) + i) & _M64)


def sample_neighbors_reference(graph: Graph, nodes: Tensor, fanout: int, replace: bool = False,
                               seed: int = 0):
    """The sample of ``gkd::sample_neighbors`` in plain Python (a loop per node and draw), from
    the same counter-based hash (csrc/sample_math.h), so it must agree with the op exactly:
    ``(rowptr, col, src_nodes, edge_ids)``. For small graphs (tests)."""
    rowptr, col = graph.rowptr.tolist(), graph.col.tolist()
    rows, eids = [0], []
    for v in nodes.tolist():
        first, deg = rowptr[v], rowptr[v + 1] - rowptr[v]
        count = deg if fanout < 0 else ((fanout if deg > 0 else 0) if replace else min(deg, fanout))
        if not replace and count == deg:
            picked = list(range(deg))
        elif replace:
            picked = [(_draw_word(seed, v, q) * deg) >> 64 for q in range(count)]
        else:   # Floyd's algorithm
            picked = []
            for j in range(deg - count, deg):
                t = (_draw_word(seed, v, j) * (j + 1)) >> 64
                picked.append(j if t in picked else t)
        eids += [first + q for q in sorted(picked)]
        rows.append(len(eids))
    local = {v: i for i, v in enumerate(nodes.tolist())}
    src = list(nodes.tolist())
    out_col = []
    for e in eids:
        u = col[e]
        if u not in local:
            local[u] = len(src)
            src.append(u)
        out_col.append(local[u])
    as_long = lambda values: torch.tensor(values, dtype=torch.long)  # noqa: E731
    return as_long(rows), as_long(out_col), as_long(src), as_long(eids)
