"""The main job (`make demo`), all on the bundled Cora with the Shchur et al. protocol
(20 train / 30 validation nodes per class, the rest test):
1. a GCN built on gkd_ext.spmm over five seeds;
2. distillation: Alignahead with two GAT students against the same students trained
   independently, and offline G-CRD from a GAT teacher into a GCN against the GCN alone;
3. a short SpMM timing table against torch.sparse."""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from . import spmm
from .data import bundled_cora, node_features, per_class_split, workload_graph
from .nn.gcn import gcn_graph
from .reference import spmm_torch_sparse
from .train import ModelSpec, NodeTask, OptimConfig, Split, fit, make_method, obtain_teacher
from .train.methods.alignahead import AlignaheadConfig


def cora_task(seed: int) -> NodeTask:
    """The bundled Cora (all 2,708 nodes) with a seeded 20/30-per-class split."""
    data = bundled_cora()
    return NodeTask(node_features(data.x, "sum"), data.y, data.graph,
                    Split(*per_class_split(data.y, seed=seed)), name="cora")


def run_gcn(seeds, epochs: int, progress: bool = True):
    method = make_method("supervised", student=ModelSpec("gcn", hidden=64, layers=2, dropout=0.8))
    optim = OptimConfig(epochs=epochs, lr=0.01, weight_decay=5e-4, patience=100)
    accs = []
    for seed in seeds:
        rec = fit(method, cora_task(seed), optim, seed=seed, progress=progress,
                  desc=f"GCN cora seed {seed}").record
        accs.append(rec["result"]["test"])
    return bundled_cora(), accs


def run_kd(seeds, epochs: int, progress: bool = True):
    """Each KD method next to the same student trained alone; test accuracy per seed."""
    optim = OptimConfig(epochs=epochs, lr=0.005, weight_decay=5e-4, patience=50)
    gat = ModelSpec("gat", 16, 3, 4, 0.6)
    teacher_spec = ModelSpec("gat", 16, 2, 8, 0.6)
    gcn = ModelSpec("gcn", 64, 2, 1, 0.5)
    rows = {k: [] for k in ("GAT students, independent", "GAT students, Alignahead",
                            "GAT teacher", "GCN alone", "GCN, G-CRD from GAT")}

    def test_of(method, task, seed, **kw):
        return fit(method, task, optim, seed=seed, progress=progress, **kw).record["result"]["test"]
    for seed in seeds:
        task = cora_task(seed)
        rows["GAT students, independent"].append(test_of(
            make_method("alignahead", AlignaheadConfig(2, a=0.0), student=gat), task, seed))
        rows["GAT students, Alignahead"].append(test_of(
            make_method("alignahead", AlignaheadConfig(2, "alignahead"), student=gat), task, seed))
        teacher = obtain_teacher(teacher_spec, task, optim, seed=seed, progress=progress)
        rows["GAT teacher"].append(teacher.record["test"])
        rows["GCN alone"].append(test_of(make_method("supervised", student=gcn), task, seed))
        rows["GCN, G-CRD from GAT"].append(test_of(
            make_method("gcrd", teacher=teacher_spec, student=gcn), task, seed,
            teachers={"teacher": teacher.models["model"]}))
    print(f"\nDistillation on Cora, test accuracy (%), {len(list(seeds))} seed(s); "
          "students: mean of the two")
    for name, accs in rows.items():
        mean = statistics.mean(accs) * 100
        spread = f" ± {statistics.stdev(accs) * 100:4.2f}" if len(accs) > 1 else ""
        print(f"  {name:<28} {mean:6.2f}{spread}")
    return rows


def _median_ms(fn, repeat=5):
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def spmm_table(graphs):
    rows = []
    for name, g in graphs:
        g.transpose()
        for d in (64, 128):
            x = torch.randn(g.num_src, d)
            v = torch.rand(g.num_edges)
            xg = x.clone().requires_grad_()
            ours = _median_ms(lambda: spmm(g, x, v))
            theirs = _median_ms(lambda: spmm_torch_sparse(g, x, v))
            ours_b = _median_ms(lambda: spmm(g, xg, v).sum().backward())
            theirs_b = _median_ms(lambda: spmm_torch_sparse(g, xg, v).sum().backward())
            rows.append((name, g.num_dst, g.num_edges, d, ours, theirs, ours_b, theirs_b))
    print(f"\nSpMM timing, CPU ({torch.get_num_threads()} threads), median of 5, float32, ms")
    print(f"{'graph':<12} {'nodes':>8} {'edges':>9} {'D':>4} | {'gkd fwd':>8} {'torch fwd':>9} "
          f"{'ratio':>6} | {'gkd f+b':>8} {'torch f+b':>9} {'ratio':>6}")
    for name, n, e, d, a, b, c, dd in rows:
        print(f"{name:<12} {n:>8} {e:>9} {d:>4} | {a:>8.2f} {b:>9.2f} {a / b:>6.2f} | "
              f"{c:>8.2f} {dd:>9.2f} {c / dd:>6.2f}")
    print("ratio = gkd_ext time / torch.sparse time (CSR @ x, MKL); < 1 is faster")


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m gkd_ext demo", description=__doc__)
    p.add_argument("--seeds", type=int, default=5, help="number of seeds (0..N-1)")
    p.add_argument("--epochs", type=int, default=300)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--kd-seeds", type=int, default=1, help="seeds of the distillation table (0 skips it)")
    p.add_argument("--kd-epochs", type=int, default=200)
    p.add_argument("--no-timing", action="store_true", help="skip the SpMM timing table")
    args = p.parse_args(argv)
    data, accs = run_gcn(range(args.seeds), args.epochs, progress=not args.no_progress)
    mean = statistics.mean(accs)
    std = statistics.stdev(accs) if len(accs) > 1 else 0.0
    print(f"\nGCN on Cora ({data.num_nodes} nodes, {data.graph.num_edges} edges), "
          f"20/30 per class, {len(accs)} seeds")
    print("test accuracy per seed: " + ", ".join(f"{a * 100:.1f}" for a in accs))
    print(f"test accuracy: {mean * 100:.2f} ± {std * 100:.2f} %")
    if args.kd_seeds > 0:
        run_kd(range(args.kd_seeds), args.kd_epochs, progress=not args.no_progress)
    if not args.no_timing:
        spmm_table([("cora+loops", gcn_graph(data.graph)),
                    ("arxiv-like/4", workload_graph("arxiv", scale=0.25))])
    return mean


if __name__ == "__main__":
    main()
