"""Distillation losses as ``torch.nn.Module``s over the fused gkd:: ops."""
from __future__ import annotations

import torch

from .functional import LSP_KERNELS, LSP_REDUCTIONS, _lsp_param, lsp_loss
from .graph import Graph

Tensor = torch.Tensor


# ------------------------------------------------------------------ LSP
class LSPLoss(torch.nn.Module):
    r"""Local structure preserving loss (Yang et al., CVPR 2020) as a module.

    ``LSPLoss(kernel, reduction, **kernel_params)(graph, h_student, h_teacher)`` is
    :func:`gkd_ext.lsp_loss`: per destination node, KL(teacher || student) between the
    softmaxes of the kernel values ``k(h_i, h_j)`` over its incoming edges, fused, O(N) memory,
    deterministic backward. Kernel and parameters are validated at construction.

    Args:
        kernel: ``rbf`` (``gamma=0.5``), ``laplacian`` (``sigma=100``), ``cosine``, ``poly``,
            ``l2`` or ``linear``.
        reduction: ``node_mean`` (default), ``edge_mean``, ``sum`` or ``none``.
        **kernel_params: ``gamma`` or ``sigma``.

    Shapes: ``h_student [N, D_s]``, ``h_teacher [N, D_t]`` on a square graph of N nodes.

    Example:
        >>> loss_fn = LSPLoss("laplacian", sigma=100.0)
        >>> loss = loss_fn(graph, h_student, h_teacher.detach())
    """

    def __init__(self, kernel: str = "rbf", reduction: str = "node_mean", **kernel_params):
        super().__init__()
        if kernel not in LSP_KERNELS:
            raise ValueError(f"LSPLoss: 'kernel' must be one of {LSP_KERNELS}, got {kernel!r}")
        if reduction not in LSP_REDUCTIONS:
            raise ValueError(f"LSPLoss: 'reduction' must be one of {LSP_REDUCTIONS}, got {reduction!r}")
        _lsp_param(kernel, kernel_params)  # raises ValueError on a bad or unknown parameter
        self.kernel, self.reduction, self.kernel_params = kernel, reduction, dict(kernel_params)

    def forward(self, graph: Graph, h_student: Tensor, h_teacher: Tensor) -> Tensor:
        return lsp_loss(graph, h_student, h_teacher, kernel=self.kernel, reduction=self.reduction,
                        **self.kernel_params)

    def extra_repr(self) -> str:
        params = "".join(f", {k}={v}" for k, v in self.kernel_params.items())
        return f"kernel={self.kernel!r}, reduction={self.reduction!r}{params}"
