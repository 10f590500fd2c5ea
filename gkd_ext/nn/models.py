"""The model factory: architecture names to model classes."""
from __future__ import annotations

import inspect
from typing import Any, Dict, Optional, Sequence

from .base import GraphModel
from .ensemble import Ensemble
from .framelet import FMLP, SpatUFG
from .gat import GAT
from .gcn import GCN
from .gin import GIN
from .mlp import MLP
from .sage import GraphSAGE


def ensemble_of_specs(in_dim: int, hidden: int, out_dim: int, num_layers: int = 2,
                      dropout: float = 0.0, members: Sequence[Dict[str, Any]] = ()) -> Ensemble:
    """An :class:`Ensemble` of ``members``, model specs as dicts of
    :class:`~gkd_ext.train.ModelSpec` fields (what a saved ensemble records); ``hidden``,
    ``num_layers`` and ``dropout`` are the members' own."""
    return Ensemble([build_model(m["arch"], in_dim, m["hidden"], out_dim, num_layers=m["layers"],
                                 heads=m.get("heads"), dropout=m.get("dropout"),
                                 **m.get("options", {})) for m in members])


# canonical name -> (class or builder, extra constructor defaults); aliases map onto these.
_MODELS = {
    "gcn": (GCN, {}),
    "gat": (GAT, {}),
    "sage": (GraphSAGE, {"aggr": "mean"}),
    "sage-pool": (GraphSAGE, {"aggr": "pool"}),
    "gin": (GIN, {}),
    "mlp": (MLP, {}),
    "ensemble": (ensemble_of_specs, {}),
    "spatufg": (SpatUFG, {}),
    "fmlp-o": (FMLP, {"single": False}),
    "fmlp-s": (FMLP, {"single": True}),
}
_ALIASES = {"graphsage": "sage", "sage-mean": "sage", "graphsage-pool": "sage-pool",
            "fmlpo": "fmlp-o", "fmlps": "fmlp-s", "spat-ufg": "spatufg"}

MODEL_NAMES = tuple(sorted(_MODELS)) + tuple(sorted(_ALIASES))


def canonical_model_name(name: str) -> str:
    """The registered name of ``name`` (case, ``_`` and aliases folded); ValueError if unknown."""
    key = str(name).lower().replace("_", "-")
    key = _ALIASES.get(key, key)
    if key not in _MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(MODEL_NAMES)}")
    return key


def build_model(name: str, in_dim: int, hidden: int, out_dim: int, num_layers: int = 2,
                heads: Optional[int] = None, dropout: Optional[float] = None,
                **kwargs) -> GraphModel:
    """Build a model by name: ``gcn``, ``gat``, ``sage`` (mean; alias ``graphsage``,
    ``sage-mean``), ``sage-pool``, ``gin``, ``mlp``, ``ensemble`` (``members=[spec dicts]``),
    ``spatufg`` (the framelet teacher), ``fmlp-o`` and ``fmlp-s`` (the framelet MLP students;
    framelet options ``filters``, ``levels``, ``order``, ``scale``, ``knowledge``).

    ``hidden`` is the width of a hidden layer (per head for GAT, whose hidden layers are
    ``heads * hidden`` wide). ``heads`` is used by GAT only and ignored by the others, so one
    call site can build any model; ``dropout=None`` keeps each model's default. Further keyword
    arguments go to the model's constructor (e.g. ``residual=True``, ``attn_dropout``,
    ``train_eps``); one it does not take is a ValueError naming the model. Every model keeps
    the :class:`~gkd_ext.nn.base.GraphModel` contract: ``inputs = model.prepare(graph)`` once,
    then ``logits, hidden = model(inputs, x)``.

    Example:
        >>> model = build_model("gat", 1433, 8, 7, num_layers=2, heads=8)
        >>> logits, hidden = model(model.prepare(graph), x)
    """
    try:
        key = canonical_model_name(name)
    except ValueError as exc:
        raise ValueError(f"build_model: {exc}") from None
    cls, defaults = _MODELS[key]
    args = dict(defaults)
    args.update(kwargs)
    if dropout is not None:
        args["dropout"] = dropout
    if cls is GAT and heads is not None:
        args["heads"] = heads
    accepted = set(inspect.signature(cls).parameters)
    unknown = sorted(set(args) - accepted)
    if unknown:
        raise ValueError(f"build_model: {key} takes no option(s) {unknown}; it takes "
                         f"{sorted(accepted - {'in_dim', 'hidden', 'out_dim', 'num_layers'})}")
    return cls(in_dim, hidden, out_dim, num_layers=num_layers, **args)
