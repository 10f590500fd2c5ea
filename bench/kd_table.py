"""The KD results table: every method of `python -m gkd_ext train` on one dataset, same seeds,
same teacher checkpoint per seed, written as one JSON (bench/results/kd_<dataset>.json).

    python bench/kd_table.py --dataset cora --runs 5
    python bench/kd_table.py --dataset amazon-photo --data-dir ../shared/data --runs 3
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gkd_ext.train.cli import build_parser, run  # noqa: E402
from gkd_ext.train.common import versions, write_results  # noqa: E402

# (row name, train CLI arguments)
ROWS = [
    ("GAT teacher (supervised)", ["--method", "supervised", "--student", "gat", "--student-layers", "3",
                                  "--student-heads", "4", "--student-hidden", "16"]),
    ("GCN student, supervised", ["--method", "supervised"]),
    ("GCN student, KD", ["--method", "kd"]),
    ("GCN student, LSP", ["--method", "lsp"]),
    ("GCN student, GSP", ["--method", "gsp"]),
    ("GCN student, G-CRD", ["--method", "gcrd"]),
    ("2 GAT students, independent", ["--method", "alignahead", "--a", "0", "--student", "gat",
                                     "--student-layers", "3", "--student-heads", "4", "--student-hidden", "16"]),
    ("2 GAT students, one-to-one", ["--method", "alignahead", "--pairing", "one_to_one", "--student", "gat",
                                    "--student-layers", "3", "--student-heads", "4", "--student-hidden", "16"]),
    ("2 GAT students, Alignahead", ["--method", "alignahead", "--pairing", "alignahead", "--student", "gat",
                                    "--student-layers", "3", "--student-heads", "4", "--student-hidden", "16"]),
]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="cora")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--epochs", type=int, default=300)
    p.add_argument("--impl", default="fused", choices=("fused", "reference"))
    p.add_argument("--out", default=None)
    args = p.parse_args()
    out = args.out or os.path.join("bench", "results", f"kd_{args.dataset}.json")
    ckpt = os.path.join("runs", f"teacher_{args.dataset}_seed{{seed}}.pt")
    common = ["--dataset", args.dataset, "--runs", str(args.runs), "--epochs", str(args.epochs),
              "--impl", args.impl, "--teacher", "gat", "--teacher-layers", "3", "--teacher-heads", "4",
              "--teacher-hidden", "16", "--teacher-ckpt", ckpt, "--no-progress"]
    if args.data_dir:
        common += ["--data-dir", args.data_dir]
    table = []
    for name, extra in ROWS:
        t0 = time.time()
        res = run(build_parser().parse_args(common + extra +
                                            ["--out", os.path.join("runs", f"{args.dataset}_{len(table)}.json")]))
        table.append({"row": name, "args": extra, "test_mean": res["test"]["mean"],
                      "test_std": res["test"]["std"], "seeds": res["test"]["n"],
                      "per_seed": res["per_seed"], "wall_s": time.time() - t0})
        write_results(out, {"dataset": args.dataset, "impl": args.impl, "table": table, "versions": versions()})
    print(f"\n{args.dataset}: test accuracy (%) over {args.runs} seed(s), impl={args.impl}")
    for r in table:
        print(f"  {r['row']:<30} {r['test_mean'] * 100:6.2f} ± {r['test_std'] * 100:4.2f}   ({r['wall_s']:.0f} s)")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
