"""Supervised node classification: the baseline every KD method is compared with."""
from __future__ import annotations

import copy
import random
from typing import Dict, Optional

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..graph import Graph


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def accuracy(logits: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> float:
    return float((logits[mask].argmax(-1) == y[mask]).float().mean())


def train_node_classifier(model: torch.nn.Module, graph: Graph, x: torch.Tensor, y: torch.Tensor,
                          train: torch.Tensor, val: torch.Tensor, test: torch.Tensor, *,
                          epochs: int = 300, lr: float = 0.01, weight_decay: float = 5e-4,
                          patience: int = 100, progress: bool = True,
                          desc: Optional[str] = None) -> Dict[str, float]:
    """Full-batch training with Adam and early stopping on validation accuracy; the returned
    test accuracy is that of the epoch with the best validation accuracy."""
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    best = {"val": -1.0, "test": 0.0, "epoch": -1}
    best_state = None
    bar = tqdm(range(epochs), desc=desc, disable=not progress, leave=True, dynamic_ncols=True)
    for epoch in bar:
        model.train()
        opt.zero_grad()
        logits, _ = model(graph, x)
        loss = F.cross_entropy(logits[train], y[train])
        loss.backward()
        opt.step()
        model.eval()
        with torch.no_grad():
            logits, _ = model(graph, x)
        val_acc = accuracy(logits, y, val)
        if val_acc > best["val"]:
            best = {"val": val_acc, "test": accuracy(logits, y, test), "epoch": epoch}
            best_state = copy.deepcopy(model.state_dict())
        bar.set_postfix(loss=f"{loss.item():.3f}", val=f"{val_acc:.3f}", best_test=f"{best['test']:.3f}")
        if epoch - best["epoch"] >= patience:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    return best
