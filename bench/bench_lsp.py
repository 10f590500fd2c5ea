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

    python bench/bench_lsp.py                                   # CPU: arxiv, D = 128, rbf
    python bench/bench_lsp.py --device cuda --workloads arxiv reddit products --dims 64 128 256
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

from common import Bench, copy_bandwidth_gbs, graph_parser, graph_sizes  # noqa: E402

import gkd_ext  # noqa: E402
from gkd_ext.kernels import LSP_KERNELS  # noqa: E402
from gkd_ext.data import workload_graph  # noqa: E402
from gkd_ext.reference import lsp_reference_dgl, lsp_reference_pyg  # noqa: E402


def byte_model(nnz: int, d_s: int, d_t: int, passes: int, elem: int = 4) -> dict:
    return {"no-reuse": passes * elem * nnz * (d_s + d_t)}


def relative(out, ref):
    """(out, ref) scaled by max|ref|, so the harness's absolute tolerance becomes relative."""
    if isinstance(ref, (tuple, list)):
        pairs = [relative(o, r) for o, r in zip(out, ref)]
        return tuple(p[0] for p in pairs), tuple(p[1] for p in pairs)
    scale = float(ref.detach().abs().max()) or 1.0
    return out.detach() / scale, ref.detach() / scale


def main() -> None:
    p = graph_parser(__doc__.split("\n")[0], "feature widths D_s = D_t")
    p.add_argument("--kernels", nargs="+", default=["rbf"], choices=LSP_KERNELS,
                   help="LSP kernels (default: rbf)")
    p.add_argument("--no-dgl", action="store_true", help="skip the DGL-style reference")
    p.add_argument("--no-both", action="store_true", help="skip the student+teacher gradient case")
    args = p.parse_args()
    dev, workloads, dims = graph_sizes(args)
    bench = Bench("lsp", args)
    bench.meta["copy_gbs"] = copy_bandwidth_gbs(dev)
    print(f"# copy bandwidth (clone, read+write): {bench.meta['copy_gbs']:.1f} GB/s")

    for wl in workloads:
        g = workload_graph(wl, scale=args.scale, device=dev)
        g.transpose()
        _ = g.row
        n, nnz = g.num_dst, g.num_edges
        for d in dims:
            gen = torch.Generator(device=dev).manual_seed(0)
            hs = torch.randn(n, d, device=dev, generator=gen) / d ** 0.5
            ht = torch.randn(n, d, device=dev, generator=gen) / d ** 0.5
            hs_g = hs.clone().requires_grad_()
            ht_g = ht.clone().requires_grad_()
            tag = f"{wl}{'' if args.scale == 1 else f'@{args.scale}'} D={d}"
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

                case = f"{tag} {kernel} fwd"
                bm = byte_model(nnz, d, d, 1)
                ref_loss = pyg()
                bench.add(case, "gkd_ext fused", fused, check=lambda: relative(fused(), ref_loss), bytes=bm)
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
                    ref_both = pyg_both()
                    bench.add(case, "gkd_ext fused", fused_both,
                              check=lambda: relative(fused_both(), ref_both),
                              bytes=bm3)
                    del ref_both
                    bench.add(case, "pyg-style reference", pyg_both, baseline=True, bytes=bm3)
            del hs, ht, hs_g, ht_g
        del g
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
