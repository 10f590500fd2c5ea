"""What a GML cohort's epoch costs against training its peers one by one (METHODS.md §5):
the K = 3 cohort (GCN + GAT + SAGE, the table's specs) and each peer alone, on the same task,
for a fixed number of epochs each (no early stop), rounds alternating so that drifts of the
machine's load hit every case alike. An epoch is the training step and the evaluation of every
model (what `fit` times). Writes experiments/results/gml_epoch_time_<dataset>.json.

    python experiments/gml_epoch_time.py --dataset amazon-photo --data-dir ../shared/data
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from gkd_ext.train import DataConfig, OptimConfig, make_method  # noqa: E402
from gkd_ext.train.common import versions, write_results  # noqa: E402
from gkd_ext.train.fit import fit  # noqa: E402
from gkd_ext.train.tasks import build_tasks  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gml_table import GAT, GCN, SAGE, cohort, spec_of  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="amazon-photo")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--out", default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    [(_, task)] = build_tasks(DataConfig(args.dataset, data_dir=args.data_dir), seed=0)
    optim = dataclasses.replace(OptimConfig(), epochs=args.epochs, patience=args.epochs + 1)
    cases = {"K=3 GML cohort": make_method("gml", cohort([GCN, GAT, SAGE]))}
    cases.update({f"{peer.split(':')[0].upper()} alone": make_method("supervised",
                                                                    student=spec_of(peer))
                  for peer in (GCN, GAT, SAGE)})
    times = {name: [] for name in cases}
    for r in range(args.rounds):
        for name, method in cases.items():
            got = fit(method, task, optim, seed=0, progress=False)
            times[name].append(got.record["timings"]["epoch_time_ms"])
            print(f"round {r} {name:<16} {times[name][-1]:8.1f} ms/epoch", flush=True)
    median = {name: statistics.median(t) for name, t in times.items()}
    alone = sum(v for k, v in median.items() if k.endswith("alone"))
    result = {"dataset": args.dataset, "threads": args.threads, "epochs": args.epochs,
              "rounds": args.rounds, "ms_per_epoch": times, "median_ms": median,
              "three_alone_ms": alone, "cohort_over_three_alone": median["K=3 GML cohort"] / alone,
              "versions": versions()}
    out = args.out or os.path.join("experiments", "results",
                                   f"gml_epoch_time_{args.dataset}.json")
    write_results(out, result)
    print(f"cohort {median['K=3 GML cohort']:.1f} ms/epoch, the three alone {alone:.1f} "
          f"(ratio {result['cohort_over_three_alone']:.2f}); wrote {out}")


if __name__ == "__main__":
    main()
