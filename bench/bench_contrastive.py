"""Tiled similarity losses (G-CRD InfoNCE, GSP) against their dense n x n versions.

Cases, forward + backward (gradients for both inputs), float32:
  infonce        gkd_ext.contrastive_loss (student anchors) vs reference.infonce_dense
                 (n x n logits + cross_entropy, the seed's formulation)
  gsp-<kernel>   gkd_ext.gsp_loss vs reference.gsp_dense (both n x n kernel matrices)
at n where the dense version fits (default 16,384, D = 256), and at a size where it cannot
(default n = 100,000, D = 128: dense would need 40 GB per n x n matrix), tiled only.
FLOP model (algorithmic, recomputation not counted): InfoNCE 2·n²·D forward + 4·n²·D backward
per direction; GSP 2·n²·(D_s + D_t) forward + 4·n²·(D_s + D_t) backward. Peak memory is the
call's extra resident memory (CPU) or allocator peak (CUDA) above what was held before.

    python bench/bench_contrastive.py                                  # CPU, must-show sizes
    python bench/bench_contrastive.py --n 4096 --big-n 0 --losses infonce --json out.json
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

from common import Bench, parser  # noqa: E402

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


def main() -> None:
    p = parser(__doc__.split("\n")[0])
    p.add_argument("--losses", nargs="+", default=["infonce", "gsp-cosine", "gsp-rbf"],
                   help="infonce, gsp-cosine, gsp-poly, gsp-l2, gsp-rbf")
    p.add_argument("--n", type=int, nargs="*", default=[16384], help="sizes with a dense baseline (none: skip)")
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--big-n", type=int, default=100000, help="tiled-only size (0: skip)")
    p.add_argument("--big-dim", type=int, default=128)
    p.add_argument("--big-repeat", type=int, default=1, help="timed repeats at --big-n")
    p.add_argument("--temperature", type=float, default=0.075)
    p.add_argument("--symmetric", action="store_true")
    p.add_argument("--precision", default="ieee", help="ieee | tf32 | bf16 (CUDA)")
    args = p.parse_args()
    dev = torch.device(args.device)
    bench = Bench("contrastive", args)

    for name in args.losses:
        tiled, dense, normalize, mult = losses(name, args)
        for n in args.n:
            a, b = inputs(n, args.dim, dev, normalize)
            flops = 6.0 * n * n * args.dim * mult
            case = f"{name} n={n} D={args.dim} fwd+bwd"
            t_run, d_run = fwd_bwd(tiled, a, b), fwd_bwd(dense, a, b)
            bench.add(case, "dense (n x n)", d_run, flops=flops, baseline=True)
            bench.add(case, f"gkd_ext tiled {args.precision}", t_run, check=lambda: (t_run(), d_run()),
                      tol=1e-3 if args.precision == "ieee" else 2e-2, flops=flops)
            del a, b
        if args.big_n:
            n, d = args.big_n, args.big_dim
            a, b = inputs(n, d, dev, normalize)
            flops = 6.0 * n * n * d * mult
            saved = args.repeat, args.warmup
            args.repeat, args.warmup = args.big_repeat, 0
            bench.add(f"{name} n={n} D={d} fwd+bwd", f"gkd_ext tiled {args.precision}",
                      fwd_bwd(tiled, a, b), flops=flops,
                      note=f"dense would need {n * n * 4 / 2**30:.0f} GiB per n x n matrix")
            args.repeat, args.warmup = saved
            del a, b
    bench.finish()


if __name__ == "__main__":
    main()
