"""Graph attention (Veličković et al.) on gkd_ext.spmm with per-head edge values."""
from __future__ import annotations

from typing import List, Tuple

import torch
from torch import nn
import torch.nn.functional as F

from ..functional import spmm
from ..graph import Graph
from .base import GraphModel, self_loop_graph, with_dst_loops
from .functional import edge_softmax, feature_linear, stacked_forward


class GATConv(nn.Module):
    """One multi-head attention layer.

    Per head ``h``: ``Wh = x W_h``, score ``e_ji = LeakyReLU(a_src·Wh_j + a_dst·Wh_i)`` for each
    edge ``j -> i``, ``alpha = edge_softmax(e)`` over ``i``'s incoming edges, then
    ``out_i = sum_j alpha_ji Wh_j`` as one multi-head :func:`spmm`. The two attention terms are
    per-node scalars ``[N, H]`` gathered to the edges, so no ``E x F`` tensor is formed.
    Heads are concatenated (``[N, H*F]``) or averaged (``[N, F]``, the usual output layer).
    With ``residual`` a (projected) copy of the input is added before the bias.
    The graph should carry self-loops (see :meth:`GAT.prepare`).
    """

    def __init__(self, in_dim: int, out_dim: int, heads: int = 1, concat: bool = True,
                 negative_slope: float = 0.2, attn_dropout: float = 0.0,
                 residual: bool = False, bias: bool = True):
        super().__init__()
        self.heads, self.out_dim, self.concat = heads, out_dim, concat
        self.negative_slope, self.attn_dropout = negative_slope, attn_dropout
        self.lin = nn.Linear(in_dim, heads * out_dim, bias=False)
        self.att_src = nn.Parameter(torch.empty(1, heads, out_dim))
        self.att_dst = nn.Parameter(torch.empty(1, heads, out_dim))
        width = heads * out_dim if concat else out_dim
        self.res = None
        if residual:
            self.res = nn.Identity() if in_dim == width else nn.Linear(in_dim, width, bias=False)
        self.bias = nn.Parameter(torch.zeros(width)) if bias else None
        nn.init.xavier_uniform_(self.lin.weight)
        nn.init.xavier_uniform_(self.att_src)
        nn.init.xavier_uniform_(self.att_dst)

    def forward(self, graph: Graph, x: torch.Tensor) -> torch.Tensor:
        # On a sampled block the destinations are the first num_dst source rows.
        n, nd, H, Fo = x.size(0), graph.num_dst, self.heads, self.out_dim
        h = feature_linear(self.lin, x).view(n, H, Fo)
        a_src = (h * self.att_src).sum(-1)
        a_dst = (h[:nd] * self.att_dst).sum(-1)
        e = F.leaky_relu(a_src[graph.col] + a_dst[graph.row], self.negative_slope)
        alpha = edge_softmax(graph, e)
        alpha = F.dropout(alpha, self.attn_dropout, self.training)
        out = spmm(graph, h, alpha)
        out = out.reshape(nd, H * Fo) if self.concat else out.mean(1)
        if self.res is not None:
            out = out + self.res(x[:nd])
        return out if self.bias is None else out + self.bias


class GAT(GraphModel):
    """A GAT of ``num_layers`` attention layers with ELU in between.

    Hidden layers have ``heads`` heads of ``hidden`` features each, concatenated (width
    ``heads * hidden``); the output layer has ``out_heads`` heads averaged to ``out_dim``.
    ``dropout`` applies to every layer's input, ``attn_dropout`` to the attention weights.
    ``residual=True`` adds residual connections to every layer after the first (the first
    changes the feature space, as in the reference GAT code). ``forward`` returns the logits
    and the pre-activation output of every hidden layer (heads concatenated).
    ``prepare(graph)`` gives the graph with exactly one self-loop per node.
    """

    def __init__(self, in_dim: int, hidden: int, out_dim: int, num_layers: int = 2,
                 heads: int = 8, out_heads: int = 1, dropout: float = 0.6,
                 attn_dropout: float = 0.6, residual: bool = False,
                 negative_slope: float = 0.2):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"GAT: 'num_layers' must be >= 1, got {num_layers}")
        self.convs = nn.ModuleList()
        d = in_dim
        for i in range(num_layers):
            last = i == num_layers - 1
            self.convs.append(GATConv(d, out_dim if last else hidden,
                                      heads=out_heads if last else heads, concat=not last,
                                      negative_slope=negative_slope, attn_dropout=attn_dropout,
                                      residual=residual and i > 0))
            d = hidden * heads
        self.dropout = dropout
        self._hidden_dims = [hidden * heads] * (num_layers - 1)

    def prepare(self, graph: Graph) -> Graph:
        return self_loop_graph(graph)

    def prepare_blocks(self, blocks):
        return blocks.map(lambda block, degree: with_dst_loops(block))

    def forward(self, graph: Graph, x: torch.Tensor) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        return stacked_forward(self.convs, graph, x, self.dropout, self.training, F.elu)
