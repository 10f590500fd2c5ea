"""The KD results table: every method on one dataset, the same seeds and the same teacher per
seed, written as one JSON (experiments/results/kd_<dataset>.json).

    python experiments/kd_table.py --dataset cora --runs 5
    python experiments/kd_table.py --dataset amazon-photo --data-dir ../shared/data --runs 3
    python experiments/kd_table.py --rerun experiments/results/kd_cora.json --out /tmp/kd_cora.json
    python experiments/kd_table.py --markdown experiments/results/kd_*.json

Protocol: the dataset family's (Shchur sets: largest connected component, 20 train / 30
validation nodes per class drawn per seed, the rest test); test metric at the best validation
epoch. Rows are method configs (ROWS). The settings shared by every row (data, optimiser,
teacher and student models, GSP/G-CRD node subsample) are options of `python -m gkd_ext
train` given after the known ones (e.g. `--lr 0.005 --dropout 0.6`); the table records them,
and `--rerun FILE` runs a committed table again with the settings it recorded.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import time
from typing import Any, Dict, List, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gkd_ext import functional  # noqa: E402
from gkd_ext.train import ModelSpec, make_method  # noqa: E402
from gkd_ext.train.cli import parse  # noqa: E402
from gkd_ext.train.common import summarize, versions, write_results  # noqa: E402
from gkd_ext.train.experiment import run_experiment  # noqa: E402
from gkd_ext.train.methods.alignahead import AlignaheadConfig  # noqa: E402
from gkd_ext.train.methods.offline import GCRDConfig, GSPConfig, LSPConfig  # noqa: E402

GAT_STUDENTS = ModelSpec("gat", hidden=16, layers=3, heads=4)

# (row name, method, config, model groups that differ from the table's teacher/student).
TEACHER_ROW = "GAT teacher (supervised)"
ROWS = [
    ("GCN student, supervised", "supervised", None, {}),
    ("GCN student, KD", "kd", None, {}),
    # LSP's β on Cora validation (3 seeds): 1 → 81.7, 10 → 81.0, 100 → 79.8 (the default).
    ("GCN student, LSP", "lsp", LSPConfig(beta=1.0), {}),
    # GSP's β on validation: Cora (3 seeds) 1 → 83.2, 10 → 82.7, 100 → 82.2 (the default);
    # Amazon-Photo (seed 0) 1 → 95.0, 10 → 92.5, and at 100 the test accuracy fell to 83.6.
    ("GCN student, GSP", "gsp", GSPConfig(beta=1.0), {}),
    ("GCN student, G-CRD", "gcrd", GCRDConfig(), {}),
    ("2 GAT students, independent", "alignahead", AlignaheadConfig(a=0.0), {"student": GAT_STUDENTS}),
    ("2 GAT students, one-to-one", "alignahead", AlignaheadConfig(pairing="one_to_one"),
     {"student": GAT_STUDENTS}),
    ("2 GAT students, Alignahead", "alignahead", AlignaheadConfig(pairing="alignahead"),
     {"student": GAT_STUDENTS}),
]
# The shared settings every table starts from; further train options override them.
BASE_ARGS = ["--teacher", "gat", "--teacher-layers", "3", "--teacher-heads", "4",
             "--teacher-hidden", "16", "--max-samples", "4096"]


def row_method(settings, name: str, config, models: Dict[str, ModelSpec]):
    """The method of a row under the table's shared settings (models, dropout, subsample)."""
    shared = settings["method"]
    if config is not None and hasattr(config, "max_samples"):
        config = dataclasses.replace(config, max_samples=shared.config.max_samples)
    groups = {g: models.get(g, shared.specs.get(g)) for g in ("teacher", "student")}
    if "student" in models:   # the row's own students take the table's dropout
        groups["student"] = dataclasses.replace(models["student"],
                                                dropout=shared.specs["student"].dropout)
    from gkd_ext.train import get_method
    wanted = get_method(name).models
    return make_method(name, config, **{g: s for g, s in groups.items() if g in wanted})


def table_settings(common: List[str]) -> Dict[str, Any]:
    # Parsed as the gcrd method's options, which cover every shared setting (teacher and
    # student models, the teacher's optimiser, the node subsample).
    method, data, optim, teacher_optim, ns = parse(["--method", "gcrd"] + common)
    return {"method": method, "data": data, "optim": optim, "teacher_optim": teacher_optim,
            "runs": ns.runs, "impl": ns.impl}


def row_summary(name: str, method, payload: Dict[str, Any], wall_s: float) -> Dict[str, Any]:
    runs = payload["runs"]
    per_seed = [{"seed": r["seed"], "val": r["result"]["val"], "test": r["result"]["test"],
                 "best_epoch": r["slots"][method.reported()[0]]["best_epoch"],
                 "epoch_time_ms": r["timings"]["epoch_time_ms"]} for r in runs]
    test = summarize([s["test"] for s in per_seed])
    return {"row": name, "method": method.name, "config": method.describe(),
            "test_mean": test["mean"], "test_std": test["std"], "seeds": test["n"],
            "epoch_ms_mean": summarize([s["epoch_time_ms"] for s in per_seed])["mean"],
            "per_seed": per_seed, "wall_s": wall_s, "git_commit": versions()["git_commit"],
            "optim": runs[0]["optim"], "task": runs[0]["task"]}


def teacher_summary(payload: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """The teachers' row, when this payload trained at least one of them (a teacher loaded from
    an earlier run of the table is scored all the same; its training time is not known here)."""
    teachers = [r["slots"]["teacher"] for r in payload["runs"] if "teacher" in r["slots"]]
    if not any(t.get("source") == "trained" for t in teachers):
        return None
    per_seed = [{"seed": r["seed"], "val": t["val"], "test": t["test"],
                 "best_epoch": t.get("best_epoch"), "source": t["source"],
                 "epoch_time_ms": t["timings"]["epoch_time_ms"] if "timings" in t else None}
                for r, t in zip(payload["runs"], teachers)]
    test = summarize([s["test"] for s in per_seed])
    times = [s["epoch_time_ms"] for s in per_seed if s["epoch_time_ms"] is not None]
    return {"row": TEACHER_ROW, "method": "supervised", "test_mean": test["mean"],
            "test_std": test["std"], "seeds": test["n"],
            "epoch_ms_mean": summarize(times)["mean"],
            "per_seed": per_seed, "wall_s": sum(t["timings"]["train_time_s"] for t in teachers
                                                if "timings" in t),
            "git_commit": versions()["git_commit"]}


def put_row(table: List[Dict[str, Any]], row: Dict[str, Any]) -> None:
    """Replace the row of the same name, or add it in ROWS order (the teacher first)."""
    order = [TEACHER_ROW] + [r[0] for r in ROWS]
    table[:] = [r for r in table if r["row"] != row["row"]] + [row]
    table.sort(key=lambda r: order.index(r["row"]))


def markdown(paths) -> str:
    """The committed tables side by side, one column per JSON file (accuracy, epoch time)."""
    tables = [json.load(open(path)) for path in paths]
    head = "| | " + " | ".join(f"{t['dataset']} ({t['impl']}, {t['table'][0]['seeds']} seeds)"
                                for t in tables) + " |"
    lines = [head, "|---" * (len(tables) + 1) + "|"]
    for name in dict.fromkeys(r["row"] for t in tables for r in t["table"]):
        cells = []
        for t in tables:
            r = next((r for r in t["table"] if r["row"] == name), None)
            cells.append("" if r is None else f"{r['test_mean'] * 100:.2f} ± {r['test_std'] * 100:.2f} "
                         f"({r['epoch_ms_mean']:.0f} ms/epoch, {r['wall_s']:.0f} s)")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    if sys.argv[1:2] == ["--markdown"]:
        print(markdown(sys.argv[2:]))
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rows", default=None, help="comma-separated row numbers (default all)")
    p.add_argument("--out", default=None, help="default experiments/results/kd_<dataset>.json")
    p.add_argument("--rerun", default=None, metavar="FILE",
                   help="run the table FILE records again, with its shared settings")
    p.add_argument("--update", action="store_true",
                   help="rerun --rows into the existing --out table (other rows kept, each "
                        "row records its commit) and reuse its teacher checkpoints")
    args, common = p.parse_known_args()
    if args.rerun:
        with open(args.rerun) as f:
            common = json.load(f)["common_args"] + common
        if "--features" not in common:   # tables written before the option: rows summed to 1
            common += ["--features", "sum"]
    else:
        common = BASE_ARGS + common
    # Teacher checkpoints live with the table run; the flags that say where are the table's.
    strip = {"--teacher-ckpt", "--out", "--checkpoint-dir"}
    common = [a for i, a in enumerate(common) if a not in strip and
              (i == 0 or common[i - 1] not in strip)]
    common = [a for a in common if a not in ("--no-progress", "--progress")]
    settings = table_settings(common)
    data = settings["data"]
    functional.set_impl(settings["impl"])
    rows = ROWS if args.rows is None else [ROWS[int(i)] for i in args.rows.split(",")]
    out = args.out or os.path.join("experiments", "results", f"kd_{data.dataset}.json")
    ckpt_dir = os.path.join("runs", "kd_table", f"{data.dataset}_{settings['impl']}")
    if not args.update:
        shutil.rmtree(ckpt_dir, ignore_errors=True)   # fresh teachers, trained by this table
    table: List[Dict[str, Any]] = []
    meta = versions()
    if args.update:
        with open(out) as f:
            earlier = json.load(f)
        table, meta = earlier["table"], earlier["versions"]
    for name, method_name, config, models in rows:
        method = row_method(settings, method_name, config, models)
        t0 = time.time()
        payload = run_experiment(
            method, data, settings["optim"], runs=settings["runs"],
            teacher_optim=settings["teacher_optim"],
            teacher_ckpt=os.path.join(ckpt_dir, "teacher_seed{seed}.pt"), progress=False,
            out=os.path.join(ckpt_dir, f"row{[r[0] for r in ROWS].index(name)}.json"))
        put_row(table, row_summary(name, method, payload, time.time() - t0))
        teachers = teacher_summary(payload)
        if teachers:
            put_row(table, teachers)
        write_results(out, {"dataset": data.dataset, "impl": settings["impl"],
                            "common_args": common, "table": table, "versions": meta})
    print(f"\n{data.dataset}: test metric (%) over {settings['runs']} seed(s), "
          f"impl={settings['impl']}")
    for r in table:
        print(f"  {r['row']:<30} {r['test_mean'] * 100:6.2f} ± {r['test_std'] * 100:4.2f}   "
              f"epoch {r['epoch_ms_mean']:7.1f} ms   ({r['wall_s']:.0f} s)")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
