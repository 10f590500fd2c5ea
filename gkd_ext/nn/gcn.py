"""Graph convolution (Kipf & Welling) on gkd_ext.spmm."""
from __future__ import annotations

import torch
from torch import nn

from ..functional import spmm
from ..graph import Graph
from .base import ConvStack, remove_self_loops, with_dst_loops
from .functional import feature_linear


def gcn_graph(graph: Graph) -> Graph:
    """The propagation graph of GCN: self-loops added and symmetric normalisation values
    stored, Â = D̃^{-1/2} (A + I) D̃^{-1/2}. Build it once per dataset and reuse it."""
    g = graph.add_self_loops()
    g.value = g.gcn_norm()
    g.transpose()
    return g


def gcn_block(block: Graph, degree: torch.Tensor) -> Graph:
    """GCN's operator on a sampled block: the full graph's weights ``1 / sqrt((d_i + 1)(d_j + 1))``
    (``degree`` d of the block's source rows, from the graph sampled), each row's sampled sum
    scaled by ``d_i / k_i`` (k_i edges drawn of d_i, so the sum is unbiased), and the loop
    ``1 / (d_i + 1)``. With every neighbour drawn this is exactly the rows of :func:`gcn_graph`."""
    d = degree.to(torch.get_default_dtype())
    n, row, col = block.num_dst, block.row, block.col
    scale = d[:n] / block.degree("in").to(d.dtype).clamp(min=1)
    value = scale[row] / torch.sqrt((d[row] + 1) * (d[col] + 1))
    return with_dst_loops(block, value, 1.0 / (d[:n] + 1))


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

    def prepare_blocks(self, blocks):
        return blocks.map(gcn_block)
