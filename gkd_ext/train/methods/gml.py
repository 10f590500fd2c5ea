"""Graph mutual learning (Agbaje et al., arXiv 2510.19223; METHODS.md §5): K peers of any
architectures trained together from scratch, each learning from the others' softened
predictions through an adaptive logit weighting (ALW) unit, with an entropy term.

Peer k minimises ``CE(z_k, y) + λ_kd·KL(q_{−k} ‖ p_k^T) − λ_ent·H(p_k^T)``
(:class:`gkd_ext.losses.MutualLoss`). The ALW unit is one shared trainable part with its own
optimiser. ``--no-alw`` (uniform weights, fixed temperature) with ``--lambda-ent 0`` is deep
mutual learning. The peers' ensemble (mean of their probabilities) is scored next to them.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Dict, List

import torch

from ...losses import MutualLoss
from ...nn import canonical_model_name, mean_probability_logits
from ..config import ModelSpec, option, parse_options, validate
from ..method import JOINT, ROUND_ROBIN, Method, Role, Slot, register_method

Tensor = torch.Tensor


SPEC_FIELDS = ("hidden", "layers", "heads", "dropout")


def peer_specs(text: str, base: ModelSpec) -> List[ModelSpec]:
    """``"gcn,gat:hidden=8:heads=8,sage"`` -> one spec per peer: the architecture, then
    ``key=value`` settings that replace ``base``'s (hidden, layers, heads, dropout) or become
    architecture options."""
    specs = []
    for item in filter(None, (t.strip() for t in text.split(","))):
        arch, *settings = item.split(":")
        canonical_model_name(arch)   # ValueError naming the known models
        fields, options = {}, dict(base.options)
        for kv in settings:
            key, value = parse_options(kv).popitem() if "=" in kv else (kv, None)
            if value is None:
                raise ValueError(f"peer {item!r}: expected key=value after the architecture, "
                                 f"got {kv!r}")
            if key in SPEC_FIELDS:
                fields[key] = value
            else:
                options[key] = value
        spec = dataclasses.replace(base, arch=arch, options=options, **fields)
        specs.append(validate(spec))
    return specs


def parse_peers(text: str) -> str:
    peer_specs(text, ModelSpec())
    return text


parse_peers.__name__ = "comma-separated architectures"


@dataclass
class GMLConfig:
    peers: str = option("gcn,gat,sage", help="the peers, comma separated (K = their number, "
                        "at least 2): an architecture (gcn, gat, sage, gin, mlp, ...), optionally "
                        "followed by its own settings, e.g. gcn,gat:hidden=8:heads=8,sage; "
                        "unset settings come from the --peer-* options", parse=parse_peers)
    lambda_kd: float = option(1.0, help="weight of each peer's KL to its weighted target",
                              min=0.0)
    lambda_ent: float = option(0.1, help="weight of the entropy enhancement: the loss subtracts "
                               "lambda_ent * H(p_k^T), so > 0 keeps the peers' softened "
                               "predictions spread out; 0 turns it off")
    alw: bool = option(True, help="adaptive logit weighting; --no-alw: uniform weights and the "
                       "fixed --temperature (deep mutual learning)")
    temperature: float = option(1.0, help="the fixed temperature without ALW", above=0.0)
    t_min: float = option(1.0, help="ALW: lowest node temperature", above=0.0)
    t_max: float = option(4.0, help="ALW: highest node temperature", above=0.0)
    schedule: str = option("joint", help="joint: every peer steps from one forward pass (deep "
                           "mutual learning); alternating: one peer at a time, the others "
                           "frozen", choices=("joint", "alternating"))


@register_method
class GraphMutualLearning(Method):
    name = "gml"
    summary = "K heterogeneous peers teaching each other (adaptive logit weighting, entropy)"
    Config = GMLConfig
    models = {"peer": ModelSpec("gcn", hidden=64, layers=2)}
    roles = {"peer": Role.PEER}
    ensemble = True

    def check(self) -> None:
        cfg = self.config
        self.peer_specs = peer_specs(cfg.peers, self.specs["peer"])
        if len(self.peer_specs) < 2:
            raise ValueError(f"gml: --peers needs at least 2 architectures, got {cfg.peers!r}")
        if cfg.t_min > cfg.t_max:
            raise ValueError(f"gml: --t-min {cfg.t_min} must not exceed --t-max {cfg.t_max}")
        self.schedule = ROUND_ROBIN if cfg.schedule == "alternating" else JOINT

    def participants(self) -> Dict[str, Slot]:
        return {f"peer{i}_{canonical_model_name(spec.arch)}": Slot(Role.PEER, spec)
                for i, spec in enumerate(self.peer_specs)}

    def setup(self, ctx):
        if ctx.task.multilabel:
            raise ValueError("gml: mutual learning exchanges class distributions; multi-label "
                             "tasks are not supported")
        cfg = self.config
        self.task = ctx.task
        self.names: List[str] = list(ctx.models)
        self.loss = MutualLoss(len(self.names), cfg.lambda_kd, cfg.lambda_ent, adaptive=cfg.alw,
                               temperature=cfg.temperature, t_min=cfg.t_min, t_max=cfg.t_max)
        return {"alw": self.loss} if cfg.alw else {}

    def step(self, out, batch, learners):
        logits = [out[n].logits for n in self.names]
        losses, parts = self.loss(logits, batch.y, batch.loss_rows, return_parts=True)
        logs = {f"kl_{n}": float(parts["kl"][i]) for i, n in enumerate(self.names)}
        logs.update({f"entropy_{n}": float(parts["entropy"][i]) for i, n in enumerate(self.names)})
        return {n: losses[i] for i, n in enumerate(self.names) if n in learners}, logs

    def combine(self, logits: Dict[str, Tensor]) -> Dict[str, Tensor]:
        return {"ensemble": mean_probability_logits([logits[n] for n in self.names])}

    def diagnostics(self, logits: Dict[str, Tensor]) -> Dict[str, float]:
        """Each peer's mean weight in the others' targets, and the temperature range."""
        alpha, T = self.loss.weights([logits[n] for n in self.names])
        K = len(self.names)
        # alpha[k, j] over k != j: how much peer j teaches the others, on average
        weight = alpha.mean(-1).sum(0) / (K - 1)
        out = {f"alw_weight_{n}": float(weight[i]) for i, n in enumerate(self.names)}
        out.update({"t_min": float(T.min()), "t_max": float(T.max()), "t_mean": float(T.mean())})
        return out
