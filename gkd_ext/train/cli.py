"""`python -m gkd_ext train`: the command line, generated from the registered configs.

`python -m gkd_ext train --method NAME --help` lists NAME's own options (its config
dataclass), one option group per model group of the method (``--teacher``, ``--student-hidden``,
...), the optimiser, the data and the output options, each with its default.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from typing import Dict, List, Optional

from .. import functional
from .config import ModelSpec, OptimConfig, add_options, from_options
from .experiment import TUNE_GRID, run_experiment
from .method import Role, get_method, method_names
from .tasks import DataConfig


def _method_from_argv(argv: List[str]) -> str:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--method", default="supervised")
    known, _ = pre.parse_known_args(argv)
    return known.method


def build_parser(method_name: str = "supervised") -> argparse.ArgumentParser:
    """The parser for ``method_name``: common options plus that method's own."""
    names = method_names()
    cls = get_method(method_name) if method_name in names else None
    p = argparse.ArgumentParser(
        prog="python -m gkd_ext train",
        description="Train with a knowledge-distillation method over seeds (and folds, for "
                    "graph classification) and write one results JSON. Methods: " +
                    "; ".join(f"{n}: {get_method(n).summary}" for n in names) +
                    ". `--method NAME --help` lists NAME's options.")
    g = p.add_argument_group("what to run")
    g.add_argument("--method", choices=names, default="supervised", help="the method")
    g.add_argument("--runs", type=_positive_int, default=1,
                   help="seeds 0..runs-1; mean ± std reported (1)")
    g.add_argument("--impl", choices=functional.IMPLS, default="fused",
                   help="fused gkd_ext ops, or the unfused pure-PyTorch references (fused)")
    g.add_argument("--distributed", action="store_true",
                   help="data-parallel training, one process per rank, started by torchrun "
                        "(gloo on CPUs, NCCL with --device cuda: one GPU per process); with "
                        "--fanouts each global batch of --batch-nodes seeds is split over the "
                        "ranks. Rank 0 writes the results and checkpoints")
    g.add_argument("--tune", action="store_true",
                   help="per run, pick lr x weight decay on validation from "
                        f"{TUNE_GRID} (the record lists every setting tried)")
    add_options(p, DataConfig, title="data")
    if cls is None:
        return p
    for group, spec in cls.models.items():
        add_options(p, ModelSpec, prefix=f"{group}-", defaults=spec,
                    title=f"model '{group}' ({cls.roles[group].value})")
    p.add_argument("--dropout", type=_unit_float, default=None,
                   help="set the dropout of every model at once")
    add_options(p, OptimConfig, title="optimisation of the trained models")
    if any(r is Role.TEACHER for r in cls.roles.values()):
        t = p.add_argument_group("teachers (frozen; trained first unless loaded)")
        add_options(t, OptimConfig, prefix="teacher-",
                    defaults=OptimConfig(**{f.name: None for f in dataclasses.fields(OptimConfig)}))
        t.add_argument("--teacher-ckpt", default=None,
                       help="teacher checkpoint path ({seed} and {run} are replaced): loaded "
                            "if it exists, else the trained teacher is saved there; with "
                            "--teacher saved, the architecture it records is used")
    add_options(p, cls.Config, title=f"method '{cls.name}'")
    r = p.add_argument_group("output")
    r.add_argument("--out", default=None,
                   help="results JSON path (default runs/<dataset>_<method>.json)")
    r.add_argument("--checkpoint-dir", default=None,
                   help="write a resumable checkpoint per run here; rerunning resumes, and a "
                        "finished run returns its recorded result")
    r.add_argument("--save-models", default=None, metavar="DIR",
                   help="save every trained model (and an ensemble method's cohort) here, each "
                        "loadable as a teacher: --teacher saved --teacher-ckpt FILE")
    r.add_argument("--plot", action="store_true", help="also save training curves (PNG)")
    r.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                   help="progress bars")
    return p


def _positive_int(text: str) -> int:
    v = int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def _unit_float(text: str) -> float:
    v = float(text)
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1], got {v}")
    return v


def parse(argv: Optional[List[str]] = None):
    """Parse ``argv`` into ``(method, data, optim, teacher_optim, namespace)``."""
    argv = sys.argv[1:] if argv is None else list(argv)
    ns = build_parser(_method_from_argv(argv)).parse_args(argv)
    cls = get_method(ns.method)
    specs: Dict[str, ModelSpec] = {}
    for group in cls.models:
        spec = from_options(ModelSpec, ns, prefix=f"{group}-")
        if ns.dropout is not None:
            spec = dataclasses.replace(spec, dropout=ns.dropout)
        specs[group] = spec
    method = cls(from_options(cls.Config, ns), **specs)
    optim = from_options(OptimConfig, ns)
    teacher_optim = None
    if any(r is Role.TEACHER for r in cls.roles.values()):
        given = {f.name: getattr(ns, f"teacher_{f.name}") for f in dataclasses.fields(OptimConfig)}
        teacher_optim = dataclasses.replace(optim, **{k: v for k, v in given.items() if v is not None})
    return method, from_options(DataConfig, ns), optim, teacher_optim, ns


def run(argv: Optional[List[str]] = None) -> Dict:
    method, data, optim, teacher_optim, ns = parse(argv)
    functional.set_impl(ns.impl)
    if ns.distributed:
        from .. import distributed
        data = dataclasses.replace(data, device=distributed.init_from_env(data.device))
    out = ns.out or os.path.join("runs", f"{data.dataset}_{method.name}.json")
    payload = run_experiment(method, data, optim, runs=ns.runs, teacher_optim=teacher_optim,
                             teacher_ckpt=getattr(ns, "teacher_ckpt", None),
                             checkpoint_dir=ns.checkpoint_dir, out=out, tune=ns.tune,
                             progress=ns.progress, save_models=ns.save_models)
    if ns.plot:
        from .common import plot_curves
        curves = {f"seed{r['seed']}{r['run']} {n}": s["history"] for r in payload["runs"]
                  for n, s in r["slots"].items() if "history" in s}
        plot_curves(os.path.splitext(out)[0] + ".png", curves)
    return payload


def main(argv=None) -> None:
    try:
        run(argv)
    except (ValueError, FileNotFoundError, TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2)
