"""What every trainer shares: seeds, metrics, early stopping, checkpoints, results files."""
from __future__ import annotations

import datetime
import json
import os
import platform
import random
import subprocess
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import numpy as np
import torch

PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch (every source of randomness the trainers use)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# ------------------------------------------------------------------ metrics
def accuracy(logits: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> float:
    """Fraction of ``mask`` nodes whose argmax logit is the label (NaN for an empty mask)."""
    if int(mask.sum()) == 0:
        return float("nan")
    return float((logits[mask].argmax(-1) == y[mask]).float().mean())


def micro_f1(logits: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> float:
    """Micro-averaged F1 of multi-label predictions, thresholding sigmoid(logits) at 0.5."""
    pred = (torch.sigmoid(logits[mask]) > 0.5)
    true = y[mask] > 0.5
    tp = (pred & true).sum().item()
    fp = (pred & ~true).sum().item()
    fn = (~pred & true).sum().item()
    return 2 * tp / max(2 * tp + fp + fn, 1)


def task_loss(logits: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, multilabel: bool) -> torch.Tensor:
    """Cross-entropy over the ``mask`` nodes, or BCE with logits for multi-label tasks."""
    if multilabel:
        return torch.nn.functional.binary_cross_entropy_with_logits(logits[mask], y[mask].float())
    return torch.nn.functional.cross_entropy(logits[mask], y[mask])


def metric(logits, y, mask, multilabel: bool) -> float:
    """Accuracy, or micro-F1 for multi-label tasks."""
    return micro_f1(logits, y, mask) if multilabel else accuracy(logits, y, mask)


# ------------------------------------------------------------------ early stopping and history
@dataclass
class Tracker:
    """Per-epoch history and the test metric at the best validation epoch."""
    patience: int
    best_val: float = -float("inf")
    best_test: float = float("nan")
    best_epoch: int = -1
    history: List[Dict[str, float]] = field(default_factory=list)

    def update(self, epoch: int, **values: float) -> bool:
        """Record an epoch; returns True when training should stop."""
        self.history.append({"epoch": epoch, **values})
        if values["val"] > self.best_val:
            self.best_val, self.best_test, self.best_epoch = values["val"], values["test"], epoch
        return epoch - self.best_epoch >= self.patience

    def state(self) -> Dict[str, Any]:
        return {"patience": self.patience, "best_val": self.best_val, "best_test": self.best_test,
                "best_epoch": self.best_epoch, "history": self.history}

    @classmethod
    def from_state(cls, s: Dict[str, Any]) -> "Tracker":
        return cls(**s)


# ------------------------------------------------------------------ checkpoints
def save_checkpoint(path: str, state: Dict[str, Any]) -> None:
    """Write atomically (temp file + rename), so an interruption never leaves half a file."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str) -> Dict[str, Any]:
    """Load tensors and plain containers only (weights_only=True): no code runs from the file."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"no checkpoint at {path!r}")
    return torch.load(path, map_location="cpu", weights_only=True)


def rng_state() -> Dict[str, Any]:
    return {"torch": torch.get_rng_state()}


def set_rng_state(s: Dict[str, Any]) -> None:
    torch.set_rng_state(s["torch"])


class Interrupted(Exception):
    """Raised by a trainer told to stop after some epochs (tests of checkpoint/resume)."""


# ------------------------------------------------------------------ results
def git_commit() -> str:
    """The checkout's short commit, with "+dirty" when tracked files differ from it."""
    try:
        def git(*args):
            return subprocess.run(["git", "-C", PACKAGE_ROOT, *args], capture_output=True,
                                  text=True, timeout=10).stdout.strip()
        commit = git("rev-parse", "--short", "HEAD")
        if not commit:
            return "unknown"
        return commit + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def versions() -> Dict[str, str]:
    from .. import __version__
    return {"gkd_ext": __version__, "torch": torch.__version__, "python": platform.python_version(),
            "numpy": np.__version__, "git_commit": git_commit(),
            "date": datetime.datetime.now().isoformat(timespec="seconds")}


def summarize(values: List[float]) -> Dict[str, float]:
    arr = np.asarray(values, dtype=float)
    return {"mean": float(arr.mean()), "std": float(arr.std(ddof=1)) if arr.size > 1 else 0.0,
            "n": int(arr.size)}


def write_results(path: str, payload: Dict[str, Any]) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(payload, f, indent=1, default=str)


def plot_curves(path: str, curves: Dict[str, List[Dict[str, float]]], key: str = "val") -> Optional[str]:
    """A PNG of ``key`` per epoch for each named history; None when matplotlib is missing."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, hist in curves.items():
        ax.plot([h["epoch"] for h in hist], [h[key] for h in hist], label=name, lw=1)
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"{key} metric")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# ------------------------------------------------------------------ the training loop
def run_loop(modules: Dict[str, torch.nn.Module], optimizers: Dict[str, torch.optim.Optimizer],
             trackers: Dict[str, Tracker], epochs: int, train_epoch, evaluate, *,
             checkpoint: Optional[str] = None, interrupt_after: Optional[int] = None,
             progress: bool = True, desc: Optional[str] = None) -> Dict[str, Any]:
    """Run ``train_epoch(epoch) -> {name: loss}`` and ``evaluate() -> {tracker: {train, val,
    test}}`` until ``epochs`` or until every tracker has stopped improving for its patience.

    With ``checkpoint`` the full state (modules, optimizers, trackers, the best weights, the RNG)
    is written after every epoch and, if the file exists, training resumes from it: an
    interrupted run continued this way ends exactly as an uninterrupted one. The weights of each
    tracker's best validation epoch are loaded into its module at the end (trackers and modules
    share names). Returns timings.
    """
    import copy
    import time

    from tqdm.auto import tqdm

    start, best_states, train_time = 0, {}, 0.0
    if checkpoint and os.path.exists(checkpoint):
        state = load_checkpoint(checkpoint)
        if sorted(state["modules"]) != sorted(modules):
            raise ValueError(f"checkpoint {checkpoint!r} holds models {sorted(state['modules'])}, "
                             f"this run trains {sorted(modules)}")
        for k, m in modules.items():
            m.load_state_dict(state["modules"][k])
        for k, o in optimizers.items():
            o.load_state_dict(state["optimizers"][k])
        for k in trackers:
            trackers[k] = Tracker.from_state(state["trackers"][k])
        best_states = state["best"]
        set_rng_state(state["rng"])
        start, train_time = state["epoch"] + 1, state["train_time"]
    bar = tqdm(range(start, epochs), desc=desc, disable=not progress, dynamic_ncols=True,
               initial=start, total=epochs)
    epoch = start - 1
    for epoch in bar:
        if interrupt_after is not None and epoch >= interrupt_after:
            raise Interrupted(f"stopped before epoch {epoch}")
        t0 = time.perf_counter()
        losses = train_epoch(epoch)
        train_time += time.perf_counter() - t0
        results = evaluate()
        stop = True
        for name, vals in results.items():
            improved_before = trackers[name].best_epoch
            stop &= trackers[name].update(epoch, **vals, **{f"loss_{k}": v for k, v in losses.items()})
            if trackers[name].best_epoch != improved_before and name in modules:
                best_states[name] = copy.deepcopy(modules[name].state_dict())
        bar.set_postfix({k: f"{t.best_test:.3f}" for k, t in trackers.items()}, refresh=False)
        if checkpoint:
            save_checkpoint(checkpoint, {
                "epoch": epoch, "train_time": train_time, "rng": rng_state(), "best": best_states,
                "modules": {k: m.state_dict() for k, m in modules.items()},
                "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
                "trackers": {k: t.state() for k, t in trackers.items()}})
        if stop:
            break
    for name, st in best_states.items():
        modules[name].load_state_dict(st)
    done = max(epoch + 1, 1)
    return {"epochs": done, "train_time_s": train_time, "epoch_time_ms": 1e3 * train_time / done}
