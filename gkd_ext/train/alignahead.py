"""Alignahead (Guo, Chen, Wang, IJCNN 2022): online cross-layer KD among M students, no teacher
(METHODS.md §4).

Each epoch, for each target student t in turn, one full-batch step updates t alone:
``L_t = task(z_t, y) + a · 1/(M−1) · Σ_{c≠t} Σ_{(l, l')∈P} LSP(H_t[l] ‖ H_c[l'])`` with the peers
frozen (evaluated without gradient), KL(peer ‖ learner), the laplacian kernel (σ = 100) and
node-mean reduction. Pairings: ``one_to_one`` {(l, l)}; ``alignahead``: learner layer k imitates
the peer's layer (k − 1) mod L. ``a = 0`` trains the students independently (the baseline).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import torch

from ..losses import LSPLoss
from .common import Tracker, run_loop, set_seed, task_loss
from .offline import ModelSpec, OptimConfig, Task

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
    """M students, the layer pairing, the weight ``a`` of the LSP term and the laplacian σ."""
    num_students: int = 2
    pairing: str = "alignahead"
    a: float = 1.0
    sigma: float = 100.0
    same_init: bool = False    # the seed code deep-copied one student into all; off by default


def train_alignahead(task: Task, spec: ModelSpec, optim: OptimConfig, cfg: AlignaheadConfig, *,
                     seed: int = 0, progress: bool = True, checkpoint: Optional[str] = None,
                     interrupt_after: Optional[int] = None) -> Dict:
    """Train ``cfg.num_students`` students of ``spec`` together (the module docstring gives the
    schedule and loss). Returns each student's best-validation metrics and history, their mean
    test metric, and timings; with ``checkpoint`` the run resumes where it stopped."""
    if cfg.num_students < 2:
        raise ValueError(f"Alignahead needs at least 2 students, got {cfg.num_students}")
    if cfg.a < 0:
        raise ValueError(f"Alignahead: the weight 'a' must be >= 0, got {cfg.a}")
    set_seed(seed)
    M = cfg.num_students
    first = spec.build(task.x.size(1), task.num_classes).to(task.x.device)
    students = [first] + [copy.deepcopy(first) if cfg.same_init else
                          spec.build(task.x.size(1), task.num_classes).to(task.x.device)
                          for _ in range(M - 1)]
    names = [f"student{i}" for i in range(M)]
    graph = task.graph_for(spec.arch)
    opts = {n: torch.optim.Adam(s.parameters(), lr=optim.lr, weight_decay=optim.weight_decay)
            for n, s in zip(names, students)}
    trackers = {n: Tracker(optim.patience) for n in names}
    lsp = LSPLoss("laplacian", "node_mean", sigma=cfg.sigma)
    pairs = None

    def train_epoch(epoch):
        nonlocal pairs
        losses = {}
        for t, learner in enumerate(students):
            peers_hidden = []
            if cfg.a > 0:
                with torch.no_grad():
                    for c, peer in enumerate(students):
                        if c != t:
                            peer.eval()
                            peers_hidden.append(peer(graph, task.x)[1])
            learner.train()
            opts[names[t]].zero_grad()
            logits, hidden = learner(graph, task.x)
            loss = task_loss(logits, task.y, task.split.train, task.multilabel)
            if cfg.a > 0:
                if pairs is None:
                    pairs = layer_pairs(len(hidden), cfg.pairing)
                kd = sum(lsp(task.graph, hidden[l], ph[lp]) for ph in peers_hidden for l, lp in pairs)
                loss = loss + cfg.a / (M - 1) * kd
            loss.backward()
            opts[names[t]].step()
            losses[names[t]] = loss.item()
        return losses

    def evaluate():
        out = {}
        with torch.no_grad():
            for n, s in zip(names, students):
                s.eval()
                out[n] = task.metrics(s(graph, task.x)[0])
        return out

    timing = run_loop(dict(zip(names, students)), opts, trackers, optim.epochs, train_epoch,
                      evaluate, checkpoint=checkpoint, interrupt_after=interrupt_after,
                      progress=progress, desc=f"{'independent' if cfg.a == 0 else cfg.pairing} x{M}")
    return {"students": {n: {"val": t.best_val, "test": t.best_test, "best_epoch": t.best_epoch,
                             "history": t.history} for n, t in trackers.items()},
            "mean_test": sum(t.best_test for t in trackers.values()) / M, **timing}
