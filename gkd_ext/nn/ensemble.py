"""An ensemble of models as one model: a saved cohort (e.g. graph mutual learning's peers)
can then serve as the teacher of any method."""
from __future__ import annotations

from typing import Any, Hashable, List, Sequence, Tuple

import torch
from torch import nn

from ..graph import Graph
from .base import GraphModel


def mean_probability_logits(logits: Sequence[torch.Tensor]) -> torch.Tensor:
    """Log of the members' mean class probabilities: the ensemble's logits."""
    probs = torch.stack([torch.softmax(z, -1) for z in logits]).mean(0)
    return probs.clamp_min(1e-12).log()


class Ensemble(GraphModel):
    """The mean class probability of ``members`` (built models; ``build_model("ensemble",
    members=[spec dicts])`` builds them from :class:`~gkd_ext.train.ModelSpec` fields).
    ``forward`` returns the log of that mean as logits and, as hidden outputs, the members'
    hidden layers concatenated layer by layer (up to the shallowest member's depth)."""

    def __init__(self, members: Sequence[GraphModel]):
        super().__init__()
        if len(members) < 1:
            raise ValueError("Ensemble: 'members' must list at least one model spec")
        self.members = nn.ModuleList(members)
        depth = min(len(m.hidden_dims) for m in self.members)
        self._hidden_dims = [sum(m.hidden_dims[i] for m in self.members) for i in range(depth)]

    def prepare(self, graph: Graph) -> List[Any]:
        return [m.prepare(graph) for m in self.members]

    def prepare_key(self) -> Hashable:
        return (type(self),) + tuple(m.prepare_key() for m in self.members)

    def forward(self, inputs: List[Any], x: torch.Tensor) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        outs = [m(i, x) for m, i in zip(self.members, inputs)]
        hidden = [torch.cat([o[1][i] for o in outs], -1) for i in range(len(self._hidden_dims))]
        return mean_probability_logits([o[0] for o in outs]), hidden
