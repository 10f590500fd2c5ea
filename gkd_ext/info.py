"""`python -m gkd_ext.info`: versions, build flags, and each op with its backends."""
import platform

import torch

import gkd_ext
from gkd_ext.functional import registered_kernels


def report() -> str:
    """The text ``python -m gkd_ext.info`` prints: versions, whether this build has CUDA
    kernels, and every ``gkd::`` op with its backends, fake kernel and autograd (all read through
    the op ``gkd::build_info``)."""
    with_cuda = torch.ops.gkd.build_info()[0]
    lines = [
        f"gkd_ext {gkd_ext.__version__}",
        f"python {platform.python_version()} | torch {torch.__version__} (CUDA {torch.version.cuda})",
        f"CUDA kernels built: {'yes' if with_cuda else 'no'} | "
        f"CUDA device visible: {torch.cuda.is_available()}"
        + (f" ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else ""),
        f"CPU threads: {torch.get_num_threads()}",
        "ops:",
    ]
    for op, keys in registered_kernels().items():
        backends = [k for k in ("CPU", "CUDA") if k in keys]
        if "CompositeExplicitAutograd" in keys or "CompositeImplicitAutograd" in keys:
            backends.append("any")
        extras = [name for key, name in (("Meta", "fake"), ("Autograd", "autograd")) if key in keys]
        lines.append(f"  gkd::{op:<22} {', '.join(backends) or '-':<10} {' '.join(extras)}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(report())
