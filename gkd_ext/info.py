"""`python -m gkd_ext.info`: versions, build flags, and each op with its backends."""
import platform

import torch

import gkd_ext
from gkd_ext.functional import has_cuda_kernels


def registered_ops():
    """Every gkd:: op this build registered (schemas live in one TORCH_LIBRARY block)."""
    names = [s.name for s in torch._C._jit_get_all_schemas() if s.name.startswith("gkd::")]
    return sorted({n.split("::", 1)[1] for n in names})


def report() -> str:
    lines = [
        f"gkd_ext {gkd_ext.__version__}",
        f"python {platform.python_version()} | torch {torch.__version__} (CUDA {torch.version.cuda})",
        f"CUDA kernels built: {'yes' if has_cuda_kernels() else 'no'} | "
        f"CUDA device visible: {torch.cuda.is_available()}"
        + (f" ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else ""),
        f"CPU threads: {torch.get_num_threads()}",
        "ops:",
    ]
    for op in registered_ops():
        backends = [k for k in ("CPU", "CUDA")
                    if torch._C._dispatch_has_kernel_for_dispatch_key(f"gkd::{op}", k)]
        extras = []
        if torch._C._dispatch_has_kernel_for_dispatch_key(f"gkd::{op}", "Meta") or \
                torch._C._dispatch_has_kernel_for_dispatch_key(f"gkd::{op}", "Fake"):
            extras.append("fake")
        if torch._C._dispatch_has_kernel_for_dispatch_key(f"gkd::{op}", "Autograd"):
            extras.append("autograd")
        lines.append(f"  gkd::{op:<22} {', '.join(backends) or '-':<10} {' '.join(extras)}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(report())
