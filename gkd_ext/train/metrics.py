"""The evaluation metrics, by name: each dataset says which one its literature reports.

Every metric takes ``(logits [n, C], target, rows)`` where ``rows`` is a bool mask or an index
tensor of the rows to score (None: all), and returns a float in [0, 1], higher is better
(early stopping relies on that), NaN when there is nothing to score.
"""
from __future__ import annotations

from typing import Callable, Dict, Optional

import torch

Tensor = torch.Tensor


def _rows(t: Tensor, rows: Optional[Tensor]) -> Tensor:
    return t if rows is None else t[rows]


def accuracy(logits: Tensor, y: Tensor, rows: Optional[Tensor] = None) -> float:
    """Fraction of rows whose argmax logit is the label."""
    logits, y = _rows(logits, rows), _rows(y, rows)
    if y.numel() == 0:
        return float("nan")
    return float((logits.argmax(-1) == y).float().mean())


def micro_f1(logits: Tensor, y: Tensor, rows: Optional[Tensor] = None) -> float:
    """Micro-averaged F1 of multi-label predictions, thresholding sigmoid(logits) at 0.5
    (not the raw logits, as the Alignahead seed code did)."""
    logits, y = _rows(logits, rows), _rows(y, rows)
    if y.numel() == 0:
        return float("nan")
    pred = torch.sigmoid(logits) > 0.5
    true = y > 0.5
    tp = (pred & true).sum().item()
    fp = (pred & ~true).sum().item()
    fn = (~pred & true).sum().item()
    return 2 * tp / max(2 * tp + fp + fn, 1)


def roc_auc(logits: Tensor, y: Tensor, rows: Optional[Tensor] = None) -> float:
    """Area under the ROC curve of a binary task, scored by the positive class's log-odds
    (``logits[:, 1] - logits[:, 0]``, or the single column of ``[n, 1]`` logits).

    Computed from ranks (the Mann–Whitney statistic) with ties counted one half, as
    scikit-learn's ``roc_auc_score``; NaN when only one class is present."""
    logits, y = _rows(logits, rows), _rows(y, rows)
    if logits.dim() != 2 or logits.size(1) not in (1, 2):
        raise ValueError(f"roc_auc: needs binary logits [n, 1] or [n, 2], got {list(logits.shape)}")
    score = logits[:, 0] if logits.size(1) == 1 else logits[:, 1] - logits[:, 0]
    pos = y.reshape(-1) > 0
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    score = score.double()
    order = torch.argsort(score)
    sorted_scores = score[order]
    ranks = torch.empty_like(score)
    ranks[order] = torch.arange(1, score.numel() + 1, dtype=torch.float64, device=score.device)
    # Tied scores share the mean of their ranks.
    _, inverse, counts = torch.unique_consecutive(sorted_scores, return_inverse=True,
                                                  return_counts=True)
    ends = torch.cumsum(counts, 0).double()
    mean_rank = ends - (counts.double() - 1) / 2
    ranks[order] = mean_rank[inverse]
    u = float(ranks[pos].sum()) - n_pos * (n_pos + 1) / 2
    return u / (n_pos * n_neg)


METRICS: Dict[str, Callable[..., float]] = {"accuracy": accuracy, "micro_f1": micro_f1,
                                            "roc_auc": roc_auc}


def get_metric(name: str) -> Callable[..., float]:
    if name not in METRICS:
        raise ValueError(f"unknown metric {name!r}; known metrics: {sorted(METRICS)}")
    return METRICS[name]
