"""Tiled similarity losses (G-CRD InfoNCE, GSP) against their dense n x n versions.

Cases, forward + backward (gradients for both inputs), float32:
  infonce        gkd_ext.contrastive_loss (student anchors) vs reference.infonce_dense
                 (n x n logits + cross_entropy, the seed's formulation)
  gsp-<kernel>   gkd_ext.gsp_loss vs reference.gsp_dense (both n x n kernel matrices)
at n where the dense version fits (default 16,384, D = 256), and at a size where it cannot
(default n = 100,000, D = 128: dense would need 40 GB per n x n matrix; n = 1,000,000 on the
GPU), tiled only, for the losses named by --big-losses.
Checks before timing: where dense fits, loss and both gradients against it (each relative to
its largest entry). At the tiled-only size one call is timed with its peak memory and then
verified where a check fits: InfoNCE's student-side gradient on --check-rows sampled anchors,
from those anchors' dense logit rows (k x n, in float64); the GSP rows there are unverified.
--big-fwd adds InfoNCE's forward alone at that size first (2·n²·D FLOPs), its row log-sum-exps
checked the same way.
FLOP model (algorithmic, recomputation not counted): InfoNCE 2·n²·D forward + 4·n²·D backward
per direction; GSP 2·n²·(D_s + D_t) forward + 4·n²·(D_s + D_t) backward. Peak memory is the
call's extra resident memory (CPU) or allocator peak (CUDA) above what was held before.

    python bench/bench_contrastive.py                                  # CPU, must-show sizes
    python bench/bench_contrastive.py --n 4096 --big-n 0 --losses infonce --json out.json
    python bench/bench_contrastive.py --device cuda --big-n 1000000 --big-losses infonce
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

from common import Bench, parser, relative  # noqa: E402

import gkd_ext  # noqa: E402
from gkd_ext.reference import gsp_dense, infonce_dense  # noqa: E402


def fwd_bwd(loss_fn, a, b):
    def run():
        loss = loss_fn(a, b)
        ga, gb = torch.autograd.grad(loss, (a, b))
        return loss.detach(), ga, gb
    return run


def inputs(n, d, dev, normalize):
    gen = torch.Generator(device=dev).manual_seed(0)
    a = torch.randn(n, d, device=dev, generator=gen)
    b = torch.randn(n, d, device=dev, generator=gen)
    if normalize:  # G-CRD feeds unit rows
        a, b = torch.nn.functional.normalize(a, dim=1), torch.nn.functional.normalize(b, dim=1)
    else:          # typical hidden features: |a - b|² of order 1 for rbf
        a, b = a / d ** 0.5, b / d ** 0.5
    return a.requires_grad_(), b.requires_grad_()


def infonce_rows_check(a, b, temperature: float, rows: torch.Tensor):
    """verify(out) for fwd_bwd's output: the student-side InfoNCE gradient on anchors ``rows``,
    ``(softmax(a_i B^T / tau) B - b_i) / (tau n)``, from those anchors' dense logit rows in float64
    (k x n, never n x n). Non-symmetric loss only (the symmetric one also needs column terms)."""
    def verify(out):
        grad_a = out[1]
        with torch.no_grad():
            b64 = b.detach().double()
            logits = a.detach()[rows].double() @ b64.T / temperature
            ref = (torch.softmax(logits, dim=1) @ b64 - b64[rows]) / (temperature * a.size(0))
        return relative(grad_a[rows], ref)
    return verify


def infonce_lse_check(a, b, temperature: float, rows: torch.Tensor):
    """verify(out) for gkd::infonce's output (loss, lse_s, lse_t): the row log-sum-exps of the
    sampled anchors against their dense logit rows in float64."""
    def verify(out):
        with torch.no_grad():
            logits = a.detach()[rows].double() @ b.detach().double().T / temperature
            return relative(out[1][rows], torch.logsumexp(logits, dim=1))
    return verify


def losses(name, args):
    if name == "infonce":
        tiled = lambda a, b: gkd_ext.contrastive_loss(a, b, args.temperature, args.symmetric,  # noqa: E731
                                                      args.precision)
        dense = lambda a, b: infonce_dense(a, b, args.temperature, args.symmetric)  # noqa: E731
        return tiled, dense, True, 2 if args.symmetric else 1
    kernel = name.split("-", 1)[1]
    tiled = lambda a, b: gkd_ext.gsp_loss(a, b, kernel)  # noqa: E731
    dense = lambda a, b: gsp_dense(a, b, kernel)  # noqa: E731
    return tiled, dense, False, 2   # two models, each its own Gram matrix


def make_parser() -> argparse.ArgumentParser:
    p = parser(__doc__.split("\n")[0])
    p.add_argument("--losses", nargs="+", default=["infonce", "gsp-cosine", "gsp-rbf"],
                   help="infonce, gsp-cosine, gsp-poly, gsp-l2, gsp-rbf")
    p.add_argument("--n", type=int, nargs="*", default=[16384], help="sizes with a dense baseline (none: skip)")
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--big-n", type=int, default=100000, help="tiled-only size (0: skip)")
    p.add_argument("--big-losses", nargs="*", default=None,
                   help="losses run at --big-n (default: all of --losses)")
    p.add_argument("--check-rows", type=int, default=256,
                   help="sampled anchors of the InfoNCE check at --big-n")
    p.add_argument("--big-dim", type=int, default=128)
    p.add_argument("--big-fwd", action="store_true",
                   help="also time InfoNCE's forward alone at --big-n, before forward+backward "
                        "(one call; its row log-sum-exps checked on the sampled anchors)")
    p.add_argument("--temperature", type=float, default=0.075)
    p.add_argument("--symmetric", action="store_true")
    p.add_argument("--precision", default="ieee", help="ieee | tf32 | bf16 (CUDA)")
    return p


def main() -> None:
    args = make_parser().parse_args()
    dev = torch.device(args.device)
    bench = Bench("contrastive", args)

    big_losses = args.losses if args.big_losses is None else args.big_losses
    tol = 1e-3 if args.precision == "ieee" else 2e-2
    for name in args.losses:
        tiled, dense, normalize, mult = losses(name, args)
        for n in args.n:
            a, b = inputs(n, args.dim, dev, normalize)
            flops = 6.0 * n * n * args.dim * mult
            case = f"{name} n={n} D={args.dim} fwd+bwd"
            t_run, d_run = fwd_bwd(tiled, a, b), fwd_bwd(dense, a, b)
            bench.add(case, "dense (n x n)", d_run, flops=flops, baseline=True)
            bench.add(case, f"gkd_ext tiled {args.precision}", t_run,
                      check=lambda: relative(t_run(), d_run()), tol=tol, flops=flops)
            del a, b
    for name in big_losses if args.big_n else []:
        tiled, _, normalize, mult = losses(name, args)
        n, d = args.big_n, args.big_dim
        a, b = inputs(n, d, dev, normalize)
        flops = 6.0 * n * n * d * mult
        note = f"dense would need {n * n * 4 / 2**30:.3g} GiB per n x n matrix; one call"
        verify = None
        if name == "infonce" and not args.symmetric:
            rows = torch.randperm(n, generator=torch.Generator().manual_seed(0))[:args.check_rows]
            rows = rows.to(dev)
            verify = infonce_rows_check(a, b, args.temperature, rows)
            if args.big_fwd:
                def fwd(a=a, b=b):
                    with torch.no_grad():
                        return torch.ops.gkd.infonce(a, b, args.temperature, False, args.precision)
                bench.add(f"{name} n={n} D={d} fwd", f"gkd_ext tiled {args.precision}", fwd,
                          flops=2.0 * n * n * d, once=True, tol=tol,
                          verify=infonce_lse_check(a, b, args.temperature, rows),
                          note=note + f", row log-sum-exps checked on {rows.numel()} sampled anchors")
            note += f", gradient checked on {rows.numel()} sampled anchors"
        else:
            note += ", unverified at this size"
        bench.add(f"{name} n={n} D={d} fwd+bwd", f"gkd_ext tiled {args.precision}",
                  fwd_bwd(tiled, a, b), flops=flops, once=True, verify=verify, tol=tol, note=note)
        del a, b
    bench.finish()


if __name__ == "__main__":
    main()
