"""What the training code shares: seeds, checkpoint files, versions, results files."""
from __future__ import annotations

import datetime
import json
import os
import platform
import random
import subprocess
from typing import Any, Dict, List, Optional

import numpy as np
import torch

PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch (every source of randomness the trainers use)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# ------------------------------------------------------------------ checkpoints
def save_checkpoint(path: str, state: Dict[str, Any]) -> None:
    """Write atomically (temp file + rename), so an interruption never leaves half a file."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"  # two writers of one file never share a temp file
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str, keys: tuple = ()) -> Dict[str, Any]:
    """Load tensors and plain containers only (weights_only=True): no code runs from the file.
    A file that is not such a dict holding ``keys`` (truncated, another format, or one that
    asks to run code) is a ValueError naming it."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"no checkpoint at {path!r}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:   # torch raises several types for unreadable or unsafe files
        raise ValueError(f"checkpoint {path!r} cannot be read ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else 'no detail'}); it is "
                         "damaged, not a gkd_ext checkpoint, or holds code (which is never run); "
                         "delete it to start afresh") from None
    missing = [k for k in keys if not isinstance(state, dict) or k not in state]
    if missing:
        raise ValueError(f"checkpoint {path!r} is not a gkd_ext checkpoint of this kind: it lacks "
                         f"{missing}; delete it to start afresh")
    return state


def rng_state() -> Dict[str, Any]:
    """torch's generators (CPU, and every CUDA device when there is one)."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(s: Dict[str, Any]) -> None:
    torch.set_rng_state(s["torch"])
    if "cuda" in s and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


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
    """Write JSON atomically (temp file + rename): a reader never sees half a file."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"  # two writers of one file never share a temp file
    with open(tmp, "w") as f:
        json.dump(payload, f, indent=1, default=str)
    os.replace(tmp, path)


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
