"""Model factory and per-model graph preprocessing."""
from __future__ import annotations

from typing import Optional

from torch import nn

from ..graph import Graph
from .gat import GAT
from .gcn import GCN, gcn_graph
from .gin import GIN
from .mlp import MLP
from .sage import GraphSAGE

# canonical name -> (class, extra constructor defaults); aliases map onto these.
_MODELS = {
    "gcn": (GCN, {}),
    "gat": (GAT, {}),
    "sage": (GraphSAGE, {"aggr": "mean"}),
    "sage-pool": (GraphSAGE, {"aggr": "pool"}),
    "gin": (GIN, {}),
    "mlp": (MLP, {}),
}
_ALIASES = {"graphsage": "sage", "sage-mean": "sage", "graphsage-pool": "sage-pool"}

MODEL_NAMES = tuple(sorted(_MODELS)) + tuple(sorted(_ALIASES))


def _canonical(name: str, where: str) -> str:
    key = str(name).lower().replace("_", "-")
    key = _ALIASES.get(key, key)
    if key not in _MODELS:
        raise ValueError(f"{where}: unknown model {name!r}; known models: {', '.join(MODEL_NAMES)}")
    return key


def build_model(name: str, in_dim: int, hidden: int, out_dim: int, num_layers: int = 2,
                heads: Optional[int] = None, dropout: Optional[float] = None,
                **kwargs) -> nn.Module:
    """Build a model by name: ``gcn``, ``gat``, ``sage`` (mean; alias ``graphsage``,
    ``sage-mean``), ``sage-pool``, ``gin``, ``mlp``.

    ``hidden`` is the width of a hidden layer (per head for GAT, whose hidden layers are
    ``heads * hidden`` wide). ``heads`` is used by GAT only and ignored by the others, so one
    call site can build any model; ``dropout=None`` keeps each model's default. Further keyword
    arguments go to the model's constructor (e.g. ``residual=True``, ``attn_dropout``,
    ``train_eps``). Every model's ``forward(graph, x)`` returns ``(logits, hidden_list)``;
    pass it the graph from :func:`prepare_graph` with the same name.

    Example:
        >>> model = build_model("gat", 1433, 8, 7, num_layers=2, heads=8)
    """
    key = _canonical(name, "build_model")
    cls, defaults = _MODELS[key]
    args = dict(defaults)
    args.update(kwargs)
    if dropout is not None:
        args["dropout"] = dropout
    if cls is GAT and heads is not None:
        args["heads"] = heads
    return cls(in_dim, hidden, out_dim, num_layers=num_layers, **args)


def remove_self_loops(graph: Graph) -> Graph:
    """A copy of ``graph`` without its ``i -> i`` edges (stored values follow the edges)."""
    ei = graph.edge_index
    keep = ei[0] != ei[1]
    value = None if graph.value is None else graph.value[keep]
    return Graph.from_edge_index(ei[:, keep], (graph.num_src, graph.num_dst), value=value)


def prepare_graph(model_name: str, graph: Graph) -> Graph:
    """The propagation graph a model expects, built once per dataset:

    - ``gcn``: self-loops replaced by one per node and GCN normalisation stored as values;
    - ``gat``: self-loops replaced by one per node, no values (attention supplies them);
    - ``sage``, ``sage-pool``, ``gin``: the graph's edges without values;
    - ``mlp``: the graph unchanged (it is not read).

    The transpose used by backward passes is built here too, so training does not pay for it.
    """
    key = _canonical(model_name, "prepare_graph")
    if key == "mlp":
        return graph
    if key == "gcn":
        return gcn_graph(remove_self_loops(graph))
    if key == "gat":
        g = remove_self_loops(graph)
        g.value = None
        g = g.add_self_loops()
    else:
        g = Graph(graph.rowptr, graph.col, graph.num_src, validate=False)
        g._row = graph._row
    g.transpose()
    return g
