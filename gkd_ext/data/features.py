"""Node-feature preprocessing, the one place the trainers' input features are shaped."""
from __future__ import annotations

import torch

from ..graph import quiet_sparse_csr

Tensor = torch.Tensor

# Below this fraction of non-zeros the features are kept as sparse CSR (bag-of-words data sets
# are 0.5-1.3% dense): the first layer's product and dropout then cost O(nnz), not O(N·F).
SPARSE_FEATURES_BELOW = 0.1

# Row normalisations of non-negative (bag-of-words) features. "l2" scales each row to unit
# length, so a row's product with a weight matrix has the same scale however many words it
# has; "sum" scales it to sum 1 (Kipf & Welling's preprocessing), which shrinks dense rows
# (Amazon's ~260 words) far more than sparse ones (Cora's ~18).
NORMS = ("l2", "sum", "none")


def _row_scale(x: Tensor, norm: str) -> Tensor:
    """The factor each row is divided by (dense [N, 1] or per stored entry for CSR)."""
    if x.layout == torch.sparse_csr:
        crow, val = x.crow_indices(), x.values()
        rows = torch.repeat_interleave(torch.arange(x.size(0), device=val.device), crow[1:] - crow[:-1])
        per_row = torch.zeros(x.size(0), dtype=val.dtype, device=val.device).index_add_(
            0, rows, val if norm == "sum" else val * val)
        per_row = per_row if norm == "sum" else per_row.sqrt()
        return per_row.clamp(min=1e-12)[rows]
    per_row = x.sum(1, keepdim=True) if norm == "sum" else x.norm(dim=1, keepdim=True)
    return per_row.clamp(min=1e-12)


def node_features(x: Tensor, norm: str = "l2") -> Tensor:
    """Input features as the trainers use them: non-negative (bag-of-words) rows normalised
    (``norm``: ``"l2"``, ``"sum"`` or ``"none"``; real-valued features are left as they are),
    and stored as sparse CSR when mostly zero. ``x`` may be dense or sparse CSR; a CSR input is
    never densified. Every model takes the CSR form
    (:func:`gkd_ext.nn.functional.feature_dropout`)."""
    if norm not in NORMS:
        raise ValueError(f"node_features: 'norm' must be one of {NORMS}, got {norm!r}")
    if x.layout == torch.sparse_csr:
        if norm != "none" and bool((x.values() >= 0).all()):
            with quiet_sparse_csr():
                x = torch.sparse_csr_tensor(x.crow_indices(), x.col_indices(),
                                            x.values() / _row_scale(x, norm), x.shape)
        return x
    if norm != "none" and bool((x >= 0).all()):
        x = x / _row_scale(x, norm)
    if x.dim() == 2 and x.numel() and int(torch.count_nonzero(x)) < SPARSE_FEATURES_BELOW * x.numel():
        with quiet_sparse_csr():
            x = x.to_sparse_csr()
    return x
