"""Scale of frameless KD's preprocessing: the framelet operators, the students' graph knowledge
``M_e^k X`` (precomputed on N x F, and propagated on N x h after the encoder) and one SDRF
iteration, with time and peak memory, on Coauthor-CS and on a synthetic graph of ogbn-arxiv's
size and degree skew; and the memory the authors' dense N x N form would take.

    python bench/bench_framelet.py --threads 1 --json bench/results/cpu_framelet.json
    python bench/bench_framelet.py --cases arxiv --skip-precompute

Each row is one call (``once``): these are one-off preprocessing steps, measured as such. The
knowledge rows are checked against a second computation route (precomputed vs propagated
features through the same linear map) before they count.
"""
from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

from common import Bench, parser  # noqa: E402


def dense_bytes(n: int, bytes_per_value: int = 8) -> int:
    """One dense N x N matrix (the authors' code runs in float64)."""
    return n * n * bytes_per_value


def load(case: str, data_dir: str, features: int):
    from gkd_ext.data import load_dataset, node_features, undirected_graph, workload_graph
    if case == "coauthor-cs":
        ds = load_dataset("coauthor-cs", data_dir=data_dir)
        return ds.graph, node_features(ds.x)
    g = workload_graph("arxiv")
    ei = g.edge_index
    g = undirected_graph(ei[0], ei[1], g.num_dst)          # symmetrised, as ogbn-arxiv is used
    x = torch.rand(g.num_dst, features, generator=torch.Generator().manual_seed(0))
    return g, x


def main() -> None:
    p = parser(__doc__.split("\n")[0])
    p.add_argument("--cases", default="coauthor-cs,arxiv", help="coauthor-cs, arxiv (comma separated)")
    p.add_argument("--data-dir", default=os.environ.get("GKD_DATA", "../shared/data"))
    p.add_argument("--hidden", type=int, default=64, help="encoder width of the propagated route")
    p.add_argument("--powers", type=int, default=2, help="knowledge powers k = 1..K (student layers)")
    p.add_argument("--arxiv-features", type=int, default=128, help="feature width of the synthetic arxiv")
    p.add_argument("--skip-precompute", action="store_true", help="skip the N x F precomputation")
    p.add_argument("--sdrf-iterations", type=int, default=1)
    args = p.parse_args()
    bench = Bench("framelet", args)
    from gkd_ext.graph_surgery import sdrf
    from gkd_ext.nn import framelet_operators
    from gkd_ext.nn.functional import feature_linear
    K = args.powers
    for case in args.cases.split(","):
        graph, x = load(case, args.data_dir, args.arxiv_features)
        n, f = graph.num_dst, x.size(1)
        label = f"{case} N={n} E={graph.num_edges}"
        print(f"# {label} F={f}: one dense N x N float64 matrix = {dense_bytes(n) / 2**30:.1f} GiB; "
              f"the authors' knowledge holds 2(K+1) = {2 * (K + 1)} of them", flush=True)
        holder = {}

        def prep():
            holder["ops"] = framelet_operators(graph)
            return holder["ops"]
        bench.add(f"{label} operators", "lambda_max+setup", prep, once=True,
                  note=f"dense N x N: {dense_bytes(n) / 2**30:.1f} GiB each")
        ops = holder["ops"]
        E = ops.num_elements
        lin = torch.nn.Linear(f, E * args.hidden, bias=False)

        def propagated():
            with torch.no_grad():
                z = feature_linear(lin, x)
                outs = []
                for _ in range(K):
                    z = ops.propagate(z)
                    outs.append(z)
                return outs
        bench.add(f"{label} knowledge K={K} on N x {E}h", "propagate", propagated, once=True,
                  note=f"h={args.hidden}: {3 * K} framelet/SpMM passes")
        if not args.skip_precompute:
            need = E * K * n * f * 4
            print(f"#   precomputed knowledge E*K*N*F float32 = {need / 2**30:.2f} GiB", flush=True)

            def precomputed():
                ops._memo = {}
                return ops.knowledge(x, K)

            def verify(know):
                w = lin.weight.split(args.hidden, 0)
                got = torch.cat([know[e][K - 1] @ w[e].t() for e in range(E)], 1)
                return got, propagated()[-1]
            bench.add(f"{label} knowledge K={K} on N x F", "precompute", precomputed, once=True,
                      verify=verify, tol=1e-3, note=f"{need / 2**30:.2f} GiB of features")
            ops._memo = {}

        result = {}

        def rewire():
            t0 = time.perf_counter()
            result["res"] = sdrf(graph, args.sdrf_iterations, seed=0)
            result["s"] = time.perf_counter() - t0
            return result["res"]
        row = bench.add(f"{label} SDRF x{args.sdrf_iterations}", "sparse", rewire, once=True)
        if "res" in result:
            t = result["res"].timings
            row.note = (f"setup (triangles of all edges) {t['setup_s']:.2f} s, iterations "
                        f"{t['iterations_s']:.2f} s; added {result['res'].added}, removed "
                        f"{result['res'].removed}")
            print(f"#   {row.note}", flush=True)
        del graph, x, ops, holder
    bench.finish()


if __name__ == "__main__":
    main()
