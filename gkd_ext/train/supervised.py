"""Supervised node classification: the baseline every KD method is compared with."""
from __future__ import annotations

from typing import Dict, Optional

import torch

from ..graph import Graph
from .common import Tracker, metric, run_loop, task_loss


def train_node_classifier(model: torch.nn.Module, graph: Graph, x: torch.Tensor, y: torch.Tensor,
                          train: torch.Tensor, val: torch.Tensor, test: torch.Tensor, *,
                          epochs: int = 300, lr: float = 0.01, weight_decay: float = 5e-4,
                          patience: int = 100, multilabel: bool = False, progress: bool = True,
                          desc: Optional[str] = None, checkpoint: Optional[str] = None,
                          interrupt_after: Optional[int] = None) -> Dict[str, float]:
    """Full-batch training with Adam and early stopping on the validation metric. Returns the
    test metric at the best validation epoch, whose weights are loaded into ``model``."""
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    trackers = {"model": Tracker(patience)}

    def train_epoch(epoch):
        model.train()
        opt.zero_grad()
        logits, _ = model(graph, x)
        loss = task_loss(logits, y, train, multilabel)
        loss.backward()
        opt.step()
        return {"task": loss.item()}

    def evaluate():
        model.eval()
        with torch.no_grad():
            logits, _ = model(graph, x)
        return {"model": {s: metric(logits, y, m, multilabel)
                          for s, m in (("train", train), ("val", val), ("test", test))}}

    timing = run_loop({"model": model}, {"model": opt}, trackers, epochs, train_epoch, evaluate,
                      checkpoint=checkpoint, interrupt_after=interrupt_after, progress=progress,
                      desc=desc)
    t = trackers["model"]
    return {"val": t.best_val, "test": t.best_test, "epoch": t.best_epoch, **timing}
