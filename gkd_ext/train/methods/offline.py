"""Offline KD (METHODS.md §1–3, §7): a frozen teacher, and a student trained with
``CE + β·aux`` or ``KD + β·aux``, where KD is Hinton's logit distillation and aux one of
FitNet, AT, LSP, GSP or G-CRD over aligned hidden layers. ``kd`` is logit KD alone."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Optional, Tuple

from torch import nn

from ...kernels import GSP_KERNELS, KERNELS, LSP_KERNELS, LSP_REDUCTIONS
from ...losses import ATLoss, DistillLoss, FitNetLoss, GCRDLoss, GSPLoss, LogitKDLoss, LSPLoss
from ..config import ModelSpec, option
from ..method import Method, Role, register_method

def parse_pairs(text: str) -> Tuple[Tuple[int, int], ...]:
    """``"-1:-1,0:1"`` -> ``((-1, -1), (0, 1))``: (student layer, teacher layer) pairs."""
    try:
        return tuple(tuple(int(v) for v in pair.split(":", 1)) for pair in text.split(","))
    except ValueError:
        raise ValueError(f"expected 'student:teacher,...' integer pairs, got {text!r}") from None


parse_pairs.__name__ = "student:teacher pairs"


@dataclass
class LogitKDConfig:
    alpha: float = option(0.9, help="weight of the KL term in alpha*KD + (1-alpha)*CE",
                          min=0.0, max=1.0)
    kd_temperature: float = option(4.0, help="logit-KD temperature T", above=0.0)


@dataclass
class AuxConfig(LogitKDConfig):
    beta: Optional[float] = option(None, help="weight of the auxiliary loss (default: the "
                                   "method's, ten times smaller with --with-kd)", min=0.0)
    with_kd: bool = option(False, help="alpha*KD + (1-alpha)*CE + beta*aux instead of "
                           "CE + beta*aux")
    layer_pairs: Tuple[Tuple[int, int], ...] = option(
        ((-1, -1),), help="student:teacher hidden-layer pairs to align, comma separated",
        parse=parse_pairs)


@dataclass
class LSPConfig(AuxConfig):
    kernel: str = option("rbf", help="kernel of the neighbour similarities", choices=LSP_KERNELS)
    reduction: str = option("node_mean", help="how the per-node KL terms are reduced",
                            choices=LSP_REDUCTIONS)
    gamma: Optional[float] = option(None, help="rbf kernel: exp(-gamma |a-b|^2); default "
                                    f"{KERNELS['rbf'].default}", above=0.0)
    sigma: Optional[float] = option(None, help="laplacian kernel: exp(-|a-b|_1 / sigma); "
                                    f"default {KERNELS['laplacian'].default}", above=0.0)


@dataclass
class GSPConfig(AuxConfig):
    kernel: str = option("cosine", help="kernel of the node-pair similarities",
                         choices=GSP_KERNELS)
    gamma: Optional[float] = option(None, help="rbf kernel: exp(-gamma |a-b|^2); default "
                                    f"{KERNELS['rbf'].default}", above=0.0)
    max_samples: Optional[int] = option(None, help="random nodes per step, as the paper "
                                        "subsampled (default: all nodes)", min=1)


@dataclass
class GCRDConfig(AuxConfig):
    temperature: Optional[float] = option(None, help="InfoNCE temperature (default 0.075; "
                                          "0.05 with --with-kd)", above=0.0)
    proj_dim: int = option(256, help="width of the projection heads", min=1)
    symmetric: bool = option(False, help="average both InfoNCE directions")
    max_samples: Optional[int] = option(None, help="random nodes per step, as the paper "
                                        "subsampled (default: all nodes)", min=1)


def kernel_params(cfg, kernel: str) -> dict:
    """The kernel parameters set in ``cfg`` (gamma, sigma); one set for a kernel that does not
    take it is a ValueError. Unset ones keep the kernel's own default."""
    params = {k: getattr(cfg, k) for k in ("gamma", "sigma")
              if getattr(cfg, k, None) is not None}
    takes = KERNELS[kernel].param
    wrong = sorted(set(params) - {takes})
    if wrong:
        raise ValueError(f"--{wrong[0]} does not apply to the {kernel} kernel"
                         + (f" (it takes --{takes})" if takes else " (it takes no parameter)"))
    return params


class OfflineKD(Method):
    """The offline family: a frozen teacher and a student. Subclasses choose the auxiliary
    loss (``aux_loss``) and its default weight."""
    Config = LogitKDConfig
    models = {"teacher": ModelSpec("gat", hidden=64, layers=3, heads=4),
              "student": ModelSpec("gcn", hidden=64, layers=2)}
    roles = {"teacher": Role.TEACHER, "student": Role.STUDENT}
    default_beta: ClassVar[float] = 0.0
    has_aux: ClassVar[bool] = False

    def uses_kd(self) -> bool:
        return bool(getattr(self.config, "with_kd", False))

    def beta(self) -> float:
        beta = getattr(self.config, "beta", None)
        if beta is not None:
            return beta
        return self.default_beta / 10 if self.uses_kd() else self.default_beta

    def aux_loss(self, student_dim: int, teacher_dim: int) -> Optional[DistillLoss]:
        return None

    def setup(self, ctx):
        self.task = ctx.task
        cfg = self.config
        self.kd = LogitKDLoss(cfg.kd_temperature, multilabel=ctx.task.multilabel) \
            if self.uses_kd() else None
        self.pairs = tuple(cfg.layer_pairs) if self.has_aux else ()
        self.aux = nn.ModuleList()
        dims_s, dims_t = ctx.hidden_dims["student"], ctx.hidden_dims["teacher"]
        for ls, lt in self.pairs:
            if not (-len(dims_s) <= ls < len(dims_s) and -len(dims_t) <= lt < len(dims_t)):
                raise ValueError(f"layer pair ({ls}, {lt}) out of range: the student has "
                                 f"{len(dims_s)} hidden layers, the teacher {len(dims_t)}")
            self.aux.append(self.aux_loss(dims_s[ls], dims_t[lt]))
        return {"student": self.aux}

    def step(self, out, batch, learners):
        s, t = out["student"], out["teacher"]
        if self.kd is not None:
            a = self.config.alpha
            loss = a * self.kd(s.logits, t.logits.detach()) + \
                (1 - a) * self.task.loss(s.logits, batch)
        else:
            loss = self.task.loss(s.logits, batch)
        logs = {"base": loss.item()}
        if self.pairs:
            aux = 0.0
            for mod, (ls, lt) in zip(self.aux, self.pairs):
                h_s, h_t = s.hidden[ls], t.hidden[lt].detach()
                if batch.seed_rows is not None and not mod.uses_graph:
                    # A sampled batch: losses over the batch's nodes compare its seeds; the
                    # neighbour rows are there for losses over edges (LSP).
                    h_s, h_t = h_s[: batch.seed_rows], h_t[: batch.seed_rows]
                aux = aux + mod(h_s, h_t, graph=batch.graph)
            logs["aux"] = float(aux.detach())
            loss = loss + self.beta() * aux
        return {"student": loss}, logs


@register_method
class LogitKD(OfflineKD):
    name = "kd"
    summary = "Hinton's logit KD: alpha*T^2*KL(teacher || student) + (1-alpha)*CE"

    def uses_kd(self) -> bool:
        return True


@register_method
class FitNet(OfflineKD):
    name = "fitnet"
    summary = "CE + beta * FitNet hints (MSE of normalised projected hidden layers)"
    Config = AuxConfig
    default_beta = 100.0
    has_aux = True

    def aux_loss(self, student_dim, teacher_dim):
        return FitNetLoss(student_dim, teacher_dim)


@register_method
class AttentionTransfer(OfflineKD):
    name = "at"
    summary = "CE + beta * attention transfer over nodes"
    Config = AuxConfig
    default_beta = 100.0
    has_aux = True

    def aux_loss(self, student_dim, teacher_dim):
        return ATLoss()


@register_method
class LSP(OfflineKD):
    name = "lsp"
    summary = "CE + beta * LSP (local structure: KL of neighbour-similarity softmaxes)"
    Config = LSPConfig
    default_beta = 100.0
    has_aux = True

    def check(self):
        self.aux_loss(1, 1)   # a bad kernel or parameter fails here, not mid-run

    def aux_loss(self, student_dim, teacher_dim):
        cfg = self.config
        return LSPLoss(cfg.kernel, cfg.reduction, **kernel_params(cfg, cfg.kernel))


@register_method
class GSP(OfflineKD):
    name = "gsp"
    summary = "CE + beta * GSP (global structure: squared difference of node-pair kernels)"
    Config = GSPConfig
    default_beta = 100.0
    has_aux = True

    def check(self):
        self.aux_loss(1, 1)

    def aux_loss(self, student_dim, teacher_dim):
        cfg = self.config
        return GSPLoss(cfg.kernel, max_samples=cfg.max_samples, **kernel_params(cfg, cfg.kernel))


@register_method
class GCRD(OfflineKD):
    name = "gcrd"
    summary = "CE + beta * G-CRD (InfoNCE between projected student and teacher nodes)"
    Config = GCRDConfig
    default_beta = 0.1
    has_aux = True

    def aux_loss(self, student_dim, teacher_dim):
        cfg = self.config
        tau = cfg.temperature if cfg.temperature is not None else (0.05 if self.uses_kd() else 0.075)
        return GCRDLoss(student_dim, teacher_dim, p=cfg.proj_dim, temperature=tau,
                        symmetric=cfg.symmetric, max_samples=cfg.max_samples)
