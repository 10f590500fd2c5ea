"""Distillation losses as nn.Modules (METHODS.md §1–3, §7).

Each loss lives in its own section below; the modules are thin wrappers over the documented
functions in :mod:`gkd_ext.functional`.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn
import torch.nn.functional as F

from .functional import contrastive_loss, gsp_loss, lsp_loss
from .graph import Graph
from .kernels import LSP_REDUCTIONS, check_choice, resolve_kernel

Tensor = torch.Tensor


# ------------------------------------------------------------------ logit KD, FitNet, AT (§7)
class LogitKDLoss(nn.Module):
    """Hinton's logit distillation mixed with the task loss:
    ``alpha · T² · KL(softmax(z_t/T) ‖ softmax(z_s/T)) + (1 − alpha) · CE(z_s[mask], y)``.

    The KL term is over all nodes given, divided by their number (``batchmean``); the seed code
    divided by N·C by accident, available as ``per_class_mean=True``. For multi-label tasks the
    KL becomes BCE against ``sigmoid(z_t / T)``.
    """

    def __init__(self, alpha: float = 0.9, temperature: float = 4.0, multilabel: bool = False,
                 per_class_mean: bool = False):
        super().__init__()
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"LogitKDLoss: 'alpha' must lie in [0, 1], got {alpha}")
        if temperature <= 0:
            raise ValueError(f"LogitKDLoss: 'temperature' must be > 0, got {temperature}")
        self.alpha, self.T = alpha, temperature
        self.multilabel, self.per_class_mean = multilabel, per_class_mean

    def distill(self, z_s: Tensor, z_t: Tensor) -> Tensor:
        T = self.T
        if self.multilabel:
            return F.binary_cross_entropy_with_logits(z_s / T, torch.sigmoid(z_t / T)) * T * T
        kl = F.kl_div(F.log_softmax(z_s / T, -1), F.log_softmax(z_t / T, -1), log_target=True,
                      reduction="sum") / z_s.size(0)
        if self.per_class_mean:
            kl = kl / z_s.size(1)
        return kl * T * T

    def forward(self, z_s: Tensor, z_t: Tensor, y: Tensor, mask: Tensor) -> Tensor:
        if self.multilabel:
            task = F.binary_cross_entropy_with_logits(z_s[mask], y[mask].float())
        else:
            task = F.cross_entropy(z_s[mask], y[mask])
        return self.alpha * self.distill(z_s, z_t.detach()) + (1 - self.alpha) * task


class FitNetLoss(nn.Module):
    """FitNet hint loss: ``MSE(normalize(W h_s), normalize(h_t))`` with a trainable linear map
    ``W`` from the student width to the teacher width (rows L2-normalised)."""

    def __init__(self, student_dim: int, teacher_dim: int):
        super().__init__()
        self.proj = nn.Linear(student_dim, teacher_dim)

    def forward(self, h_s: Tensor, h_t: Tensor) -> Tensor:
        return F.mse_loss(F.normalize(self.proj(h_s), dim=-1), F.normalize(h_t.detach(), dim=-1))


class ATLoss(nn.Module):
    """Attention transfer over nodes: ``a_i = Σ_d h_id²``, ``â = a / ‖a‖₂`` over the nodes,
    loss ``MSE(â_s, â_t)``. Works across different widths."""

    @staticmethod
    def attention(h: Tensor) -> Tensor:
        return F.normalize(h.pow(2).sum(-1), dim=0)

    def forward(self, h_s: Tensor, h_t: Tensor) -> Tensor:
        return F.mse_loss(self.attention(h_s), self.attention(h_t.detach()))


# ---------------------------------------------------------------- GSP and G-CRD (Joshi et al.)
def _node_subset(n: int, nodes: Optional[Tensor], max_samples: Optional[int],
                 generator: Optional[torch.Generator], device: torch.device) -> Optional[Tensor]:
    """Indices of the nodes a similarity loss runs over: ``nodes`` (bool mask [n] or index
    tensor), then at most ``max_samples`` of them drawn uniformly without replacement per call
    (the papers' subsampling); None means all n nodes."""
    idx = None
    if nodes is not None:
        if not isinstance(nodes, Tensor):
            raise TypeError(f"'nodes' must be a bool mask or an index tensor, got {type(nodes).__name__}")
        if nodes.dtype == torch.bool:
            if nodes.shape != (n,):
                raise ValueError(f"a bool 'nodes' mask must have shape [{n}], got {list(nodes.shape)}")
            idx = nodes.nonzero().view(-1)
        elif nodes.dtype in (torch.int64, torch.int32):
            idx = nodes.view(-1).long()
        else:
            raise ValueError(f"'nodes' must be a bool mask or an int64/int32 index tensor, got {nodes.dtype}")
        idx = idx.to(device)
    if max_samples is not None:
        count = n if idx is None else idx.numel()
        if count > max_samples:
            pick = torch.randperm(count, generator=generator,
                                  device=generator.device if generator is not None else "cpu")
            pick = pick[:max_samples].to(device)
            idx = pick if idx is None else idx[pick]
    return idx


def _check_max_samples(max_samples: Optional[int]) -> Optional[int]:
    if max_samples is not None and (int(max_samples) != max_samples or max_samples < 1):
        raise ValueError(f"'max_samples' must be a positive integer or None, got {max_samples!r}")
    return None if max_samples is None else int(max_samples)


class _ProjectionHead(nn.Sequential):
    """``Linear(d, p) -> BatchNorm1d(p) -> ReLU`` (the G-CRD projection head)."""

    def __init__(self, d: int, p: int):
        super().__init__(nn.Linear(d, p), nn.BatchNorm1d(p), nn.ReLU())


def _restrict_pair(where: str, h_s: Tensor, h_t: Tensor, nodes: Optional[Tensor],
                   max_samples: Optional[int], generator: Optional[torch.Generator]):
    """Student and teacher rows of the node subset a similarity loss runs over."""
    if h_s.size(0) != h_t.size(0):
        raise ValueError(f"{where}: 'h_s' and 'h_t' must have the same number of rows n, got "
                         f"{list(h_s.shape)} and {list(h_t.shape)}")
    idx = _node_subset(h_s.size(0), nodes, max_samples, generator, h_s.device)
    return (h_s, h_t) if idx is None else (h_s[idx], h_t[idx])


class GCRDLoss(nn.Module):
    r"""Graph contrastive representation distillation (G-CRD, Joshi et al.).

    Trainable projection heads map student features ``h_s [n, d_s]`` and teacher features
    ``h_t [n, d_t]`` to ``p`` dimensions (``Linear -> BatchNorm1d -> ReLU``), rows are
    L2-normalised, and the tiled InfoNCE of :func:`gkd_ext.contrastive_loss` (student anchors,
    teacher candidates, positive = the same node) is returned:

    .. math:: L = \frac1{|S|} \sum_{i \in S} \Big[\log \sum_{j \in S} e^{z_s[i]\cdot z_t[j]/\tau}
              - z_s[i]\cdot z_t[i]/\tau\Big]

    Memory O(|S|·p), so all nodes can be used (the default); ``max_samples`` reproduces the
    paper's random subsampling (a fresh subset per call).

    Args:
        d_s, d_t: student and teacher feature widths.
        p: projection width (256).
        temperature: :math:`\tau` (0.075; 0.05 with logit KD).
        symmetric: also anchor on the teacher and average both directions.
        max_samples: at most this many nodes per call, drawn uniformly; None: all.
        precision: ``"ieee"`` (default), ``"tf32"`` or ``"bf16"`` (CUDA tensor cores).
        generator: optional torch.Generator for the subsampling.

    Shape: ``forward(h_s [n, d_s], h_t [n, d_t], nodes=None) -> []``; ``nodes`` is a bool mask
    ``[n]`` or an index tensor selecting S (e.g. the training nodes).

    Example:
        >>> crd = GCRDLoss(64, 256)
        >>> loss = crd(torch.randn(100, 64), torch.randn(100, 256).detach())
    """

    def __init__(self, d_s: int, d_t: int, p: int = 256, temperature: float = 0.075,
                 symmetric: bool = False, max_samples: Optional[int] = None,
                 precision: str = "ieee", generator: Optional[torch.Generator] = None):
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"GCRDLoss: 'temperature' must be > 0, got {temperature}")
        self.proj_s = _ProjectionHead(d_s, p)
        self.proj_t = _ProjectionHead(d_t, p)
        self.temperature = float(temperature)
        self.symmetric = bool(symmetric)
        self.max_samples = _check_max_samples(max_samples)
        self.precision = precision
        self.generator = generator

    def forward(self, h_s: Tensor, h_t: Tensor, nodes: Optional[Tensor] = None) -> Tensor:
        h_s, h_t = _restrict_pair("GCRDLoss", h_s, h_t, nodes, self.max_samples, self.generator)
        z_s = nn.functional.normalize(self.proj_s(h_s), dim=1)
        z_t = nn.functional.normalize(self.proj_t(h_t), dim=1)
        return contrastive_loss(z_s, z_t, self.temperature, self.symmetric, self.precision)

    def extra_repr(self) -> str:
        return (f"temperature={self.temperature}, symmetric={self.symmetric}, "
                f"max_samples={self.max_samples}, precision={self.precision!r}")


class GSPLoss(nn.Module):
    r"""Global structure preserving loss (GSP, Joshi et al.): :func:`gkd_ext.gsp_loss` over a
    node set S, ``mean_{a,b in S} (K_s[a,b] - K_t[a,b])^2``.

    Args:
        kernel: ``"cosine" | "poly" | "l2" | "rbf"``.
        max_samples: at most this many nodes per call, drawn uniformly (the paper's 2048–24576
            subsampling); None: all nodes, which the tiled kernel affords (memory O(n·D)).
        generator: optional torch.Generator for the subsampling.
        **kernel_params: ``gamma`` for ``"rbf"`` (0.5).

    Shape: ``forward(h_s [n, D_s], h_t [n, D_t], nodes=None) -> []``.

    Example:
        >>> gsp = GSPLoss("rbf", gamma=0.5)
        >>> loss = gsp(torch.randn(100, 64), torch.randn(100, 256))
    """

    def __init__(self, kernel: str = "cosine", max_samples: Optional[int] = None,
                 generator: Optional[torch.Generator] = None, **kernel_params):
        super().__init__()
        self.kernel = kernel
        self.kernel_params = dict(kernel_params)
        self.max_samples = _check_max_samples(max_samples)
        self.generator = generator

    def forward(self, h_s: Tensor, h_t: Tensor, nodes: Optional[Tensor] = None) -> Tensor:
        h_s, h_t = _restrict_pair("GSPLoss", h_s, h_t, nodes, self.max_samples, self.generator)
        return gsp_loss(h_s, h_t, self.kernel, **self.kernel_params)

    def extra_repr(self) -> str:
        return f"kernel={self.kernel!r}, max_samples={self.max_samples}, params={self.kernel_params}"


# ------------------------------------------------------------------ LSP
class LSPLoss(torch.nn.Module):
    r"""Local structure preserving loss (Yang et al., CVPR 2020) as a module.

    ``LSPLoss(kernel, reduction, **kernel_params)(graph, h_student, h_teacher)`` is
    :func:`gkd_ext.lsp_loss`: per destination node, KL(teacher || student) between the
    softmaxes of the kernel values ``k(h_i, h_j)`` over its incoming edges, fused, O(N) memory,
    deterministic backward. Kernel and parameters are validated at construction.

    Args:
        kernel: ``rbf`` (``gamma=0.5``), ``laplacian`` (``sigma=100``), ``cosine``, ``poly``,
            ``l2`` or ``linear``.
        reduction: ``node_mean`` (default), ``edge_mean``, ``sum`` or ``none``.
        **kernel_params: ``gamma`` or ``sigma``.

    Shapes: ``h_student [N, D_s]``, ``h_teacher [N, D_t]`` on a square graph of N nodes.

    Example:
        >>> loss_fn = LSPLoss("laplacian", sigma=100.0)
        >>> loss = loss_fn(graph, h_student, h_teacher.detach())
    """

    def __init__(self, kernel: str = "rbf", reduction: str = "node_mean", **kernel_params):
        super().__init__()
        resolve_kernel("LSPLoss", "lsp", kernel, kernel_params)
        check_choice("LSPLoss", "reduction", reduction, LSP_REDUCTIONS)
        self.kernel, self.reduction, self.kernel_params = kernel, reduction, dict(kernel_params)

    def forward(self, graph: Graph, h_student: Tensor, h_teacher: Tensor) -> Tensor:
        return lsp_loss(graph, h_student, h_teacher, kernel=self.kernel, reduction=self.reduction,
                        **self.kernel_params)

    def extra_repr(self) -> str:
        params = "".join(f", {k}={v}" for k, v in self.kernel_params.items())
        return f"kernel={self.kernel!r}, reduction={self.reduction!r}{params}"
