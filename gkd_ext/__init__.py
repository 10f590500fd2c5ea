"""gkd_ext: fused CPU/CUDA kernels and reference trainers for knowledge distillation on GNNs."""
import torch

try:
    from . import _C  # noqa: F401  (registers the gkd:: ops)
except ImportError as exc:  # pragma: no cover - exercised only on a broken install
    raise ImportError(
        "gkd_ext's compiled extension gkd_ext._C is missing or failed to load "
        f"({exc}). Build it with `pip install --no-build-isolation -e .` (or `make install`) "
        "in the gkd_ext source tree."
    ) from exc

from . import _ops  # noqa: E402,F401  (fake kernels and autograd for the gkd:: ops)
from .graph import Graph  # noqa: E402
from .functional import (contrastive_loss, get_impl, gsp_loss, lsp_loss, sddmm, set_impl,  # noqa: E402
                         spmm, use_impl)
from . import losses  # noqa: E402
from .losses import GCRDLoss, GSPLoss, LSPLoss  # noqa: E402

__version__ = "0.1.0"

__all__ = ["Graph", "spmm", "sddmm", "lsp_loss", "contrastive_loss", "gsp_loss", "LSPLoss",
           "GSPLoss", "GCRDLoss", "losses", "set_impl", "get_impl", "use_impl", "__version__"]
