"""Functional pieces of the GNN layers: edge softmax and graph-level pooling."""
from __future__ import annotations

from collections import OrderedDict

import torch

from ..functional import get_impl, spmm
from ..graph import Graph, quiet_sparse_csr
from ..sampling import Blocks

Tensor = torch.Tensor

_POOLS = ("sum", "mean", "max")


def edge_softmax(graph: Graph, scores: Tensor) -> Tensor:
    r"""Softmax of edge scores over the incoming edges of each destination.

    .. math:: \alpha[e, h] = \frac{\exp(s[e, h] - m[i, h])}{\sum_{e'=(k \to i)} \exp(s[e', h] - m[i, h])},
        \quad e = (j \to i),\ m[i, h] = \max_{e'=(k \to i)} s[e', h]

    Args:
        graph: a :class:`Graph`; ``scores`` follow its edge order.
        scores: float tensor ``[E]`` or ``[E, H]`` (one column per attention head).

    Returns:
        ``alpha`` with the shape and dtype of ``scores``; for every destination with at least
        one incoming edge, its edges' weights sum to 1 per head.

    Subtracting the per-destination maximum keeps ``exp`` from overflowing on large scores;
    the maximum is detached because softmax is invariant to the shift, so gradients are
    exact. Memory O(E·H + N·H); the reductions use ``scatter_reduce``/``index_add_`` over
    :attr:`Graph.row` (CPU deterministic; ``index_add_`` on CUDA uses atomics).

    Example:
        >>> g = Graph.from_edge_index(torch.tensor([[0, 1, 2], [2, 2, 0]]), 3)
        >>> edge_softmax(g, torch.randn(3, 4)).shape
        torch.Size([3, 4])
    """
    if not isinstance(graph, Graph):
        raise TypeError(f"edge_softmax: 'graph' must be a gkd_ext.Graph, got {type(graph).__name__}")
    if not isinstance(scores, Tensor) or not scores.is_floating_point():
        raise TypeError("edge_softmax: 'scores' must be a floating-point tensor")
    squeeze = scores.dim() == 1
    s = scores.unsqueeze(1) if squeeze else scores
    if s.dim() != 2 or s.size(0) != graph.num_edges:
        raise ValueError(f"edge_softmax: 'scores' must have shape [E] or [E, H] with "
                         f"E = {graph.num_edges}, got {list(scores.shape)}")
    if s.device != graph.device:
        raise ValueError(f"edge_softmax: 'scores' is on {s.device} but the graph is on {graph.device}")
    row = graph.row
    n, h = graph.num_dst, s.size(1)
    idx = row.unsqueeze(1).expand(-1, h)
    m = s.new_full((n, h), float("-inf")).scatter_reduce(0, idx, s.detach(), "amax",
                                                         include_self=True)
    ex = (s - m[row]).exp()
    denom = s.new_zeros(n, h).index_add(0, row, ex)
    out = ex / denom[row]
    return out.squeeze(1) if squeeze else out


def global_pool(x: Tensor, batch: Tensor, num_graphs: int, reduce: str = "sum") -> Tensor:
    """Graph-level readout: pool node rows ``x [N, D]`` into ``[num_graphs, D]`` by the graph id
    of each node, ``batch [N]`` (int64 in ``[0, num_graphs)``). ``reduce`` is ``"sum"``,
    ``"mean"`` or ``"max"``; an empty graph pools to 0. O(N·D) time, O(num_graphs·D) memory.
    ``num_graphs`` is passed in so the output shape never depends on tensor values."""
    if reduce not in _POOLS:
        raise ValueError(f"global_pool: 'reduce' must be one of {_POOLS}, got {reduce!r}")
    if batch.dim() != 1 or batch.numel() != x.size(0):
        raise ValueError(f"global_pool: 'batch' must have shape [{x.size(0)}], got {list(batch.shape)}")
    out = x.new_zeros((num_graphs,) + tuple(x.shape[1:]))
    if reduce == "max":
        idx = batch.view(-1, *([1] * (x.dim() - 1))).expand_as(x)
        out = x.new_full(out.shape, float("-inf")).scatter_reduce(0, idx, x, "amax", include_self=True)
        return out.masked_fill(torch.isinf(out) & (out < 0), 0)
    out = out.index_add(0, batch, x)
    if reduce == "mean":
        cnt = torch.bincount(batch, minlength=num_graphs).clamp_(min=1).to(x.dtype)
        out = out / cnt.view(-1, *([1] * (x.dim() - 1)))
    return out


def _dropout(x: Tensor, p: float) -> Tensor:
    # Inverted dropout from a uniform draw: the distribution of torch's dropout, but the CPU
    # uniform generator is about 4x faster than the Bernoulli one that dropout uses.
    if p >= 1.0:
        return x * 0.0
    return x * ((torch.rand_like(x) >= p).to(x.dtype) * (1.0 / (1.0 - p)))


def feature_dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """Dropout of rate ``p`` when ``training``; ``x`` may also be a sparse CSR feature matrix
    (bag-of-words node features).

    For a CSR ``x`` only the stored entries are dropped and the result stays CSR with the same
    pattern: dropping a zero changes nothing, so this has the distribution of dense dropout at
    O(nnz) cost instead of one random draw per element of the dense ``N x F`` matrix."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"feature_dropout: 'p' must lie in [0, 1], got {p}")
    if not training or p == 0.0:
        return x
    if x.layout != torch.sparse_csr:
        return _dropout(x, p)
    with quiet_sparse_csr():
        return torch.sparse_csr_tensor(x.crow_indices(), x.col_indices(),
                                       _dropout(x.values(), p), x.shape)


# CSR pattern -> (crow, col, Graph with its transpose). Holding crow and col keeps their memory,
# so the data pointers in the key cannot be reused by another tensor while the entry lives.
_CSR_GRAPHS: "OrderedDict[tuple, tuple]" = OrderedDict()
_CSR_GRAPHS_KEPT = 4


def _pattern_graph(x: Tensor) -> Graph:
    crow, col = x.crow_indices(), x.col_indices()
    key = (crow.data_ptr(), col.data_ptr(), crow.numel(), col.numel(), x.size(1), str(x.device))
    hit = _CSR_GRAPHS.get(key)
    if hit is None:
        graph = Graph(crow, col, x.size(1))
        graph.transpose()
        hit = _CSR_GRAPHS[key] = (crow, col, graph)
        while len(_CSR_GRAPHS) > _CSR_GRAPHS_KEPT:
            _CSR_GRAPHS.popitem(last=False)
    return hit[2]


def feature_linear(lin: torch.nn.Linear, x: Tensor) -> Tensor:
    """``lin(x)`` that also takes a sparse CSR ``x``: then one fused :func:`gkd_ext.spmm` over
    the CSR pattern (``x @ W^T``), whose gradient for ``W`` walks a transpose built once per
    pattern. :func:`feature_dropout` keeps the pattern, so every training step reuses it,
    where ``torch.sparse`` would re-sort the transpose at each backward. With
    ``set_impl("reference")`` it is torch's own sparse product."""
    if x.layout != torch.sparse_csr:
        return lin(x)
    if get_impl() == "reference":
        return torch.nn.functional.linear(x, lin.weight, lin.bias)
    out = spmm(_pattern_graph(x), lin.weight.t(), x.values())
    return out if lin.bias is None else out + lin.bias


def dense_features(x: Tensor) -> Tensor:
    """``x`` as a strided tensor, for layers that index or aggregate raw input rows."""
    return x if x.layout == torch.strided else x.to_dense()


def leading_rows(x: Tensor, rows: int) -> Tensor:
    """``x[:rows]``, for a strided or a sparse CSR ``x``."""
    if rows == x.size(0):
        return x
    if x.layout != torch.sparse_csr:
        return x[:rows]
    crow = x.crow_indices()[: rows + 1]
    nnz = int(crow[-1])
    with quiet_sparse_csr():
        return torch.sparse_csr_tensor(crow, x.col_indices()[:nnz], x.values()[:nnz],
                                       (rows, x.size(1)))


def layer_graphs(graph, x: Tensor, layers: int):
    """The graph of each of ``layers`` layers and the input rows they read: the one graph for
    every layer, or for sampled :class:`~gkd_ext.sampling.Blocks` the last ``layers`` blocks
    and the rows the first of them reads (every layer's rows are a prefix of the input's)."""
    if isinstance(graph, Blocks):
        graphs = graph.for_layers(layers)
        return graphs, leading_rows(x, graphs[0].num_src)
    return [graph] * layers, x


def stacked_forward(convs, graph, x: Tensor, dropout: float, training: bool,
                    activation=torch.relu):
    """The forward of a stack of graph convolutions: dropout, convolution, activation per
    layer (none after the last). Returns the logits and every hidden layer's output before
    its activation, which is what the distillation losses align. ``x`` may be a sparse CSR
    feature matrix (see :func:`feature_dropout`); ``graph`` may be sampled
    :class:`~gkd_ext.sampling.Blocks`, one per layer."""
    hidden = []
    graphs, x = layer_graphs(graph, x, len(convs))
    for i, conv in enumerate(convs):
        x = feature_dropout(x, dropout, training)
        x = conv(graphs[i], x)
        if i < len(convs) - 1:
            hidden.append(x)
            x = activation(x)
    return x, hidden
