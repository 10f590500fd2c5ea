"""SpMM microbenchmark: gkd_ext.spmm against what users would pick instead.

Baselines: ``torch.sparse`` CSR ``A @ x`` (MKL on CPU, cuSPARSE on CUDA) and torch_scatter
gather + scatter (materialises the E x D messages). Cases per workload and width D:
  fwd              forward only (edge values given, not trained)
  fwd+bwd          forward + backward; gkd_ext for x alone and for x and the edge values;
                   torch.sparse for x (its value gradient densifies N x N: reported as OOM)
Byte models (PERF.md), float32: 'compulsory' = 8·N·D + 8·nnz + 8·N (X read once, out written),
'no-reuse' = 4·nnz·D + 4·N·D + 8·nnz + 8·N (one X row gathered per edge). GB/s is printed as
compulsory/no-reuse, for the forward; for fwd+bwd the same bytes are counted three times.

    python bench/bench_spmm.py                       # CPU: arxiv, D = 128
    python bench/bench_spmm.py --workloads arxiv reddit products --dims 64 128 256 --json out.json
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

from common import (Bench, copy_bandwidth_gbs, graph_parser, graph_sizes,  # noqa: E402
                    try_import_torch_scatter)

import gkd_ext  # noqa: E402
from gkd_ext.data import workload_graph  # noqa: E402
from gkd_ext.reference import spmm_torch_sparse  # noqa: E402


def byte_models(n: int, nnz: int, d: int, elem: int = 4) -> dict:
    return {"compulsory": 2 * elem * n * d + 8 * nnz + 8 * n,
            "no-reuse": elem * nnz * d + elem * n * d + 8 * nnz + 8 * n}


def main() -> None:
    args = graph_parser(__doc__.split("\n")[0]).parse_args()
    dev, workloads, dims = graph_sizes(args)
    bench = Bench("spmm", args)
    bench.meta["copy_gbs"] = copy_bandwidth_gbs(dev)
    print(f"# copy bandwidth (clone, read+write): {bench.meta['copy_gbs']:.1f} GB/s")
    ts = try_import_torch_scatter()

    for wl in workloads:
        g = workload_graph(wl, scale=args.scale, device=dev)
        g.transpose()
        n, nnz = g.num_dst, g.num_edges
        row = g.row
        for d in dims:
            gen = torch.Generator(device=dev).manual_seed(0)
            x = torch.randn(n, d, device=dev, generator=gen)
            val = torch.rand(nnz, device=dev, generator=gen)
            tag = f"{wl}{'' if args.scale == 1 else f'@{args.scale}'} D={d}"
            bm = byte_models(n, nnz, d)
            ref = lambda: spmm_torch_sparse(g, x, val)  # noqa: E731

            case = f"{tag} fwd"
            bench.add(case, "gkd_ext", lambda: gkd_ext.spmm(g, x, val),
                      check=lambda: (gkd_ext.spmm(g, x, val), ref()), bytes=bm)
            bench.add(case, "torch.sparse", ref, baseline=True, bytes=bm)
            if ts is not None:
                bench.add(case, "torch_scatter", lambda: ts.scatter(x[g.col] * val[:, None], row, 0,
                                                                    dim_size=n, reduce="sum"),
                          baseline=True, bytes=bm)

            case = f"{tag} fwd+bwd"
            xg, vg = x.clone().requires_grad_(), val.clone().requires_grad_()
            go = torch.randn(n, d, device=dev, generator=gen)
            bm3 = {k: 3 * v for k, v in bm.items()}

            def gkd_x():
                xg.grad = None
                gkd_ext.spmm(g, xg, val).backward(go)
                return xg.grad

            def gkd_xv():
                xg.grad = vg.grad = None
                gkd_ext.spmm(g, xg, vg).backward(go)
                return xg.grad, vg.grad

            def sparse_x():
                xg.grad = None
                spmm_torch_sparse(g, xg, val).backward(go)
                return xg.grad

            def sparse_xv():
                xg.grad = vg.grad = None
                spmm_torch_sparse(g, xg, vg).backward(go)
                return xg.grad, vg.grad

            bench.add(case, "gkd_ext (x)", gkd_x, check=lambda: (gkd_x().clone(), sparse_x().clone()),
                      bytes=bm3)
            bench.add(case, "gkd_ext (x, values)", gkd_xv, bytes=bm3)
            bench.add(case, "torch.sparse (x)", sparse_x, baseline=True, bytes=bm3)
            bench.add(case, "torch.sparse (x, values)", sparse_xv, baseline=True, memory=False)
            if ts is not None:
                def scatter_xv():
                    xg.grad = vg.grad = None
                    out = ts.scatter(xg[g.col] * vg[:, None], row, 0, dim_size=n, reduce="sum")
                    out.backward(go)
                    return xg.grad, vg.grad
                bench.add(case, "torch_scatter (x, values)", scatter_xv, baseline=True, bytes=bm3)
            del x, val, xg, vg, go
        del g, row
    bench.finish()


if __name__ == "__main__":
    main()
