"""Graph isomorphism network (Xu et al.) on gkd_ext.spmm."""
from __future__ import annotations



import torch
from torch import nn

from ..functional import spmm
from ..graph import Graph
from .base import ConvStack, plain_graph
from .functional import dense_features


class GINConv(nn.Module):
    """``out_i = MLP((1 + eps) · x_i + sum_{j -> i} x_j)`` with a two-layer MLP
    (Linear, [BatchNorm], ReLU, Linear). ``eps`` is learnable when ``train_eps`` (GIN-ε), else a
    fixed 0 (GIN-0). The graph's stored edge values are ignored (plain sum)."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int = None, eps: float = 0.0,
                 train_eps: bool = False, batch_norm: bool = False):
        super().__init__()
        hidden = out_dim if hidden is None else hidden
        layers = [nn.Linear(in_dim, hidden)]
        if batch_norm:
            layers.append(nn.BatchNorm1d(hidden))
        layers += [nn.ReLU(), nn.Linear(hidden, out_dim)]
        self.mlp = nn.Sequential(*layers)
        if train_eps:
            self.eps = nn.Parameter(torch.tensor(float(eps)))
        else:
            self.register_buffer("eps", torch.tensor(float(eps)))

    def forward(self, graph: Graph, x: torch.Tensor) -> torch.Tensor:
        x = dense_features(x)   # rows are indexed and aggregated as they are
        # Sum aggregation: unit weights, or a sampled block's rescaling (GIN.prepare_blocks).
        w = torch.ones(graph.num_edges, dtype=x.dtype, device=x.device) if graph.value is None \
            else graph.value.to(x.dtype)
        return self.mlp((1 + self.eps) * x[: graph.num_dst] + spmm(graph, x, w))


class GIN(ConvStack):
    """A GIN of ``num_layers`` :class:`GINConv` layers with ReLU in between (the last layer's
    MLP maps to ``out_dim``); ``forward`` returns the logits and the pre-activation output of
    every hidden layer. For graph classification pool the node logits or hidden rows with
    :func:`gkd_ext.nn.global_pool`."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, num_layers: int = 2,
                 dropout: float = 0.5, train_eps: bool = False, batch_norm: bool = False):
        super().__init__(in_dim, hidden, out_dim, num_layers, dropout,
                         lambda a, b: GINConv(a, b, hidden=hidden, train_eps=train_eps,
                                              batch_norm=batch_norm))

    def prepare(self, graph: Graph) -> Graph:
        return plain_graph(graph)

    def prepare_blocks(self, blocks):
        def scaled(block: Graph, degree: torch.Tensor) -> Graph:
            # k_i of the d_i neighbours were drawn: the sum over them, times d_i / k_i, is
            # unbiased (and exact when every neighbour is drawn).
            k = block.degree("in").clamp(min=1)
            g = plain_graph(block)
            g.value = (degree[: block.num_dst].to(torch.get_default_dtype()) / k)[block.row]
            return g
        return blocks.map(scaled)
