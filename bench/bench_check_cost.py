"""Cost of the CSR index checks (issue 11) on the SpMM and LSP ops: two builds of gkd_ext side
by side, "before" (a tree without the checks) and "after" (this one), on the arxiv workload
(synthetic, bench/PERF.md: N = 169,343, E = 2,330,000, D = 128), CPU, float32.

Two measurements, since these machines are shared and noisy:
  timing     paired wall-clock: worker processes of the two builds alternate (before, after,
             before, after, ...), each timing every op as the median of --repeat calls; the
             reported ratio is the median over rounds of after/before within a round.
  callgrind  instruction counts (valgrind --tool=callgrind, 1 thread): the inclusive Ir of each
             op's CPU entry function over --calls calls, from callgrind_annotate; independent of
             the machine's load.
The ops are called raw (torch.ops.gkd.*), so both builds run the same calls: spmm forward (sum,
edge values), spmm_backward (x and values, over the transpose), lsp forward (rbf) and
lsp_backward (h_s and h_t). The graph is generated once and saved, so workers (and callgrind)
only load it.

    python bench/bench_check_cost.py --before /tmp/gkd_before --rounds 5 --json out.json
    python bench/bench_check_cost.py --before /tmp/gkd_before --callgrind --json out.json
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OPS = ("spmm_fwd", "spmm_bwd", "lsp_fwd", "lsp_bwd")
# The op's CPU kernel function, whose inclusive instruction count callgrind reports.
ENTRY = {"spmm_fwd": "spmm_cpu", "spmm_bwd": "spmm_backward_cpu", "lsp_fwd": "lsp_cpu",
         "lsp_bwd": "lsp_backward_cpu"}

WORKER = r"""
import json, sys, time, statistics
root, data, repeat, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
sys.path.insert(0, root)
import torch
import gkd_ext  # noqa: F401  (loads this build's ops)
torch.set_num_threads(threads)
ops = torch.ops.gkd
d = torch.load(data)
rp, col, t = d["rowptr"], d["col"], (d["t_rowptr"], d["t_col"], d["t_perm"])
x, val, go, hs, ht = d["x"], d["val"], d["go"], d["hs"], d["ht"]
E = col.numel()
gkl = torch.full((rp.numel() - 1,), 1.0 / (rp.numel() - 1))
_, stats, logits = ops.lsp(rp, col, hs, ht, "rbf", 0.5)
empty = torch.empty(0, dtype=torch.long)
calls = {
    "spmm_fwd": lambda: ops.spmm(rp, col, val, x, "sum"),
    "spmm_bwd": lambda: ops.spmm_backward(rp, col, val, x, go, empty, "sum", *t, True, True),
    "lsp_fwd": lambda: ops.lsp(rp, col, hs, ht, "rbf", 0.5),
    "lsp_bwd": lambda: ops.lsp_backward(rp, col, hs, ht, stats, logits, gkl, "rbf", 0.5, *t,
                                        True, True),
}
out = {}
for name in sys.argv[5].split(","):
    fn = calls[name]
    fn()   # warm-up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    out[name] = statistics.median(times)
print("RESULT " + json.dumps(out))
"""


def make_data(path: str, scale: float, dim: int) -> dict:
    sys.path.insert(0, ROOT)
    import torch
    from gkd_ext.data import workload_graph
    g = workload_graph("arxiv", scale=scale)
    t_rowptr, t_col, t_perm = g.transpose()
    gen = torch.Generator().manual_seed(0)
    n = g.num_dst
    data = dict(rowptr=g.rowptr, col=g.col, t_rowptr=t_rowptr, t_col=t_col, t_perm=t_perm,
                x=torch.randn(n, dim, generator=gen), val=torch.rand(g.num_edges, generator=gen),
                go=torch.randn(n, dim, generator=gen),
                hs=torch.randn(n, dim, generator=gen) / dim ** 0.5,
                ht=torch.randn(n, dim, generator=gen) / dim ** 0.5)
    torch.save(data, path)
    return dict(nodes=n, edges=g.num_edges, dim=dim, scale=scale)


def run_worker(root: str, data: str, repeat: int, threads: int, ops, prefix=()) -> dict:
    cmd = list(prefix) + [sys.executable, "-c", WORKER, root, data, str(repeat), str(threads),
                          ",".join(ops)]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"worker for {root} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT "):])


def callgrind_counts(root: str, data: str, calls: int, out_dir: str, tag: str) -> dict:
    """Inclusive Ir of each op's entry function over `calls` timed calls (+1 warm-up)."""
    out_file = os.path.join(out_dir, f"callgrind.{tag}.out")
    prefix = ["valgrind", "--tool=callgrind", "--collect-atstart=no", f"--callgrind-out-file={out_file}"]
    prefix += [f"--toggle-collect=*{fn}(*" for fn in ENTRY.values()]
    run_worker(root, data, calls, 1, OPS, prefix)
    ann = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100", out_file],
                         capture_output=True, text=True, check=True).stdout
    counts = {}
    for op, fn in ENTRY.items():
        best = 0
        for line in ann.splitlines():
            m = re.match(r"\s*([\d,]+)\s.*\b" + fn + r"\(", line)
            if m:
                best = max(best, int(m.group(1).replace(",", "")))
        counts[op] = best
    return counts


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--before", required=True, help="root of the build without the checks")
    p.add_argument("--after", default=ROOT, help="root of the build with them (default: this tree)")
    p.add_argument("--rounds", type=int, default=5, help="before/after worker pairs (timing)")
    p.add_argument("--repeat", type=int, default=5, help="timed calls per op per worker")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--scale", type=float, default=1.0, help="shrink the arxiv graph (say so)")
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--callgrind", action="store_true", help="instruction counts instead of timing")
    p.add_argument("--calls", type=int, default=2, help="calls per op under callgrind")
    p.add_argument("--json", metavar="PATH")
    args = p.parse_args()

    tmp = tempfile.mkdtemp(prefix="gkd_check_cost_")
    data = os.path.join(tmp, "arxiv.pt")
    meta = make_data(data, args.scale, args.dim)
    meta.update(before=os.path.abspath(args.before), after=os.path.abspath(args.after),
                load_before=os.getloadavg(), started=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    for tree in ("before", "after"):
        rev = subprocess.run(["git", "-C", getattr(args, tree), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True)
        meta[f"{tree}_commit"] = rev.stdout.strip() or None   # of that tree (a copy has its own)
    result = {"bench": "check_cost", "meta": meta, "args": vars(args)}
    print(f"# check cost: arxiv{'' if args.scale == 1 else f'@{args.scale}'} N={meta['nodes']} "
          f"E={meta['edges']} D={args.dim}", flush=True)
    if args.callgrind:
        counts = {tree: callgrind_counts(getattr(args, tree), data, args.calls, tmp, tree)
                  for tree in ("before", "after")}
        result["callgrind_ir"] = counts
        result["ratio"] = {op: counts["after"][op] / counts["before"][op] for op in OPS
                           if counts["before"][op]}
        print(f"{'op':<10} {'Ir before':>16} {'Ir after':>16} {'after/before':>12}")
        for op in OPS:
            b, a = counts["before"][op], counts["after"][op]
            print(f"{op:<10} {b:>16,} {a:>16,} {a / b if b else float('nan'):>11.4f}x")
    else:
        rounds = []
        for r in range(args.rounds):
            pair = {}
            for tree in (("before", "after") if r % 2 == 0 else ("after", "before")):
                pair[tree] = run_worker(getattr(args, tree), data, args.repeat, args.threads, OPS)
            rounds.append(pair)
            print(f"round {r}: " + "  ".join(f"{op} {pair['before'][op]:.1f}/{pair['after'][op]:.1f} ms"
                                             for op in OPS), flush=True)
        result["rounds"] = rounds
        result["median_ms"] = {tree: {op: statistics.median(rd[tree][op] for rd in rounds) for op in OPS}
                               for tree in ("before", "after")}
        result["ratio"] = {op: statistics.median(rd["after"][op] / rd["before"][op] for rd in rounds)
                           for op in OPS}
        print(f"{'op':<10} {'before ms':>10} {'after ms':>10} {'after/before (median of rounds)':>32}")
        for op in OPS:
            print(f"{op:<10} {result['median_ms']['before'][op]:>10.2f} "
                  f"{result['median_ms']['after'][op]:>10.2f} {result['ratio'][op]:>31.3f}x")
    meta["load_after"] = os.getloadavg()
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
