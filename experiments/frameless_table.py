"""The frameless graph KD table (METHODS.md §6): on each dataset, in the transductive and the
inductive protocol, without and with SDRF rewiring, an MLP alone, a GCN, the SpatUFG teacher,
an MLP distilled from it with the same loss (GLNN), and the FMLP-O and FMLP-S students, the
same seeds and the same teacher per seed within a cell. One JSON per dataset
(experiments/results/frameless_<dataset>.json).

    python experiments/frameless_table.py --datasets cora --runs 5
    python experiments/frameless_table.py --data-dir ../shared/data --runs 5      # all eight
    python experiments/frameless_table.py --datasets cora --epochs 2 --teacher-epochs 2  # smoke
    python experiments/frameless_table.py --markdown experiments/results/frameless_*.json
    python experiments/frameless_table.py --datasets cora --runs 5 --resume   # the missing cells

Datasets (default): homophilic cora, citeseer, amazon-photo, coauthor-cs (Shchur protocol: the
largest connected component, 20 train / 30 validation nodes per class drawn per seed, the
rest test) and heterophilic chameleon-filtered, squirrel-filtered, texas, cornell (their given
splits: seed s uses split s mod 10). Protocols: transductive (as the paper), and inductive as
in GLNN (``--inductive-fraction`` 0.2 of the test nodes and their edges held out of training,
teachers included, and scored at inference: the ``test`` column is those held-out nodes).
SDRF: ``--sdrf-iterations`` (100 by default for every dataset; the SDRF paper tuned it per
dataset), applied once per run before training, teacher and students alike.

Shared settings are `python -m gkd_ext train --method frameless` options given after the known
ones (e.g. `--lambda 0.3 --filters linear --teacher-hidden 32 --lr 0.005`); the table records
them. The student rows use the --student-hidden/--student-layers/--dropout sizes.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import time
from typing import Any, Dict, List

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gkd_ext import functional  # noqa: E402
from gkd_ext.data.registry import HETEROPHILOUS  # noqa: E402
from gkd_ext.train import ModelSpec, make_method  # noqa: E402
from gkd_ext.train.cli import parse  # noqa: E402
from gkd_ext.train.common import summarize, versions, write_results  # noqa: E402
from gkd_ext.train.experiment import run_experiment  # noqa: E402

DATASETS = ("cora", "citeseer", "amazon-photo", "coauthor-cs", "chameleon-filtered",
            "squirrel-filtered", "texas", "cornell")
TEACHER_ROW = "SpatUFG teacher"
# (row, method, student architecture): supervised rows train the model alone, frameless rows
# distil the table's teacher into it with lambda*NLL + (1-lambda)*KL.
ROWS = [
    ("MLP", "supervised", "mlp"),
    ("GCN", "supervised", "gcn"),
    ("MLP + logit KD (GLNN)", "frameless", "mlp"),
    ("FMLP-O", "frameless", "fmlp-o"),
    ("FMLP-S", "frameless", "fmlp-s"),
]
ORDER = [ROWS[0][0], ROWS[1][0], TEACHER_ROW] + [r[0] for r in ROWS[2:]]


def row_method(settings: Dict[str, Any], method: str, arch: str):
    shared = settings["method"]
    s = shared.specs["student"]
    student = ModelSpec(arch, hidden=s.hidden, layers=s.layers, dropout=s.dropout)
    if method == "supervised":
        return make_method("supervised", student=student)
    return make_method("frameless", dataclasses.replace(shared.config),
                       teacher=dataclasses.replace(shared.specs["teacher"], options={}),
                       student=student)


def cell_summary(name: str, payload: Dict[str, Any], slot: str, wall_s: float) -> Dict[str, Any]:
    per_seed = []
    for r in payload["runs"]:
        s = r["slots"][slot]
        at = s.get("at_best", {})
        per_seed.append({"seed": r["seed"], "val": s["val"], "test": s["test"],
                         "test_observed": at.get("test_observed"), "best_epoch": s.get("best_epoch"),
                         "sdrf": r["task"].get("transforms", {}).get("sdrf")})
    test = summarize([p["test"] for p in per_seed])
    out = {"row": name, "test_mean": test["mean"], "test_std": test["std"], "seeds": test["n"],
           "per_seed": per_seed, "wall_s": wall_s, "git_commit": versions()["git_commit"]}
    observed = [p["test_observed"] for p in per_seed if p["test_observed"] is not None]
    if observed:
        out["test_observed_mean"] = summarize(observed)["mean"]
    return out


def run_cell(settings, dataset: str, inductive: bool, sdrf_iterations: int, runs: int,
             fraction: float, ckpt_dir: str) -> List[Dict[str, Any]]:
    data = dataclasses.replace(settings["data"], dataset=dataset,
                               inductive=fraction if inductive else 0.0,
                               sdrf_iterations=sdrf_iterations)
    rows: Dict[str, Dict[str, Any]] = {}
    for name, method_name, arch in ROWS:
        method = row_method(settings, method_name, arch)
        payloads, t0 = [], time.time()
        for seed in range(runs):
            seed_data = data
            if dataset in HETEROPHILOUS:       # their given splits, one per seed
                seed_data = dataclasses.replace(data, split=seed % 10)
            payloads.append(run_experiment(
                method, seed_data, settings["optim"], seeds=[seed],
                teacher_optim=settings["teacher_optim"],
                teacher_ckpt=os.path.join(ckpt_dir, "teacher_seed{seed}.pt"), progress=False,
                log=lambda *a, **k: None))
        merged = dict(payloads[0], runs=[r for p in payloads for r in p["runs"]])
        rows[name] = cell_summary(name, merged, method.reported()[0], time.time() - t0)
        if method_name == "frameless" and TEACHER_ROW not in rows:
            rows[TEACHER_ROW] = cell_summary(TEACHER_ROW, merged, "teacher", 0.0)
        print(f"  {name:<24} {rows[name]['test_mean'] * 100:6.2f} ± "
              f"{rows[name]['test_std'] * 100:4.2f}  ({rows[name]['wall_s']:.0f} s)", flush=True)
    return [rows[n] for n in ORDER if n in rows]


def complete_cells(path: str, common: List[str], args) -> Dict[str, Dict[str, Any]]:
    """The cells of an earlier run of this table that hold every row over all seeds, by name;
    an earlier run with other settings is an error, not something to mix into one table."""
    if not os.path.exists(path):
        return {}
    t = json.load(open(path))
    theirs = (t["common_args"], t["runs"], t["inductive_fraction"])
    if theirs != (common, args.runs, args.inductive_fraction):
        raise SystemExit(f"--resume: {path} was run with (common args, runs, inductive fraction) "
                         f"{theirs}, not {(common, args.runs, args.inductive_fraction)}")
    return {c["cell"]: c for c in t["cells"]
            if [r["row"] for r in c["rows"]] == ORDER
            and all(r["seeds"] == args.runs for r in c["rows"])}


def with_kept(cells: List[Dict[str, Any]], done: Dict[str, Dict[str, Any]]) -> List[Dict[str, Any]]:
    """``cells`` plus the kept complete cells this run did not ask for (a resumed run never
    drops finished work), in table order: transductive first, then by SDRF iterations."""
    names = {c["cell"] for c in cells}
    merged = cells + [c for name, c in done.items() if name not in names]
    return sorted(merged, key=lambda c: (c["protocol"] != "transductive", c["sdrf_iterations"]))


def markdown(paths) -> str:
    """One table per file: rows x (protocol, SDRF) cells, test accuracy mean ± std."""
    out = []
    tables = [json.load(open(path)) for path in paths]
    for t in tables:
        cells = t["cells"]
        out.append(f"### {t['dataset']} ({cells[0]['rows'][0]['seeds']} seeds)\n")
        out.append("| | " + " | ".join(c["cell"] for c in cells) + " |")
        out.append("|---" * (len(cells) + 1) + "|")
        for name in ORDER:
            vals = []
            for c in cells:
                r = next((r for r in c["rows"] if r["row"] == name), None)
                vals.append("" if r is None else f"{r['test_mean'] * 100:.2f} ± {r['test_std'] * 100:.2f}")
            out.append(f"| {name} | " + " | ".join(vals) + " |")
        out.append("")
    out.extend(summary(tables))
    return "\n".join(out)


STUDENTS = [r[0] for r in ROWS[2:]]


def summary(tables: List[Dict[str, Any]]) -> List[str]:
    """Per dataset and protocol (without SDRF): each student against the teacher (points) and
    the share of the MLP-to-teacher gap it closes, (student - MLP) / (teacher - MLP); no share
    where the teacher is not better than the MLP alone (the gap is not there to close)."""
    out = []
    for protocol in ("transductive", "inductive"):
        lines = []
        for t in tables:
            cell = next((c for c in t["cells"] if c["cell"] == protocol), None)
            if cell is None:
                continue
            acc = {r["row"]: r["test_mean"] * 100 for r in cell["rows"]}
            std = {r["row"]: r["test_std"] * 100 for r in cell["rows"]}
            n = cell["rows"][0]["seeds"]
            mlp, teacher = acc["MLP"], acc[TEACHER_ROW]
            vals = [f"{mlp:.1f}", f"{teacher:.1f}"]
            for name in STUDENTS:
                closed = (f", {(acc[name] - mlp) / (teacher - mlp) * 100:.0f}%"
                          if teacher - mlp > 1.0 else "")
                diff = acc[name] - teacher
                se = max(((std[name] ** 2 + std[TEACHER_ROW] ** 2) / n) ** 0.5, 1e-9)
                vals.append(f"{diff:+.1f} ({abs(diff) / se:.1f} SE){closed}")
            lines.append(f"| {t['dataset']} | " + " | ".join(vals) + " |")
        if lines:
            out.append(f"### {protocol}, without SDRF: students against the teacher\n")
            out.append("| | MLP | teacher | " + " | ".join(STUDENTS) + " |")
            out.append("|---" * (len(STUDENTS) + 3) + "|")
            out.extend(lines + [""])
    if out:
        out.append("Student cells: accuracy minus the teacher's (points), in standard errors of "
                   "that difference (sqrt((s_student^2 + s_teacher^2) / seeds)), then the share "
                   "of the MLP-to-teacher gap closed, (student - MLP) / (teacher - MLP), where "
                   "the teacher beats the MLP by more than a point.\n")
    return out


def main() -> None:
    if sys.argv[1:2] == ["--markdown"]:
        print(markdown(sys.argv[2:]))
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datasets", default=",".join(DATASETS))
    p.add_argument("--protocols", default="transductive,inductive")
    p.add_argument("--sdrf-iterations", type=int, default=100,
                   help="SDRF iterations of the rewired cells (0: no rewired cells)")
    p.add_argument("--inductive-fraction", type=float, default=0.2)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--out-dir", default=os.path.join("experiments", "results"))
    p.add_argument("--resume", action="store_true",
                   help="keep the complete cells of an existing results file run with the same "
                        "settings and run only the missing ones")
    args, common = p.parse_known_args()
    common = [a for a in common if a not in ("--no-progress", "--progress")]
    settings = {}
    method, data, optim, teacher_optim, ns = parse(["--method", "frameless"] + common)
    settings.update(method=method, data=data, optim=optim, teacher_optim=teacher_optim)
    functional.set_impl(ns.impl)
    sdrf_values = [0] + ([args.sdrf_iterations] if args.sdrf_iterations > 0 else [])
    for dataset in args.datasets.split(","):
        cells, meta = [], versions()
        out = os.path.join(args.out_dir, f"frameless_{dataset}.json")
        done = complete_cells(out, common, args) if args.resume else {}
        for protocol in args.protocols.split(","):
            if protocol not in ("transductive", "inductive"):
                raise SystemExit(f"unknown protocol {protocol!r}")
            for iters in sdrf_values:
                cell = f"{protocol}{f', SDRF {iters}' if iters else ''}"
                if cell in done:
                    print(f"{dataset}: {cell} (kept from {out})", flush=True)
                    cells.append(done[cell])
                    continue
                print(f"{dataset}: {cell}", flush=True)
                ckpt_dir = os.path.join("runs", "frameless_table", dataset,
                                        f"{protocol}_sdrf{iters}")
                shutil.rmtree(ckpt_dir, ignore_errors=True)   # fresh teachers per table run
                rows = run_cell(settings, dataset, protocol == "inductive", iters, args.runs,
                                args.inductive_fraction, ckpt_dir)
                cells.append({"cell": cell, "protocol": protocol, "sdrf_iterations": iters,
                              "rows": rows})
                write_results(out, {"dataset": dataset, "common_args": common,
                                    "runs": args.runs, "inductive_fraction": args.inductive_fraction,
                                    "cells": with_kept(cells, done), "versions": meta})
        print(f"wrote {out}")
        print(markdown([out]))


if __name__ == "__main__":
    main()
