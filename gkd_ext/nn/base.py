"""The contract every model of :mod:`gkd_ext.nn` keeps, so trainers never switch on an
architecture name:

- ``prepare(graph)`` builds, once per graph, whatever the model's layers read (a normalised
  propagation graph, self-loops, several operators); only the model interprets the result;
- ``forward(inputs, x)`` returns ``(logits, hidden)``: the output and the pre-activation
  output of every hidden layer, which the distillation losses align;
- ``hidden_dims`` lists the widths of those hidden outputs, known without running the model.

On sampled mini-batches a model runs on the batch's blocks (``prepare_blocks``), or, when its
output at a node reads nothing but that node's rows of inputs computed once over the whole
graph (``row_wise``, e.g. the framelet MLPs' precomputed knowledge), on the batch's rows of
those (:class:`WholeGraphRows`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Hashable, List, Optional, Tuple

import torch
from torch import nn

from ..graph import Graph, remove_self_loops  # noqa: F401 (the models' import of it)
from ..sampling import Blocks
from .functional import stacked_forward


@dataclass
class WholeGraphRows:
    """A sampled batch as a row-wise model reads it: ``inputs`` is ``prepare(graph)`` of the
    whole graph (prepared once per run), ``x`` the whole graph's features, ``rows`` the ids of
    the batch's output rows (seeds first), whose features are the leading rows of the batch's
    own ``x``."""
    inputs: Any
    x: torch.Tensor
    rows: torch.Tensor


class GraphModel(nn.Module):
    """Base class of the models: see the module docstring for the contract."""
    # Whether the output at a node reads only that node's rows of whole-graph inputs, so a
    # sampled batch is run as :class:`WholeGraphRows` instead of on its blocks.
    row_wise: bool = False

    def prepare(self, graph: Graph) -> Any:
        raise NotImplementedError

    def prepare_blocks(self, blocks: Blocks) -> Any:
        """What ``forward`` reads for a batch of sampled blocks (mini-batch training), as
        ``prepare`` is for a whole graph; models that cannot run on blocks say so."""
        raise ValueError(f"{type(self).__name__} does not run on sampled neighbourhoods "
                         "(mini-batches); train it on the full graph (no --fanouts)")

    def prepare_key(self) -> Hashable:
        """Models whose ``prepare`` gives the same result share a key, so a trainer holding
        several of them prepares each graph once. Override when ``prepare`` depends on the
        model's own settings."""
        return type(self).prepare

    @property
    def hidden_dims(self) -> List[int]:
        """Widths of the hidden outputs ``forward`` returns (subclasses set ``_hidden_dims``)."""
        return list(self._hidden_dims)


class ConvStack(GraphModel):
    """``num_layers`` graph convolutions ``make_conv(d_in, d_out)`` over the widths
    ``in_dim, hidden, ..., hidden, out_dim``, with dropout on every layer's input and
    ``activation`` between layers; ``forward`` returns the logits and every hidden layer's
    output before its activation."""
    activation: Callable = staticmethod(torch.relu)

    def __init__(self, in_dim: int, hidden: int, out_dim: int, num_layers: int, dropout: float,
                 make_conv: Callable[[int, int], nn.Module]):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"{type(self).__name__}: 'num_layers' must be >= 1, got {num_layers}")
        dims = [in_dim] + [hidden] * (num_layers - 1) + [out_dim]
        self.convs = nn.ModuleList(make_conv(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.dropout = dropout
        self._hidden_dims = dims[1:-1]

    def forward(self, inputs: Any, x: torch.Tensor) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        return stacked_forward(self.convs, inputs, x, self.dropout, self.training, self.activation)


def plain_graph(graph: Graph) -> Graph:
    """The graph's edges without stored values, with the transpose that backward passes walk
    built now rather than during training (for models that aggregate unweighted)."""
    g = Graph(graph.rowptr, graph.col, graph.num_src, validate=False)
    g._checked = graph._checked
    g._row = graph._row
    g._transpose = graph._transpose
    g.transpose()
    return g


def with_dst_loops(block: Graph, value: Optional[torch.Tensor] = None,
                   loop_value: Optional[torch.Tensor] = None) -> Graph:
    """A sampled block (no self-loops) with the loop ``i -> i`` added for every destination
    ``i`` (source row ``i`` is the same node), values ``value`` on its edges and
    ``loop_value`` on the loops when given; transpose built."""
    loops = torch.arange(block.num_dst, device=block.device)
    ei = torch.cat([block.edge_index, torch.stack([loops, loops])], 1)
    v = None if value is None else torch.cat([value, loop_value])
    g = Graph.from_edge_index(ei, (block.num_src, block.num_dst), value=v)
    g.transpose()
    return g


def self_loop_graph(graph: Graph) -> Graph:
    """Exactly one self-loop per node, no stored values (attention supplies them); transpose
    built."""
    g = remove_self_loops(graph)
    g.value = None
    g = g.add_self_loops()
    g.transpose()
    return g
