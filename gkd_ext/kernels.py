"""The vocabularies of the ops and losses, each defined once.

The similarity kernels (their names, the losses that accept each, each kernel's parameter and
its default), the LSP reductions, the SpMM reduces and the tile-product precisions are written
here and nowhere else in Python: :mod:`gkd_ext.functional`, :mod:`gkd_ext.reference`,
:mod:`gkd_ext.losses`, the trainers and the CLI import them. The C++ ops parse the same strings
into one ``enum class`` per family (``csrc/vocab.h``); ``tests/test_kernels.py`` checks that both
sides accept the same names.

Example:
    >>> KERNELS["laplacian"].param, KERNELS["laplacian"].default
    ('sigma', 100.0)
    >>> resolve_kernel("my_loss", "lsp", "rbf", {})   # the default gamma
    0.5
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

LOSSES = ("lsp", "gsp")


def check_choice(where: str, arg: str, value: Any, choices: Sequence[str]) -> str:
    """``value`` if it is one of ``choices``; else a ValueError naming ``where`` and ``arg``."""
    if value not in choices:
        raise ValueError(f"{where}: '{arg}' must be one of {tuple(choices)}, got {value!r}")
    return value


@dataclass(frozen=True)
class Kernel:
    """A similarity kernel ``k(a, b)``: its name, the losses that accept it (of
    :data:`LOSSES`) and its one optional parameter, a finite number > 0, with its default."""

    name: str
    losses: Tuple[str, ...]
    param: Optional[str] = None
    default: Optional[float] = None


#: Every similarity kernel by name (formulas: :func:`gkd_ext.lsp_loss`, :func:`gkd_ext.gsp_loss`).
KERNELS: Dict[str, Kernel] = {k.name: k for k in (
    Kernel("rbf", ("lsp", "gsp"), "gamma", 0.5),        # exp(-gamma ||a - b||^2)
    Kernel("laplacian", ("lsp",), "sigma", 100.0),      # exp(-||a - b||_1 / sigma)
    Kernel("cosine", ("lsp", "gsp")),
    Kernel("poly", ("lsp", "gsp")),                     # cosine squared
    Kernel("l2", ("lsp", "gsp")),                       # ||a - b||_2
    Kernel("linear", ("lsp",)),                         # <a, b>
)}


def kernels_for(loss: str) -> Tuple[str, ...]:
    """The names of the kernels ``loss`` (``"lsp"`` or ``"gsp"``) accepts, in table order."""
    check_choice("gkd_ext.kernels.kernels_for", "loss", loss, LOSSES)
    return tuple(k.name for k in KERNELS.values() if loss in k.losses)


LSP_KERNELS = kernels_for("lsp")
GSP_KERNELS = kernels_for("gsp")
#: How :func:`gkd_ext.lsp_loss` reduces the per-node KL terms.
LSP_REDUCTIONS = ("node_mean", "edge_mean", "sum", "none")
#: How :func:`gkd_ext.spmm` reduces the messages arriving at a node.
SPMM_REDUCES = ("sum", "mean", "max")
#: Tile products of the similarity losses: exact, or on CUDA tensor cores.
PRECISIONS = ("ieee", "tf32", "bf16")


def default_params(kernel: str) -> Dict[str, float]:
    """``{parameter: default}`` of ``kernel``; empty for a kernel without parameter."""
    k = KERNELS[check_choice("gkd_ext.kernels.default_params", "kernel", kernel, tuple(KERNELS))]
    return {} if k.param is None else {k.param: k.default}


def resolve_kernel(where: str, loss: str, kernel: str, kernel_params: Mapping[str, Any]) -> float:
    """Validates ``kernel`` for ``loss`` and its ``**kernel_params``; returns the value of the
    kernel's parameter (its default when not given), 0.0 for a kernel without parameter: the
    one float the ops take. Raises ValueError naming ``where`` and the argument at fault."""
    check_choice(where, "kernel", kernel, kernels_for(loss))
    k = KERNELS[kernel]
    unknown = set(kernel_params) - ({k.param} if k.param else set())
    if unknown:
        takes = f"'{k.param}'" if k.param else "no parameters"
        raise ValueError(f"{where}: unknown kernel parameter(s) {sorted(unknown)} for kernel "
                         f"{kernel!r} (it takes {takes})")
    if k.param is None:
        return 0.0
    value = kernel_params.get(k.param, k.default)
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: '{k.param}' must be a number, got {value!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{where}: '{k.param}' of the {kernel} kernel must be a finite number > 0, "
                         f"got {value}")
    return value
