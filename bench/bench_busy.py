"""Training steps on a busy machine: how much slower a step gets when another process keeps one
core busy, for gkd_ext and for the same models in PyG.

The script starts its own busy process: one Python process spinning in a loop, pinned with
``os.sched_setaffinity`` to one core (the last core this process may run on). It is paused
(SIGSTOP) for the idle measurements and resumed (SIGCONT) for the busy ones, and idle and busy
rounds alternate, so slow drifts of the machine's load hit both alike. Cases, on the bundled
Cora (2,708 nodes, 10,556 directed edges, 1,433 bag-of-words features with row sums 1, held
as a sparse CSR tensor as gkd_ext's trainers hold them, or dense with --features dense):
  gat        3-layer GAT, 8 heads x 8 hidden, 1 output head, ELU; cross-entropy over the
             training nodes (20 per class)
  gcn+lsp    2-layer GCN (64 hidden) + LSP(rbf, edge_mean) between its hidden layer and a
             frozen teacher GCN's, computed once (offline KD)
One step = zero_grad, forward in train mode, loss, backward, Adam step (bench_train.py's step).
Impls: gkd_ext and PyG (GATConv / GCNConv(cached=True), the unfused PyG-style LSP), each with
2 threads and with 1 thread (``torch.set_num_threads``). Before timing, each PyG model gets
the gkd_ext model's weights and their eval-mode logits (or loss) must agree.

Reported per (case, impl, threads): the median step time idle and busy, busy / idle, and
busy / (idle at 1 thread), the PERF.md target (<= 2x: a busy core may cost a step at most
twice its single-threaded time). The load average before and after is recorded, since a
machine shared with other work cannot give clean numbers; rerun on a quiet machine to judge.

    python bench/bench_busy.py
    python bench/bench_busy.py --rounds 5 --steps 20 --json busy.json
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

from common import metadata, relative, try_import_pyg  # noqa: E402
from bench_train import copy_weights, eval_check, lsp_kd, make_step, pyg_model  # noqa: E402

from gkd_ext.data import bundled_cora  # noqa: E402
from gkd_ext.data.shchur import per_class_split  # noqa: E402
from gkd_ext.nn import build_model  # noqa: E402

CASES = ("gat", "gcn+lsp")
GAT_LAYERS, GAT_HIDDEN, GAT_HEADS, GCN_HIDDEN, BETA = 3, 8, 8, 64, 1.0

SPIN = ("import os, sys\n"
        "os.sched_setaffinity(0, {int(sys.argv[1])})\n"
        "x = 0\n"
        "while True:\n"
        "    x += 1\n")


class BusyCore:
    """A spinning process pinned to one core, paused (SIGSTOP) or running (SIGCONT)."""

    def __init__(self, core: int):
        self.core = core
        self.proc = subprocess.Popen([sys.executable, "-c", SPIN, str(core)])
        self.pause()

    def pause(self) -> None:
        os.kill(self.proc.pid, signal.SIGSTOP)
        time.sleep(0.05)

    def resume(self) -> None:
        os.kill(self.proc.pid, signal.SIGCONT)
        time.sleep(0.05)   # let the scheduler see a runnable spinner before timing

    def close(self) -> None:
        try:
            os.kill(self.proc.pid, signal.SIGCONT)
            self.proc.terminate()
            self.proc.wait(timeout=5)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            self.proc.kill()


def build_steps(case: str, data, x, y, train_idx, teacher_h, with_pyg: bool):
    """{impl: step} for one case, the PyG model checked against gkd_ext's in eval mode."""
    graph = data.graph
    classes, feats = int(y.max()) + 1, x.size(1)
    if case == "gat":
        model = build_model("gat", feats, GAT_HIDDEN, classes, num_layers=GAT_LAYERS,
                            heads=GAT_HEADS)
    else:
        model = build_model("gcn", feats, GCN_HIDDEN, classes)
    inputs = model.prepare(graph)
    kd_ours, kd_pyg = lsp_kd(graph, teacher_h) if case == "gcn+lsp" else (None, None)
    step, loss_ours = make_step(model.parameters(), lambda: model(inputs, x), y, train_idx, kd_ours)
    steps = {"gkd_ext": step}
    if with_pyg:
        theirs = pyg_model("gat" if case == "gat" else "gcn", model, feats)
        copy_weights(model, theirs)
        edge_index = inputs.edge_index if case == "gat" else graph.edge_index
        step_pyg, loss_pyg = make_step(theirs.parameters(), lambda: theirs(edge_index, x), y,
                                       train_idx, kd_pyg)
        if case == "gcn+lsp":
            out, ref = eval_check((model, theirs), lambda: relative(loss_ours(), loss_pyg()))
        else:
            out, ref = eval_check((model, theirs), lambda: relative(model(inputs, x)[0],
                                                                    theirs(edge_index, x)[0]))
        err = float((out - ref).abs().max())
        if err > 1e-4:
            raise RuntimeError(f"bench_busy: {case}: gkd_ext and PyG disagree (relative error {err:.3g})")
        steps["PyG"] = step_pyg
    return steps


def time_steps(step, n: int) -> list:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        step()
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    p.add_argument("--threads", nargs="+", type=int, default=[2, 1],
                   help="thread counts to measure (default: 2 1)")
    p.add_argument("--rounds", type=int, default=3,
                   help="idle/busy round pairs per configuration (alternating)")
    p.add_argument("--steps", type=int, default=10, help="timed steps per round")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per round")
    p.add_argument("--features", choices=("csr", "dense"), default="csr",
                   help="input features as sparse CSR (the trainers' default) or dense")
    p.add_argument("--no-pyg", action="store_true", help="gkd_ext only")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    return p


def main() -> None:
    args = make_parser().parse_args()
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        sys.exit("bench_busy: needs at least 2 cores (one is kept busy)")
    pyg = None if args.no_pyg else try_import_pyg()
    torch.manual_seed(0)
    data = bundled_cora()
    x = data.x.to_dense() if data.x.layout != torch.strided else data.x
    x = x / x.sum(1, keepdim=True).clamp_min(1)
    if args.features == "csr":
        x = x.to_sparse_csr()
    y = data.y
    train_idx = per_class_split(y, 20, 30, seed=0)[0].nonzero().view(-1)
    data.graph.transpose()
    teacher_h = None
    if "gcn+lsp" in args.cases:
        teacher = build_model("gcn", x.size(1), GCN_HIDDEN, int(y.max()) + 1).eval()
        with torch.no_grad():
            teacher_h = teacher(teacher.prepare(data.graph), x)[1][0]
    meta = metadata(torch.device("cpu"))
    meta.update(load_before=os.getloadavg(), cores=cores, busy_core=cores[-1],
                torch_geometric=getattr(pyg, "__version__", None),
                omp_wait_policy=os.environ.get("OMP_WAIT_POLICY"),
                graph="cora (bundled)", features=args.features, nodes=data.graph.num_dst, edges=data.graph.num_edges)
    print(f"# bench_busy on {meta['device_name']} | torch {torch.__version__} | commit "
          f"{meta['commit']} | busy core {cores[-1]} | load average {meta['load_before']}",
          flush=True)
    if pyg is None and not args.no_pyg:
        print("# PyG rows skipped: torch_geometric is not installed", flush=True)

    busy = BusyCore(cores[-1])
    rows = []
    try:
        for case in args.cases:
            torch.manual_seed(0)
            steps = build_steps(case, data, x, y, train_idx, teacher_h, pyg is not None)
            for impl, step in steps.items():
                for threads in args.threads:
                    torch.set_num_threads(threads)
                    idle, loaded = [], []
                    for _ in range(args.rounds):
                        for state, sink in (("idle", idle), ("busy", loaded)):
                            busy.resume() if state == "busy" else busy.pause()
                            time_steps(step, args.warmup)
                            sink.extend(time_steps(step, args.steps))
                    busy.pause()
                    row = {"case": case, "impl": impl, "threads": threads,
                           "idle_ms": statistics.median(idle), "busy_ms": statistics.median(loaded),
                           "idle_all": idle, "busy_all": loaded}
                    row["busy_over_idle"] = row["busy_ms"] / row["idle_ms"]
                    rows.append(row)
                    print(f"  {case:<8} {impl:<8} {threads} thr: idle {row['idle_ms']:8.2f} ms  "
                          f"busy {row['busy_ms']:8.2f} ms  busy/idle {row['busy_over_idle']:6.2f}x",
                          flush=True)
    finally:
        busy.close()
        torch.set_num_threads(max(args.threads))
    meta["load_after"] = os.getloadavg()
    for row in rows:
        one = next((r for r in rows if r["case"] == row["case"] and r["impl"] == row["impl"]
                    and r["threads"] == 1), None)
        row["busy_over_idle_1thread"] = row["busy_ms"] / one["idle_ms"] if one else None

    print("\n## busy = one core kept busy by another process; target: busy (any threads) "
          "<= 2x idle at 1 thread")
    print(f"{'case':<8} {'impl':<8} {'thr':>3} {'idle ms':>9} {'busy ms':>9} {'busy/idle':>9} "
          f"{'busy/idle(1thr)':>15}")
    for r in rows:
        b1 = r["busy_over_idle_1thread"]
        print(f"{r['case']:<8} {r['impl']:<8} {r['threads']:>3} {r['idle_ms']:9.2f} "
              f"{r['busy_ms']:9.2f} {r['busy_over_idle']:8.2f}x "
              f"{(f'{b1:14.2f}x' if b1 is not None else '-'):>15}")
    print(f"load average before {meta['load_before']}, after {meta['load_after']}")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump({"bench": "busy", "meta": meta, "args": vars(args), "rows": rows}, f,
                      indent=1, default=str)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
