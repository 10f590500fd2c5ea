"""Node-feature preprocessing, the one place the trainers' input features are shaped."""
from __future__ import annotations

import torch

from ..graph import quiet_sparse_csr

Tensor = torch.Tensor

# Below this fraction of non-zeros the features are kept as sparse CSR (bag-of-words data sets
# are 0.5-1.3% dense): the first layer's product and dropout then cost O(nnz), not O(N·F).
SPARSE_FEATURES_BELOW = 0.1


def _row_normalise_csr(x: Tensor) -> Tensor:
    crow, col, val = x.crow_indices(), x.col_indices(), x.values()
    rows = torch.repeat_interleave(torch.arange(x.size(0), device=val.device), crow[1:] - crow[:-1])
    sums = torch.zeros(x.size(0), dtype=val.dtype, device=val.device).index_add_(0, rows, val)
    with quiet_sparse_csr():
        return torch.sparse_csr_tensor(crow, col, val / sums.clamp(min=1e-12)[rows], x.shape)


def node_features(x: Tensor, normalize: bool = True) -> Tensor:
    """Input features as the trainers use them: non-negative (bag-of-words) rows normalised to
    sum 1, as GCN and GAT do, and stored as sparse CSR when mostly zero. ``x`` may be dense or
    sparse CSR; a CSR input is never densified. Every model takes the CSR form
    (:func:`gkd_ext.nn.functional.feature_dropout`)."""
    if x.layout == torch.sparse_csr:
        if normalize and bool((x.values() >= 0).all()):
            x = _row_normalise_csr(x)
        return x
    if normalize and bool((x >= 0).all()):
        x = x / x.sum(1, keepdim=True).clamp(min=1e-12)
    if x.dim() == 2 and x.numel() and int(torch.count_nonzero(x)) < SPARSE_FEATURES_BELOW * x.numel():
        with quiet_sparse_csr():
            x = x.to_sparse_csr()
    return x
