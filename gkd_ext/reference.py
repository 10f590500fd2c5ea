"""Pure-PyTorch, unfused references of every gkd_ext op.

They are the oracle of the tests (run in float64) and the "what users would write instead"
baseline of the benchmarks. They materialise what the fused kernels avoid (E x D gathers,
n x n similarity matrices), so use them only at sizes where that fits.
"""
from __future__ import annotations

import warnings
from typing import Optional

import torch

from .graph import Graph

Tensor = torch.Tensor


def spmm_reference(graph: Graph, x: Tensor, value: Optional[Tensor] = None,
                   reduce: str = "sum") -> Tensor:
    """Gather-then-scatter SpMM: materialises the ``E x D`` messages."""
    if value is None:
        value = graph.value
    shape3 = x.shape[1:] if x.dim() == 3 else None
    x2 = x.reshape(x.size(0), -1)
    D = x2.size(1)
    msg = x2[graph.col]                                        # [E, D]
    if value is not None:
        H = 1 if value.dim() == 1 else value.size(1)
        msg = (msg.view(-1, H, D // H) * value.view(-1, H, 1)).view(-1, D)
    index = graph.row.view(-1, 1).expand(-1, D)
    out = x2.new_zeros(graph.num_dst, D)
    if reduce == "sum":
        out = out.scatter_add(0, index, msg)
    elif reduce == "mean":
        out = out.scatter_add(0, index, msg)
        deg = graph.degree("in").clamp(min=1).to(x.dtype).view(-1, 1)
        out = out / deg
    elif reduce == "max":
        out = out.scatter_reduce(0, index, msg, reduce="amax", include_self=False)
    else:
        raise ValueError(f"spmm_reference: unknown reduce {reduce!r}")
    return out if shape3 is None else out.view(-1, *shape3)


def spmm_torch_sparse(graph: Graph, x: Tensor, value: Optional[Tensor] = None) -> Tensor:
    """``A @ x`` with a torch sparse CSR matrix (MKL on CPU, cuSPARSE on CUDA); sum only."""
    if value is None:
        value = graph.value if graph.value is not None else \
            torch.ones(graph.num_edges, dtype=x.dtype, device=x.device)
    with warnings.catch_warnings():  # torch warns that sparse CSR is beta on every construction
        warnings.simplefilter("ignore", UserWarning)
        adj = torch.sparse_csr_tensor(graph.rowptr, graph.col, value, (graph.num_dst, graph.num_src))
    return adj @ x


def sddmm_reference(graph: Graph, a: Tensor, b: Tensor, heads: int = 1) -> Tensor:
    """Per-edge dot products by gathering both endpoints: ``[E, heads]``."""
    a2, b2 = a.reshape(a.size(0), -1), b.reshape(b.size(0), -1)
    E, D = graph.num_edges, a2.size(1)
    prod = a2[graph.row] * b2[graph.col]
    return prod.view(E, heads, D // heads).sum(-1)
