"""Alignahead (Guo, Chen, Wang, IJCNN 2022): online cross-layer KD among M students, no
teacher (METHODS.md §4).

Each epoch, for each learner t in turn, one step updates t alone:
``L_t = task(z_t, y) + a · 1/(M−1) · Σ_{c≠t} Σ_{(l, l')∈P} LSP(H_t[l] ‖ H_c[l'])`` with the peers
frozen, KL(peer ‖ learner), the laplacian kernel and node-mean reduction. Pairings:
``one_to_one`` {(l, l)}; ``alignahead``: learner layer k imitates the peer's layer
(k − 1) mod L. ``a = 0`` trains the students independently (the baseline).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

from ...kernels import KERNELS
from ...losses import LSPLoss
from ..config import ModelSpec, option
from ..method import ROUND_ROBIN, Method, Role, Slot, register_method

PAIRINGS = ("one_to_one", "alignahead")


def layer_pairs(num_layers: int, pairing: str) -> List[Tuple[int, int]]:
    """(learner layer, peer layer) pairs over ``num_layers`` aligned hidden layers."""
    if pairing == "one_to_one":
        return [(l, l) for l in range(num_layers)]
    if pairing == "alignahead":
        return [(l + 1, l) for l in range(num_layers - 1)] + [(0, num_layers - 1)]
    raise ValueError(f"unknown pairing {pairing!r}; choose from {PAIRINGS}")


@dataclass
class AlignaheadConfig:
    num_students: int = option(2, help="number of students trained together", min=2)
    pairing: str = option("alignahead", help="which peer layer each learner layer imitates",
                          choices=PAIRINGS)
    a: float = option(1.0, help="weight of the LSP term; 0 trains the students independently",
                      min=0.0)
    sigma: Optional[float] = option(
        None, help="laplacian kernel width exp(-|a-b|_1/sigma), default "
        f"{KERNELS['laplacian'].default} (the paper's, which suits its feature scale, PPI; on "
        "row-normalised bag-of-words features neighbour distances are ~1 and the term nearly "
        "vanishes)", above=0.0)
    same_init: bool = option(False, help="start every student from the first one's weights, as "
                             "the seed code did")


@register_method
class Alignahead(Method):
    name = "alignahead"
    summary = "online cross-layer LSP among M students, one learner at a time"
    Config = AlignaheadConfig
    models = {"student": ModelSpec()}
    roles = {"student": Role.PEER}
    schedule = ROUND_ROBIN

    def participants(self):
        spec = self.specs["student"]
        return {f"student{i}": Slot(Role.PEER, spec) for i in range(self.config.num_students)}

    def uses_peers(self) -> bool:
        return self.config.a > 0

    def setup(self, ctx):
        self.task = ctx.task
        names = list(ctx.models)
        if self.config.same_init:
            for n in names[1:]:
                ctx.models[n].load_state_dict(ctx.models[names[0]].state_dict())
        params = {} if self.config.sigma is None else {"sigma": self.config.sigma}
        self.lsp = LSPLoss("laplacian", "node_mean", **params)
        self.pairs = layer_pairs(len(ctx.hidden_dims[names[0]]), self.config.pairing)
        return {}

    def step(self, out, batch, learners):
        t = learners[0]
        loss = self.task.loss(out[t].logits, batch)
        cfg = self.config
        if cfg.a > 0:
            hidden = out[t].hidden
            kd = sum(self.lsp(hidden[l], out[c].hidden[lp].detach(), graph=batch.graph)
                     for c in out if c != t for l, lp in self.pairs)
            loss = loss + cfg.a / (cfg.num_students - 1) * kd
        return {t: loss}, {}
