"""The graph mutual learning table (METHODS.md §5): each architecture trained alone, deep mutual
learning, GML and its two ablations, for a cohort of K = 2 (GCN + GAT) and K = 3 (GCN + GAT +
SAGE), on one dataset, the same seeds (experiments/results/gml_<dataset>.json).

    python experiments/gml_table.py --dataset cora --runs 5
    python experiments/gml_table.py --dataset amazon-photo --data-dir ../shared/data --runs 3
    python experiments/gml_table.py --dataset proteins --data-dir ../shared/data --graph
    python experiments/gml_table.py --dataset cora --mlp-students --runs 5
    python experiments/gml_table.py --markdown experiments/results/gml_cora.json

Every peer has the spec it has alone (GCN and SAGE 2 x 64, GAT 2 layers of 8 heads x 8), and
optimiser settings are the package defaults unless given after the known options (any
`python -m gkd_ext train` option of the data and optimiser groups). `--graph` runs the graph
classification rows (GIN alone and GIN in a cohort with a GCN); `--mlp-students` distils an MLP
from a GML cohort (its ensemble), from a single GNN teacher, and trains it alone.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any, Dict, List

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gkd_ext.train import ModelSpec, make_method  # noqa: E402
from gkd_ext.train.cli import parse  # noqa: E402
from gkd_ext.train.common import summarize, versions, write_results  # noqa: E402
from gkd_ext.train.experiment import run_experiment  # noqa: E402
from gkd_ext.train.methods.gml import GMLConfig  # noqa: E402

GCN = "gcn"
GAT = "gat:hidden=8:heads=8"
SAGE = "sage"
GIN = "gin:batch_norm=true"


def spec_of(peer: str) -> ModelSpec:
    from gkd_ext.train.methods.gml import peer_specs
    return peer_specs(peer, ModelSpec(hidden=64, layers=2))[0]


def cohort(peers: List[str], **config) -> GMLConfig:
    return GMLConfig(peers=",".join(peers), **config)


NODE_ROWS = [
    ("GCN alone", "supervised", None, spec_of(GCN)),
    ("GAT alone", "supervised", None, spec_of(GAT)),
    ("SAGE alone", "supervised", None, spec_of(SAGE)),
]
for k, peers in ((2, [GCN, GAT]), (3, [GCN, GAT, SAGE])):
    NODE_ROWS += [
        (f"K={k} deep mutual learning", "gml", cohort(peers, alw=False, lambda_ent=0.0), None),
        (f"K={k} GML", "gml", cohort(peers), None),
        (f"K={k} GML without ALW", "gml", cohort(peers, alw=False), None),
        (f"K={k} GML without entropy", "gml", cohort(peers, lambda_ent=0.0), None),
    ]
GRAPH_ROWS = [
    ("GIN alone", "supervised", None, spec_of(GIN)),
    ("GCN alone", "supervised", None, spec_of(GCN)),
    ("GIN + GCN, GML", "gml", cohort([GIN, GCN]), None),
    ("GIN + GCN, deep mutual learning", "gml", cohort([GIN, GCN], alw=False, lambda_ent=0.0), None),
]


def summarise_row(name: str, method, payload: Dict[str, Any], wall_s: float) -> Dict[str, Any]:
    runs = payload["runs"]
    slots = list(runs[0]["slots"])
    row = {"row": name, "method": method.name, "config": method.describe(), "wall_s": wall_s,
           "git_commit": versions()["git_commit"], "runs": len(runs),
           "epoch_ms_mean": summarize([r["timings"]["epoch_time_ms"] for r in runs])["mean"],
           "slots": {}}
    for n in slots:
        tests = [r["slots"][n]["test"] for r in runs]
        row["slots"][n] = {**summarize(tests), "per_run": tests}
    if runs[0].get("combined", {}).get("ensemble"):
        tests = [r["combined"]["ensemble"]["test"] for r in runs]
        row["ensemble"] = {**summarize(tests), "per_run": tests}
        at_best = [r["combined"]["ensemble"]["at_best"] for r in runs]
        weights = {k: summarize([a[k] for a in at_best])["mean"] for k in at_best[0]
                   if k.startswith("alw_weight_")}
        row["alw_at_best"] = {"weights": weights,
                              "t_min": min(a["t_min"] for a in at_best),
                              "t_max": max(a["t_max"] for a in at_best)}
    return row


def _cell(stats) -> str:
    return f"{stats['mean'] * 100:.2f} ± {stats['std'] * 100:.2f}"


def _by_arch(row: Dict[str, Any]) -> Dict[str, Any]:
    """A table row's per-slot results keyed by architecture (GML slots are "peer<k>_<arch>")."""
    if row["method"] == "gml":
        return {n.split("_", 1)[1]: v for n, v in row["slots"].items()}
    return {row["config"]["models"]["student"]["arch"]: row["slots"]["student"]}


def markdown(path: str) -> str:
    """One committed table as markdown: a column per architecture (a peer's, or the model's
    alone), the ensemble, the ALW weights and temperature range at the best epoch."""
    t = json.load(open(path))
    archs = list(dict.fromkeys(a for r in t["table"] for a in _by_arch(r)))
    lines = [f"{t['dataset']} ({t['table'][0]['runs']} runs)", "",
             "| | " + " | ".join(archs) + " | ensemble | ALW weights; T range | ms/epoch |",
             "|---" * (len(archs) + 4) + "|"]
    for r in t["table"]:
        by_arch = _by_arch(r)
        alw = r.get("alw_at_best")
        alw_text = "" if not alw else (", ".join(f"{w:.2f}" for w in alw["weights"].values())
                                       + f"; {alw['t_min']:.2f}–{alw['t_max']:.2f}")
        lines.append(f"| {r['row']} | " + " | ".join(_cell(by_arch[a]) if a in by_arch else ""
                                                      for a in archs)
                     + f" | {_cell(r['ensemble']) if 'ensemble' in r else ''} | {alw_text} | "
                     f"{r['epoch_ms_mean']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    if sys.argv[1:2] == ["--markdown"]:
        print("\n\n".join(markdown(path) for path in sys.argv[2:]))
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--graph", action="store_true", help="the graph classification rows")
    p.add_argument("--mlp-students", action="store_true",
                   help="MLP students: from a GML cohort, from one GNN teacher, alone")
    p.add_argument("--rows", default=None,
                   help="comma-separated row numbers (default all); they join the rows already in --out")
    p.add_argument("--reuse-cohort", action="store_true",
                   help="--mlp-students: load the GML cohorts an earlier run of this table saved "
                        "in runs/gml_table/<dataset> instead of training them again")
    p.add_argument("--out", default=None)
    args, common = p.parse_known_args()
    _, data, optim, _, ns = parse(common)
    kind = "graph" if args.graph else ("mlp" if args.mlp_students else "node")
    out = args.out or os.path.join("experiments", "results", f"gml_{data.dataset}"
                                   f"{'' if kind == 'node' else '_' + kind}.json")
    models_dir = os.path.join("runs", "gml_table", data.dataset)
    table: List[Dict[str, Any]] = []
    if kind == "mlp":
        rows = mlp_rows(data, optim, ns.runs, models_dir, args.reuse_cohort)
    else:
        rows = [(name, make_method(m, cfg, **({} if spec is None else {"student": spec})), {})
                for name, m, cfg, spec in (GRAPH_ROWS if kind == "graph" else NODE_ROWS)]
    order = [r[0] for r in rows]
    if args.rows is not None:
        rows = [rows[int(i)] for i in args.rows.split(",")]
    for name, method, extra in rows:
        t0 = time.time()
        payload = run_experiment(method, data, optim, runs=ns.runs, progress=False, **extra)
        table.append(summarise_row(name, method, payload, time.time() - t0))
        # With --rows, the rows join those already in the file (another process may be running
        # other rows of the same table), in the table's order.
        kept = [] if args.rows is None or not os.path.exists(out) else json.load(open(out))["table"]
        merged = {r["row"]: r for r in kept + table}
        write_results(out, {"dataset": data.dataset, "kind": kind, "common_args": common,
                            "table": sorted(merged.values(), key=lambda r: order.index(r["row"])),
                            "versions": versions()})
        print(json.dumps({k: v for k, v in table[-1].items() if k not in ("config",)},
                         default=str)[:600], flush=True)
    print(f"wrote {out}")


def mlp_rows(data, optim, runs, models_dir, reuse_cohort=False):
    """An MLP alone, from a GCN teacher, and from a GML cohort's saved ensemble: the cohort
    and the teacher are trained first (per seed) and saved, then loaded as teachers."""
    mlp = ModelSpec("mlp", hidden=64, layers=2)
    stem = os.path.join(models_dir, f"{data.dataset}_gml_seed{{seed}}")
    saved = [stem.format(seed=s) + part for s in range(runs) for part in ("_peer0_gcn.pt", "_ensemble.pt")]
    if reuse_cohort:
        missing = [p for p in saved if not os.path.exists(p)]
        if missing:
            raise SystemExit(f"--reuse-cohort: no saved cohort at {missing[0]}")
    else:
        cohort_method = make_method("gml", cohort([GCN, GAT, SAGE]))
        run_experiment(cohort_method, data, optim, runs=runs, progress=False, save_models=models_dir)
    return [
        ("MLP alone", make_method("supervised", student=mlp), {}),
        ("MLP from a GCN teacher (KD)", make_method("kd", teacher=spec_of(GCN), student=mlp), {}),
        ("MLP from the GCN peer of a GML cohort (KD)",
         make_method("kd", teacher=ModelSpec("saved"), student=mlp),
         {"teacher_ckpt": stem + "_peer0_gcn.pt"}),
        ("MLP from a GML cohort's ensemble (KD)",
         make_method("kd", teacher=ModelSpec("saved"), student=mlp),
         {"teacher_ckpt": stem + "_ensemble.pt"}),
    ]


if __name__ == "__main__":
    main()
