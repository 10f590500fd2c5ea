"""The contract every model of :mod:`gkd_ext.nn` keeps, so trainers never switch on an
architecture name:

- ``prepare(graph)`` builds, once per graph, whatever the model's layers read (a normalised
  propagation graph, self-loops, several operators); only the model interprets the result;
- ``forward(inputs, x)`` returns ``(logits, hidden)``: the output and the pre-activation
  output of every hidden layer, which the distillation losses align;
- ``hidden_dims`` lists the widths of those hidden outputs, known without running the model.
"""
from __future__ import annotations

from typing import Any, Hashable, List

from torch import nn

from ..graph import Graph


class GraphModel(nn.Module):
    """Base class of the models: see the module docstring for the contract."""

    def prepare(self, graph: Graph) -> Any:
        raise NotImplementedError

    def prepare_key(self) -> Hashable:
        """Models whose ``prepare`` gives the same result share a key, so a trainer holding
        several of them prepares each graph once. Override when ``prepare`` depends on the
        model's own settings."""
        return type(self).prepare

    @property
    def hidden_dims(self) -> List[int]:
        """Widths of the hidden outputs ``forward`` returns (subclasses set ``_hidden_dims``)."""
        return list(self._hidden_dims)


def plain_graph(graph: Graph) -> Graph:
    """The graph's edges without stored values, with the transpose that backward passes walk
    built now rather than during training (for models that aggregate unweighted)."""
    g = Graph(graph.rowptr, graph.col, graph.num_src, validate=False)
    g._row = graph._row
    g._transpose = graph._transpose
    g.transpose()
    return g


def remove_self_loops(graph: Graph) -> Graph:
    """A copy of ``graph`` without its ``i -> i`` edges (stored values follow the edges)."""
    ei = graph.edge_index
    keep = ei[0] != ei[1]
    value = None if graph.value is None else graph.value[keep]
    return Graph.from_edge_index(ei[:, keep], (graph.num_src, graph.num_dst), value=value)


def self_loop_graph(graph: Graph) -> Graph:
    """Exactly one self-loop per node, no stored values (attention supplies them); transpose
    built."""
    g = remove_self_loops(graph)
    g.value = None
    g = g.add_self_loops()
    g.transpose()
    return g
