"""Graph convolution (Kipf & Welling) on gkd_ext.spmm."""
from __future__ import annotations

import torch
from torch import nn

from ..functional import spmm
from ..graph import Graph
from .base import ConvStack, remove_self_loops
from .functional import feature_linear


def gcn_graph(graph: Graph) -> Graph:
    """The propagation graph of GCN: self-loops added and symmetric normalisation values
    stored, Â = D̃^{-1/2} (A + I) D̃^{-1/2}. Build it once per dataset and reuse it."""
    g = graph.add_self_loops()
    g.value = g.gcn_norm()
    g.transpose()
    return g


class GCNConv(nn.Module):
    """``out = Â (x W) + b`` with Â the normalised adjacency held by a :func:`gcn_graph`."""

    def __init__(self, in_dim: int, out_dim: int, bias: bool = True):
        super().__init__()
        self.lin = nn.Linear(in_dim, out_dim, bias=False)
        self.bias = nn.Parameter(torch.zeros(out_dim)) if bias else None
        nn.init.xavier_uniform_(self.lin.weight)

    def forward(self, graph: Graph, x: torch.Tensor) -> torch.Tensor:
        out = spmm(graph, feature_linear(self.lin, x))
        return out if self.bias is None else out + self.bias


class GCN(ConvStack):
    """A GCN of ``num_layers`` convolutions. ``forward`` returns the logits and the hidden
    representations of every layer but the last (pre-activation), which the KD losses align.
    ``prepare(graph)`` gives the :func:`gcn_graph` of the graph without its own self-loops."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, num_layers: int = 2,
                 dropout: float = 0.5):
        super().__init__(in_dim, hidden, out_dim, num_layers, dropout, GCNConv)

    def prepare(self, graph: Graph) -> Graph:
        return gcn_graph(remove_self_loops(graph))
