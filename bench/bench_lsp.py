"""LSP loss microbenchmark: fused gkd_ext.lsp_loss against the unfused references.

Baselines (gkd_ext.reference): the PyG style of efficient-gnns (gather both endpoints, E x D
per model, kernel per edge, torch_scatter softmax / log-softmax when importable, else pure
torch; KL mean over edges) and the DGL style of the original LSP code (edge softmax, per-node
sum, mean over nodes). Cases per workload, width D (D_s = D_t = D) and kernel:
  fwd              loss only (no grad)
  fwd+bwd          loss and gradient for the student (the teacher is frozen: offline KD)
  fwd+bwd (s,t)    gradients for both (online / mutual KD)
Features are N(0, 1/D), so the rbf/laplacian logits are spread out, not all 0 or 1.
Byte model (PERF.md), no-reuse: per edge one gathered row of h_s and one of h_t,
4·E·(D_s + D_t) bytes (float32) per pass; forward = 1 pass, forward+backward = 3 passes
(forward, backward edge/row pass, backward transposed pass), indices not counted.
Peak memory is the call's peak extra memory (CPU: process RSS high-water mark above the
level before the call; CUDA: allocator peak).
Workloads named in --fused-only (products on the GPU: the references would need > 100 GB)
time the fused loss alone; its check there uses the edges into --check-nodes sampled
destinations (see sampled_check_graph).

    python bench/bench_lsp.py                                   # CPU: arxiv, D = 128, rbf
    python bench/bench_lsp.py --device cuda --workloads arxiv reddit products --dims 64 128 256
    python bench/bench_lsp.py --device cuda --workloads arxiv products --fused-only products
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from typing import Tuple  # noqa: E402

import torch  # noqa: E402

from common import Bench, copy_bandwidth_gbs, graph_parser, graph_sizes, relative  # noqa: E402

import gkd_ext  # noqa: E402
from gkd_ext import Graph  # noqa: E402
from gkd_ext.kernels import LSP_KERNELS  # noqa: E402
from gkd_ext.data import workload_graph  # noqa: E402
from gkd_ext.reference import lsp_reference_dgl, lsp_reference_pyg  # noqa: E402


def byte_model(nnz: int, d_s: int, d_t: int, passes: int, elem: int = 4) -> dict:
    return {"no-reuse": passes * elem * nnz * (d_s + d_t)}


def sampled_check_graph(g: Graph, num_nodes: int, seed: int = 0) -> Tuple[Graph, torch.Tensor]:
    """The edges into ``num_nodes`` random destinations (node ids kept) and those destinations.

    KL_i depends only on node i's incoming edges, so on this subgraph the unfused reference
    with reduction 'sum' equals the sum of the fused per-node KL over the sample, and its
    gradient equals the fused gradient of that sum: a check of the fused forward and backward
    at sizes where the reference cannot run on the whole graph (E x D gathers)."""
    n = g.num_dst
    gen = torch.Generator().manual_seed(seed)
    nodes = torch.randperm(n, generator=gen)[:min(num_nodes, n)].to(g.device)
    keep = torch.zeros(n, dtype=torch.bool, device=g.device)
    keep[nodes] = True
    mask = keep[g.row]
    return Graph.from_edge_index(g.edge_index[:, mask], n), nodes


def make_parser() -> argparse.ArgumentParser:
    p = graph_parser(__doc__.split("\n")[0], "feature widths D_s = D_t")
    p.add_argument("--kernels", nargs="+", default=["rbf"], choices=LSP_KERNELS,
                   help="LSP kernels (default: rbf)")
    p.add_argument("--no-dgl", action="store_true", help="skip the DGL-style reference")
    p.add_argument("--no-both", action="store_true", help="skip the student+teacher gradient case")
    p.add_argument("--fused-only", nargs="*", default=[], metavar="WORKLOAD",
                   help="workloads timed for the fused loss alone (the references' E x D gathers "
                        "do not fit): checked against the reference on the edges into "
                        "--check-nodes sampled destinations instead")
    p.add_argument("--check-nodes", type=int, default=20000,
                   help="sampled destinations of the --fused-only check")
    return p


def main() -> None:
    args = make_parser().parse_args()
    dev, workloads, dims = graph_sizes(args)
    bench = Bench("lsp", args)
    bench.meta["copy_gbs"] = copy_bandwidth_gbs(dev, args.copy_mb)
    print(f"# copy bandwidth (clone, read+write): {bench.meta['copy_gbs']:.1f} GB/s")

    for wl in workloads:
        g = workload_graph(wl, scale=args.scale, device=dev)
        g.transpose()
        _ = g.row
        n, nnz = g.num_dst, g.num_edges
        fused_only = wl in args.fused_only
        sub = nodes = None
        if fused_only:
            sub, nodes = sampled_check_graph(g, args.check_nodes)
            sub.transpose()
            print(f"# {wl}: fused only; checked on the {sub.num_edges:,} edges into "
                  f"{nodes.numel():,} sampled destinations", flush=True)
        for d in dims:
            gen = torch.Generator(device=dev).manual_seed(0)
            hs = torch.randn(n, d, device=dev, generator=gen) / d ** 0.5
            ht = torch.randn(n, d, device=dev, generator=gen) / d ** 0.5
            hs_g = hs.clone().requires_grad_()
            ht_g = ht.clone().requires_grad_()
            tag = f"{wl}{'' if args.scale == 1 else f'@{args.scale}'} D={d}"
            # Two E x D gathers per model in float32: what the unfused references would hold.
            too_big = f"not run at this size: its E x D gathers alone need {4 * nnz * d * 4 / 1e9:.3g} GB"
            for kernel in args.kernels:
                red = "edge_mean"  # the PyG reference's native reduction

                def fused(a=hs, b=ht, red=red, kernel=kernel):
                    with torch.no_grad():
                        return gkd_ext.lsp_loss(g, a, b, kernel, red)

                def pyg(a=hs, b=ht, red=red, kernel=kernel):
                    with torch.no_grad():
                        return lsp_reference_pyg(g, a, b, kernel, red)

                def dgl(a=hs, b=ht, kernel=kernel):
                    with torch.no_grad():
                        return lsp_reference_dgl(g, a, b, kernel, "node_mean")

                # Sampled check (fused-only workloads): the fused per-node KL summed over the
                # sampled destinations, and its gradients, against the reference on their edges.
                def fused_sample(a, b, kernel=kernel):
                    return gkd_ext.lsp_loss(g, a, b, kernel, "none")[nodes].sum()

                def ref_sample(a, b, kernel=kernel):
                    return lsp_reference_pyg(sub, a, b, kernel, "sum")

                def sample_check(wrt, a=hs_g, b=ht):
                    if not wrt:
                        with torch.no_grad():
                            return relative(fused_sample(hs, ht), ref_sample(hs, ht))
                    return relative(torch.autograd.grad(fused_sample(a, b), wrt),
                                    torch.autograd.grad(ref_sample(a, b), wrt))

                case = f"{tag} {kernel} fwd"
                bm = byte_model(nnz, d, d, 1)
                if fused_only:
                    bench.add(case, "gkd_ext fused", fused, check=lambda: sample_check(()), bytes=bm,
                              note="checked on sampled destinations")
                    bench.skip(case, "pyg-style reference", too_big, baseline=True)
                else:
                    ref_loss = pyg()
                    bench.add(case, "gkd_ext fused", fused, check=lambda: relative(fused(), ref_loss),
                              bytes=bm)
                    del ref_loss
                    bench.add(case, "pyg-style reference", pyg, baseline=True, bytes=bm)

                # torch.autograd.grad keeps nothing between calls (no .grad to free first), so
                # a call's peak includes the gradient it returns.
                def fused_bwd(kernel=kernel, red=red):
                    return torch.autograd.grad(gkd_ext.lsp_loss(g, hs_g, ht, kernel, red), hs_g)[0]

                def pyg_bwd(kernel=kernel, red=red):
                    return torch.autograd.grad(lsp_reference_pyg(g, hs_g, ht, kernel, red), hs_g)[0]

                def dgl_bwd(kernel=kernel):
                    return torch.autograd.grad(lsp_reference_dgl(g, hs_g, ht, kernel, "node_mean"), hs_g)[0]

                case = f"{tag} {kernel} fwd+bwd"
                bm3 = byte_model(nnz, d, d, 3)
                if fused_only:
                    bench.add(case, "gkd_ext fused", fused_bwd, check=lambda: sample_check((hs_g,)),
                              bytes=bm3, note="checked on sampled destinations")
                    bench.skip(case, "pyg-style reference", too_big, baseline=True)
                else:
                    ref_grad = pyg_bwd()
                    bench.add(case, "gkd_ext fused", fused_bwd,
                              check=lambda: relative(fused_bwd(), ref_grad), bytes=bm3)
                    del ref_grad
                    bench.add(case, "pyg-style reference", pyg_bwd, baseline=True, bytes=bm3)
                    if not args.no_dgl:
                        bench.add(case, "dgl-style reference", dgl_bwd, baseline=True, bytes=bm3)

                if not args.no_both:
                    def fused_both(kernel=kernel, red=red):
                        return torch.autograd.grad(gkd_ext.lsp_loss(g, hs_g, ht_g, kernel, red), (hs_g, ht_g))

                    def pyg_both(kernel=kernel, red=red):
                        return torch.autograd.grad(lsp_reference_pyg(g, hs_g, ht_g, kernel, red), (hs_g, ht_g))

                    case = f"{tag} {kernel} fwd+bwd (s,t)"
                    if fused_only:
                        bench.add(case, "gkd_ext fused", fused_both,
                                  check=lambda: sample_check((hs_g, ht_g), b=ht_g), bytes=bm3,
                                  note="checked on sampled destinations")
                        bench.skip(case, "pyg-style reference", too_big, baseline=True)
                    else:
                        ref_both = pyg_both()
                        bench.add(case, "gkd_ext fused", fused_both,
                                  check=lambda: relative(fused_both(), ref_both),
                                  bytes=bm3)
                        del ref_both
                        bench.add(case, "pyg-style reference", pyg_both, baseline=True, bytes=bm3)
            del hs, ht, hs_g, ht_g
        del g, sub, nodes
    rows = bench.finish()
    # Peak-memory ratio to each baseline of the same case (PERF.md target: <= 5%).
    print("\n## peak extra memory, fused / baseline")
    for r in rows:
        if r.baseline or r.status != "ok" or r.peak_mb is None:
            continue
        for b in rows:
            if b.case == r.case and b.baseline and b.status == "ok" and b.peak_mb:
                print(f"{r.case:<34} vs {b.impl:<22} {r.peak_mb:8.1f} / {b.peak_mb:8.1f} MB "
                      f"= {100 * r.peak_mb / b.peak_mb:5.2f}%")


if __name__ == "__main__":
    main()
