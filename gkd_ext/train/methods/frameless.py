"""Frameless graph KD (Shi, Shao, Guo, Gao; TNNLS 2025, arXiv 2307.06631; METHODS.md §6): a
framelet teacher (SpatUFG) distilled into framelet MLP students (FMLP-O, FMLP-S) that read the
graph knowledge ``M_e^k X``, ``M_e = W_e^T Â W_e``, computed once, so inference is an MLP's.

Student loss, one optimiser step per iteration:
``λ·NLL(student on the training nodes, y) + (1 - λ)·KL(teacher ‖ student)`` over every node of
the batch (``batchmean``; the whole graph, or in an inductive task the observed nodes). Any
teacher works (``--teacher gcn``); ``--student mlp`` is the GLNN baseline (a plain MLP with the
same loss). The framelet options (``--filters``, ``--levels``, ``--order``, ``--scale``) apply
to every framelet model of the run (teacher and student alike, so they share the operators);
``--teacher-options``/``--student-options`` override them per model. SDRF rewiring and the
inductive protocol are data options (``--sdrf-iterations``, ``--inductive``), so the teacher
and the student see the same graph, and any method can use them. In mini-batches
(``--fanouts``) the framelet students run on their seeds' rows of the whole graph's knowledge;
the SpatUFG teacher cannot sample, so it is trained on the full graph and loaded
(``--teacher saved --teacher-ckpt FILE``), or another teacher samples (``--teacher gcn``).

Fixed from the authors' code: the high-pass branch reads the high-pass knowledge with its own
encoder and classifier (:class:`gkd_ext.nn.FMLP`); the best weights are kept by ``fit``, not
reloaded every epoch; knowledge is never an ``N x N`` matrix.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch.nn.functional as F

from ...framelet import DEFAULT_ORDER, FILTER_NAMES
from ...nn import canonical_model_name
from ...nn.framelet import KNOWLEDGE_MODES
from ..config import ModelSpec, option
from ..method import Method, Role, register_method

FRAMELET_ARCHS = ("spatufg", "fmlp-o", "fmlp-s")


@dataclass
class FramelessConfig:
    lambda_: float = option(0.5, help="lambda in lambda*NLL(student, labels on the training "
                            "nodes) + (1-lambda)*KL(teacher || student) over all nodes "
                            "(GLNN's code defaults to 0)", min=0.0, max=1.0, flag="lambda")
    filters: str = option("haar", help="framelet filter bank of the framelet models",
                          choices=FILTER_NAMES)
    levels: int = option(1, help="framelet levels (the low-pass cascade)", min=1)
    order: int = option(DEFAULT_ORDER, help="Chebyshev coefficients per filter (degree "
                        "order-1; the Haar frame is tight to 2e-5 at 6)", min=1)
    scale: float = option(2.0, help="framelet dilation scale", above=1.0)
    knowledge: str = option("auto", help="students' graph knowledge M^k X: precompute (an MLP "
                            "at inference), propagate (SpMM chains on N x hidden at every "
                            "forward), or auto (precompute while it fits in 1 GiB)",
                            choices=KNOWLEDGE_MODES)


@register_method
class FramelessKD(Method):
    name = "frameless"
    summary = ("frameless graph KD: a framelet teacher (SpatUFG) into framelet MLP students "
               "(FMLP-O/FMLP-S) with lambda*NLL + (1-lambda)*KL")
    Config = FramelessConfig
    models = {"teacher": ModelSpec("spatufg", hidden=64, layers=2),
              "student": ModelSpec("fmlp-o", hidden=64, layers=2)}
    roles = {"teacher": Role.TEACHER, "student": Role.STUDENT}

    def check(self) -> None:
        cfg = self.config
        shared = {"filters": cfg.filters, "levels": cfg.levels, "order": cfg.order,
                  "scale": cfg.scale}
        for group, spec in self.specs.items():
            if spec.arch == "saved":
                continue
            arch = canonical_model_name(spec.arch)
            if arch in FRAMELET_ARCHS:
                own = dict(shared)
                if arch != "spatufg":
                    own["knowledge"] = cfg.knowledge
                self.specs[group] = dataclasses.replace(spec, options={**own, **spec.options})

    def setup(self, ctx):
        if ctx.task.multilabel:
            raise ValueError("frameless: the NLL and KL terms compare class distributions; "
                             "multi-label tasks are not supported")
        self.task = ctx.task
        return {}

    def step(self, out, batch, learners):
        lam = self.config.lambda_
        s = out["student"].logits
        t = out["teacher"].logits.detach()
        nll = self.task.loss(s, batch)
        kl = F.kl_div(F.log_softmax(s, -1), F.log_softmax(t, -1), log_target=True,
                      reduction="batchmean")
        logs = {"nll": float(nll.detach()), "kl": float(kl.detach())}
        return {"student": lam * nll + (1 - lam) * kl}, logs
