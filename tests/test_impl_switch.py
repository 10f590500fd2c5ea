"""gkd_ext.use_impl("reference") routes every public function to the unfused references."""
import pytest
import torch

import gkd_ext
from gkd_ext import Graph


def test_reference_impl_gives_the_same_numbers():
    gen = torch.Generator().manual_seed(0)
    ei = torch.randint(0, 30, (2, 150), generator=gen)
    g = Graph.from_edge_index(ei, 30)
    x = torch.randn(30, 8, dtype=torch.float64, generator=gen)
    h = torch.randn(30, 5, dtype=torch.float64, generator=gen)
    z = torch.nn.functional.normalize(torch.randn(30, 8, dtype=torch.float64, generator=gen), dim=1)
    calls = {
        "spmm": lambda: gkd_ext.spmm(g, x, reduce="mean"),
        "sddmm": lambda: gkd_ext.sddmm(g, x, x, heads=2),
        "lsp": lambda: gkd_ext.lsp_loss(g, x, h, kernel="laplacian", reduction="edge_mean"),
        "infonce": lambda: gkd_ext.contrastive_loss(z, z.flip(0), 0.1, symmetric=True),
        "gsp": lambda: gkd_ext.gsp_loss(x, h, kernel="rbf", gamma=0.3),
    }
    fused = {k: f() for k, f in calls.items()}
    assert gkd_ext.get_impl() == "fused"
    with gkd_ext.use_impl("reference"):
        assert gkd_ext.get_impl() == "reference"
        ref = {k: f() for k, f in calls.items()}
    assert gkd_ext.get_impl() == "fused"
    for k in calls:
        torch.testing.assert_close(fused[k], ref[k], msg=k)


def test_unknown_impl():
    with pytest.raises(ValueError, match="'name' must be one of \\('fused', 'reference'\\)"):
        gkd_ext.set_impl("triton")
