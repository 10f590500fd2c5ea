"""Distillation losses as nn.Modules (METHODS.md §1–3, §7)."""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

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
