"""Tiled GSP (gkd::gsp, gkd_ext.gsp_loss) against the dense references."""
import pytest
import torch

import gkd_ext
from gkd_ext.functional import gsp_loss
from gkd_ext.kernels import GSP_KERNELS as KERNELS
from gkd_ext.reference import gsp_dense
from gkd_ext.testing import NEEDS, feature_pair, float64_leaves, loss_and_grads

from conftest import DEVICES

op = torch.ops.gkd.gsp


def _seed_style(h, kernel, gamma=0.5):
    # The seed's broadcast form (n x n x D): exact distances, an independent oracle.
    if kernel in ("cosine", "poly"):
        u = torch.nn.functional.normalize(h, dim=1)
        k = u @ u.T
        return k * k if kernel == "poly" else k
    d2 = (h[:, None, :] - h[None, :, :]).pow(2).sum(-1)
    if kernel == "rbf":
        return torch.exp(-gamma * d2)
    pos = d2 > 0
    return torch.where(pos, d2.clamp_min(1e-300).sqrt(), torch.zeros_like(d2))


# n not dividing the CPU tile (256 x 2048) nor the CUDA tile (64); D_s != D_t.
@pytest.mark.parametrize("n", [1, 7, 129, 1000])
@pytest.mark.parametrize("kernel", KERNELS)
def test_matches_dense_float64(device, n, kernel):
    hs, ht = feature_pair(n, 24, 40, device, scale=0.3)
    got = loss_and_grads(lambda a, b: gsp_loss(a, b, kernel), hs, ht)
    ref = loss_and_grads(lambda a, b: gsp_dense(a, b, kernel), hs, ht)
    for g, r in zip(got, ref):
        torch.testing.assert_close(g, r, rtol=1e-9, atol=1e-14)


@pytest.mark.parametrize("kernel", KERNELS)
def test_matches_seed_broadcast_form(device, kernel):
    hs, ht = feature_pair(40, 6, 9, device, scale=0.5)
    got = loss_and_grads(lambda a, b: gsp_loss(a, b, kernel), hs, ht)
    ref = loss_and_grads(lambda a, b: (_seed_style(a, kernel) - _seed_style(b, kernel)).pow(2).mean(), hs, ht)
    for g, r in zip(got, ref):
        torch.testing.assert_close(g, r, rtol=1e-7, atol=1e-12)


@pytest.mark.parametrize("kernel", KERNELS)
def test_matches_dense_float32(device, kernel):
    hs, ht = feature_pair(2100, 64, 32, device, torch.float32, scale=0.2)
    got = loss_and_grads(lambda a, b: gsp_loss(a, b, kernel), hs, ht)
    ref = loss_and_grads(lambda a, b: gsp_dense(a, b, kernel), *float64_leaves(hs, ht))
    for g, r in zip(got, ref):
        assert torch.isfinite(g).all()
        torch.testing.assert_close(g.double(), r, rtol=1e-4, atol=1e-4 * r.abs().max().item())


@pytest.mark.parametrize("kernel", KERNELS)
def test_gradcheck(device, kernel):
    hs, ht = feature_pair(6, 3, 5, device)
    assert torch.autograd.gradcheck(lambda a, b: gsp_loss(a, b, kernel), (hs, ht))


def test_rbf_gamma(device):
    hs, ht = feature_pair(300, 8, 12, device, scale=0.3)
    got = loss_and_grads(lambda a, b: gsp_loss(a, b, "rbf", gamma=2.0), hs, ht)
    ref = loss_and_grads(lambda a, b: gsp_dense(a, b, "rbf", gamma=2.0), hs, ht)
    for g, r in zip(got, ref):
        torch.testing.assert_close(g, r, rtol=1e-9, atol=1e-14)


@pytest.mark.parametrize("kernel", KERNELS)
def test_identical_features_zero_loss(device, kernel):
    hs, _ = feature_pair(300, 16, 16, device)
    ht = hs.detach().clone().requires_grad_()
    loss, gs, gt = loss_and_grads(lambda a, b: gsp_loss(a, b, kernel), hs, ht)
    assert loss.item() == pytest.approx(0.0, abs=1e-20)
    assert gs.abs().max().item() < 1e-12 and gt.abs().max().item() < 1e-12


def test_orthogonal_features_closed_form(device):
    # Orthonormal rows: cosine kernel = I; against a constant teacher (all ones: K = 1),
    # (K_s - K_t)^2 is 0 on the diagonal and 1 elsewhere: loss = (n^2 - n) / n^2.
    n = 20
    hs = torch.eye(n, dtype=torch.float64, device=device)
    ht = torch.ones(n, 3, dtype=torch.float64, device=device)
    assert gsp_loss(hs, ht, "cosine").item() == pytest.approx((n * n - n) / (n * n), rel=1e-12)


def test_l2_diagonal_gradient_finite_float32(device):
    # The l2 kernel's sqrt at distance 0 (the diagonal): gradient defined as 0, never NaN/inf.
    hs, ht = feature_pair(513, 32, 16, device, torch.float32, scale=10.0)
    loss, gs, gt = loss_and_grads(lambda a, b: gsp_loss(a, b, "l2"), hs, ht)
    assert torch.isfinite(loss) and torch.isfinite(gs).all() and torch.isfinite(gt).all()


def test_zero_rows_cosine(device):
    # A zero row normalises to 0 (F.normalize's eps), as in the reference.
    hs, ht = feature_pair(50, 8, 8, device)
    with torch.no_grad():
        hs[3] = 0
    got = loss_and_grads(lambda a, b: gsp_loss(a, b, "cosine"), hs, ht)
    ref = loss_and_grads(lambda a, b: gsp_dense(a, b, "cosine"), hs, ht)
    for g, r in zip(got, ref):
        torch.testing.assert_close(g, r, rtol=1e-9, atol=1e-14)


def test_teacher_detached_and_noncontiguous(device):
    hs = torch.randn(10, 300, dtype=torch.float64, device=device).T.requires_grad_()
    ht = torch.randn(300, 20, dtype=torch.float64, device=device)
    (g,) = torch.autograd.grad(gsp_loss(hs, ht, "rbf"), hs)
    h2 = hs.detach().clone().requires_grad_()
    (r,) = torch.autograd.grad(gsp_dense(h2, ht, "rbf"), h2)
    torch.testing.assert_close(g, r, rtol=1e-9, atol=1e-14)


@pytest.mark.parametrize("kernel", KERNELS)
def test_opcheck(device, kernel):
    hs, ht = feature_pair(70, 5, 9, device)
    torch.library.opcheck(op, (hs, ht, kernel, 0.5))
    loss, sq_s, sq_t = op(hs.detach(), ht.detach(), kernel, 0.5)
    grad = torch.ones((), dtype=hs.dtype, device=device)
    for need in NEEDS:
        torch.library.opcheck(torch.ops.gkd.gsp_backward,
                              (grad, hs.detach(), ht.detach(), sq_s, sq_t, kernel, 0.5, *need))


def test_torch_compile_fullgraph(device):
    hs, ht = feature_pair(100, 16, 8, device)

    def f(a, b):
        return gsp_loss(a, b, "rbf", gamma=0.7) + gsp_loss(a, b, "cosine")

    compiled = torch.compile(f, fullgraph=True)
    got = loss_and_grads(compiled, hs, ht)
    ref = loss_and_grads(lambda a, b: gsp_dense(a, b, "rbf", gamma=0.7) + gsp_dense(a, b, "cosine"), hs, ht)
    for g, r in zip(got, ref):
        torch.testing.assert_close(g, r, rtol=1e-9, atol=1e-14)


@pytest.mark.parametrize("kernel", ["cosine", "rbf"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("device", [p for p in DEVICES if not isinstance(p, str)], indirect=True)
def test_low_precision_cuda(device, dtype, kernel):
    """float16/bfloat16 inputs (computed in float32): err(kernel vs fp64 on the same rounded
    inputs) <= 2 err(the dense loss in PyTorch at that precision vs fp64) + eps."""
    hs, ht = feature_pair(700, 48, 80, device, torch.float32, scale=0.2)
    lo_s, lo_t = hs.detach().to(dtype).requires_grad_(), ht.detach().to(dtype).requires_grad_()
    got = loss_and_grads(lambda a, b: gsp_loss(a, b, kernel), lo_s, lo_t)
    ref = loss_and_grads(lambda a, b: gsp_dense(a, b, kernel),
                lo_s.detach().double().requires_grad_(), lo_t.detach().double().requires_grad_())
    torch_lo = loss_and_grads(lambda a, b: gsp_dense(a, b, kernel), lo_s, lo_t)
    assert got[0].dtype == dtype
    for g, r, t in zip(got, ref, torch_lo):
        assert torch.isfinite(g.float()).all()
        err, base = (g.double() - r).abs().max().item(), (t.double() - r).abs().max().item()
        assert err <= 2 * base + 1e-3 * r.abs().max().item(), (err, base)


def test_bad_input():
    hs, ht = feature_pair(10, 8, 6, "cpu", torch.float32)
    with pytest.raises(ValueError, match="same number of rows"):
        gsp_loss(hs, ht[:9])
    with pytest.raises(ValueError, match="'kernel' must be one of"):
        gsp_loss(hs, ht, "laplacian")
    with pytest.raises(ValueError, match="gamma"):
        gsp_loss(hs, ht, "rbf", gamma=0.0)
    with pytest.raises(ValueError, match="takes no parameters"):
        gsp_loss(hs, ht, "cosine", gamma=1.0)
    with pytest.raises(ValueError, match="floating-point"):
        gsp_loss(hs.int(), ht.int())
    with pytest.raises(RuntimeError, match="h_t"):
        gsp_loss(hs, ht.double())
    with pytest.raises(RuntimeError, match="'kernel' must be one of"):
        op(hs, ht, "laplacian", 0.5)
    with pytest.raises(RuntimeError, match="'gamma'"):
        op(hs, ht, "rbf", -1.0)
    with pytest.raises(RuntimeError, match="same number of rows"):
        op(hs, ht[:9], "rbf", 0.5)
    with pytest.raises(RuntimeError, match="'sq_t' must have shape"):
        torch.ops.gkd.gsp_backward(torch.ones(()), hs, ht, torch.zeros(10), torch.zeros(4), "rbf",
                                   0.5, True, True)


def test_gsp_module_subsets():
    from gkd_ext.losses import GSPLoss
    hs, ht = torch.randn(60, 5, dtype=torch.float64), torch.randn(60, 7, dtype=torch.float64)
    idx = torch.tensor([3, 1, 40, 59, 7])
    torch.testing.assert_close(GSPLoss("rbf", gamma=0.3)(hs, ht, nodes=idx),
                               gsp_dense(hs[idx], ht[idx], "rbf", gamma=0.3))
    torch.testing.assert_close(GSPLoss("l2")(hs, ht), gsp_dense(hs, ht, "l2"))
    g = torch.Generator().manual_seed(0)
    pick = torch.randperm(60, generator=torch.Generator().manual_seed(0))[:8]
    torch.testing.assert_close(GSPLoss("poly", max_samples=8, generator=g)(hs, ht),
                               gsp_dense(hs[pick], ht[pick], "poly"))
    with pytest.raises(ValueError, match="kernel"):
        GSPLoss("nope")(hs, ht)
