"""GraphSAGE (Hamilton et al.) with mean and max-pool aggregators on gkd_ext.spmm."""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from ..functional import spmm
from ..graph import Graph
from .base import ConvStack, plain_graph
from .functional import dense_features, feature_linear

_AGGRS = ("mean", "pool")


class SAGEConv(nn.Module):
    """``out_i = W_l · AGG_{j -> i}(m_j) + W_r · x_i + b``.

    ``aggr="mean"``: ``m_j = x_j`` averaged (spmm ``reduce="mean"``); ``aggr="pool"``:
    ``m_j = ReLU(W_p x_j + b_p)`` and an element-wise max (spmm ``reduce="max"``). Nodes without
    incoming edges aggregate to 0. ``root_weight=False`` drops the ``W_r x_i`` term.
    The graph's stored edge values are ignored (unweighted aggregation).
    """

    def __init__(self, in_dim: int, out_dim: int, aggr: str = "mean", root_weight: bool = True,
                 bias: bool = True):
        super().__init__()
        if aggr not in _AGGRS:
            raise ValueError(f"SAGEConv: 'aggr' must be one of {_AGGRS}, got {aggr!r}")
        self.aggr, self.in_dim, self.out_dim = aggr, in_dim, out_dim
        self.pool = nn.Linear(in_dim, in_dim) if aggr == "pool" else None
        # W_l has no bias so that it commutes with the mean (isolated nodes stay 0 either way).
        self.lin_l = nn.Linear(in_dim, out_dim, bias=False)
        self.lin_r = nn.Linear(in_dim, out_dim, bias=False) if root_weight else None
        self.bias = nn.Parameter(torch.zeros(out_dim)) if bias else None

    def forward(self, graph: Graph, x: torch.Tensor) -> torch.Tensor:
        # Project first when that shrinks the rows the sparse pass reads; a sparse CSR x then
        # stays sparse (both projections are products over its pattern, never a dense N x F).
        project_first = self.aggr == "mean" and self.out_dim < self.in_dim
        square = graph.num_dst == x.size(0)
        if not (project_first and square):
            x = dense_features(x)   # rows are indexed and aggregated as they are
        ones = torch.ones(graph.num_edges, dtype=x.dtype, device=x.device)
        if project_first:
            out = spmm(graph, feature_linear(self.lin_l, x), ones, reduce="mean")
        elif self.aggr == "mean":
            out = self.lin_l(spmm(graph, x, ones, reduce="mean"))
        else:
            out = self.lin_l(spmm(graph, F.relu(self.pool(x)), ones, reduce="max"))
        if self.lin_r is not None:
            out = out + feature_linear(self.lin_r, x if square else x[: graph.num_dst])
        return out if self.bias is None else out + self.bias


class GraphSAGE(ConvStack):
    """A GraphSAGE model of ``num_layers`` :class:`SAGEConv` layers with ReLU in between;
    ``forward`` returns the logits and the pre-activation output of every hidden layer."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, num_layers: int = 2,
                 dropout: float = 0.5, aggr: str = "mean", root_weight: bool = True):
        super().__init__(in_dim, hidden, out_dim, num_layers, dropout,
                         lambda a, b: SAGEConv(a, b, aggr=aggr, root_weight=root_weight))

    def prepare(self, graph: Graph) -> Graph:
        return plain_graph(graph)

    def prepare_blocks(self, blocks):
        return blocks.map(lambda block, degree: plain_graph(block))
