"""SpMM microbenchmark: gkd_ext.spmm against what users would pick instead.

Baselines: ``torch.sparse`` CSR ``A @ x`` (MKL on CPU, cuSPARSE on CUDA), PyG's own message
passing (a ``MessagePassing`` layer with sum aggregation: gather ``w_e x_j`` per edge, then
scatter; skipped, saying so, when torch_geometric is absent) and torch_scatter gather + scatter
(only where torch_scatter is installed). The last two materialise the E x D messages. Every
row is checked against torch.sparse (or gkd_ext's own gradients) before it is timed.
Cases per workload and width D:
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

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

from common import (Bench, copy_bandwidth_gbs, graph_parser, graph_sizes, try_import_pyg,  # noqa: E402
                    try_import_torch_scatter)

import gkd_ext  # noqa: E402
from gkd_ext.data import workload_graph  # noqa: E402
from gkd_ext.reference import spmm_torch_sparse  # noqa: E402


def byte_models(n: int, nnz: int, d: int, elem: int = 4) -> dict:
    return {"compulsory": 2 * elem * n * d + 8 * nnz + 8 * n,
            "no-reuse": elem * nnz * d + elem * n * d + 8 * nnz + 8 * n}


def value_grad_reference(g, grad_out: torch.Tensor, x: torch.Tensor, chunk: int = 1 << 22) -> torch.Tensor:
    """d(sum(grad_out * A x)) / d value[e] = <grad_out[dst_e], x[src_e]>, a chunk of edges at a
    time so the check never holds E x D (products at D = 256 would need 126 GB)."""
    out = torch.empty(g.num_edges, dtype=x.dtype, device=x.device)
    for s in range(0, g.num_edges, chunk):
        e = slice(s, min(s + chunk, g.num_edges))
        out[e] = (grad_out[g.row[e]] * x[g.col[e]]).sum(-1)
    return out


def pyg_weighted_sum(num_dst: int):
    """``out_i = sum_{e=(j->i)} w_e x_j`` as a PyG MessagePassing layer, or None without PyG."""
    if try_import_pyg() is None:
        return None
    from torch_geometric.nn import MessagePassing

    class WeightedSum(MessagePassing):
        def __init__(self):
            super().__init__(aggr="add")

        def forward(self, x, edge_index, w):
            return self.propagate(edge_index, x=x, w=w, size=(x.size(0), num_dst))

        def message(self, x_j, w):
            return w.view(-1, 1) * x_j

    return WeightedSum()


def make_parser() -> argparse.ArgumentParser:
    return graph_parser(__doc__.split("\n")[0])


def main() -> None:
    args = make_parser().parse_args()
    dev, workloads, dims = graph_sizes(args)
    ts, pyg = try_import_torch_scatter(), try_import_pyg()   # before Bench (see Bench.__init__)
    bench = Bench("spmm", args)
    bench.meta["copy_gbs"] = copy_bandwidth_gbs(dev, args.copy_mb)
    print(f"# copy bandwidth (clone, read+write): {bench.meta['copy_gbs']:.1f} GB/s")
    bench.meta["torch_geometric"] = getattr(pyg, "__version__", None)
    no_pyg = "torch_geometric is not installed (pip install torch-geometric)"

    for wl in workloads:
        g = workload_graph(wl, scale=args.scale, device=dev)
        g.transpose()
        n, nnz = g.num_dst, g.num_edges
        row = g.row
        mp = pyg_weighted_sum(n)
        edge_index = g.edge_index if mp is not None else None   # PyG order: (source, target)
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
                def scatter_fwd():
                    return ts.scatter(x[g.col] * val[:, None], row, 0, dim_size=n, reduce="sum")
                bench.add(case, "torch_scatter", scatter_fwd, check=lambda: (scatter_fwd(), ref()),
                          baseline=True, bytes=bm)
            if mp is not None:
                bench.add(case, "PyG MessagePassing", lambda: mp(x, edge_index, val),
                          check=lambda: (mp(x, edge_index, val), ref()), baseline=True, bytes=bm)
            else:
                bench.skip(case, "PyG MessagePassing", no_pyg, baseline=True)

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
            bench.add(case, "gkd_ext (x, values)", gkd_xv, bytes=bm3,
                      check=lambda: (tuple(t.clone() for t in gkd_xv()),
                                     (sparse_x().clone(), value_grad_reference(g, go, x))))
            bench.add(case, "torch.sparse (x)", sparse_x, baseline=True, bytes=bm3)
            bench.add(case, "torch.sparse (x, values)", sparse_xv, baseline=True, memory=False,
                      check=lambda: (tuple(t.clone() for t in sparse_xv()),
                                     tuple(t.clone() for t in gkd_xv())))
            if ts is not None:
                def scatter_xv():
                    xg.grad = vg.grad = None
                    out = ts.scatter(xg[g.col] * vg[:, None], row, 0, dim_size=n, reduce="sum")
                    out.backward(go)
                    return xg.grad, vg.grad
                bench.add(case, "torch_scatter (x, values)", scatter_xv, baseline=True, bytes=bm3,
                          check=lambda: (tuple(t.clone() for t in scatter_xv()),
                                         tuple(t.clone() for t in gkd_xv())))
            if mp is not None:
                def pyg_xv():
                    xg.grad = vg.grad = None
                    mp(xg, edge_index, vg).backward(go)
                    return xg.grad, vg.grad

                def pyg_check():
                    got = tuple(t.clone() for t in pyg_xv())
                    return got, tuple(t.clone() for t in gkd_xv())
                bench.add(case, "PyG MessagePassing (x, values)", pyg_xv, check=pyg_check,
                          baseline=True, bytes=bm3)
            else:
                bench.skip(case, "PyG MessagePassing (x, values)", no_pyg, baseline=True)
            del x, val, xg, vg, go
        del g, row, edge_index, mp
    bench.finish()


if __name__ == "__main__":
    main()
