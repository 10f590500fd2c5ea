"""Tiled InfoNCE (gkd::infonce, gkd_ext.contrastive_loss) against the dense reference."""
import math

import pytest
import torch

import gkd_ext
from gkd_ext.functional import contrastive_loss
from gkd_ext.reference import infonce_dense
from gkd_ext.testing import (NEEDS, assert_low_precision_close, feature_pair, features,
                             float64_leaves, loss_and_grads)

from conftest import DEVICES

op = torch.ops.gkd.infonce


def _pair(n, D, device, dtype=torch.float64, normalize=True):
    return feature_pair(n, D, D, device, dtype, normalize=normalize)


def _anchors_candidates(n, m, D, device, dtype=torch.float64, normalize=True):
    """Anchors z_s [n, D] and candidates z_t [m, D] (m >= n), both leaves requiring grad."""
    zs, zt = features(n, D, device, dtype, grad=False), features(m, D, device, dtype, grad=False)
    if normalize:
        zs, zt = torch.nn.functional.normalize(zs, dim=1), torch.nn.functional.normalize(zt, dim=1)
    return zs.requires_grad_(), zt.requires_grad_()


def _ref64(fn, zs, zt):
    """The reference on float64 copies (gradients in float64 too)."""
    return loss_and_grads(fn, *float64_leaves(zs, zt))


# n that do not divide the CPU tile (256 rows x 2048 columns) nor the CUDA tile (64); 2100
# crosses a column-chunk boundary.
@pytest.mark.parametrize("n", [1, 7, 129, 1000, 2100])
@pytest.mark.parametrize("symmetric", [False, True])
def test_matches_dense_float64(device, n, symmetric):
    zs, zt = _pair(n, 19, device)
    tau = 0.1
    got = loss_and_grads(lambda a, b: contrastive_loss(a, b, tau, symmetric), zs, zt)
    ref = loss_and_grads(lambda a, b: infonce_dense(a, b, tau, symmetric), zs, zt)
    for g, r in zip(got, ref):
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("symmetric", [False, True])
def test_matches_dense_float32(device, symmetric):
    zs, zt = _pair(1000, 128, device, torch.float32)
    got = loss_and_grads(lambda a, b: contrastive_loss(a, b, 0.075, symmetric), zs, zt)
    ref64 = _ref64(lambda a, b: infonce_dense(a, b, 0.075, symmetric), zs, zt)
    for g, r in zip(got, ref64):
        torch.testing.assert_close(g.double(), r, rtol=2e-5, atol=1e-7)


@pytest.mark.parametrize("symmetric", [False, True])
def test_gradcheck(device, symmetric):
    zs, zt = _pair(6, 4, device, normalize=False)
    assert torch.autograd.gradcheck(lambda a, b: contrastive_loss(a, b, 0.7, symmetric), (zs, zt))


@pytest.mark.parametrize("tau", [0.01, 1.0])
@pytest.mark.parametrize("symmetric", [False, True])
def test_temperature_extremes(device, tau, symmetric):
    zs, zt = _pair(300, 32, device, torch.float32)
    loss, gs, gt = loss_and_grads(lambda a, b: contrastive_loss(a, b, tau, symmetric), zs, zt)
    for t in (loss, gs, gt):
        assert torch.isfinite(t).all()
    ref = _ref64(lambda a, b: infonce_dense(a, b, tau, symmetric), zs, zt)
    for g, r in zip((loss, gs, gt), ref):
        torch.testing.assert_close(g.double(), r, rtol=1e-4, atol=1e-5)


def test_very_large_logits_stay_finite(device):
    # Unnormalised embeddings: logits in the thousands; the online max keeps exp in range.
    zs, zt = _pair(200, 16, device, torch.float32, normalize=False)
    with torch.no_grad():
        zs.mul_(30)
    loss, gs, gt = loss_and_grads(lambda a, b: contrastive_loss(a, b, 0.05, True), zs, zt)
    assert torch.isfinite(loss) and torch.isfinite(gs).all() and torch.isfinite(gt).all()
    ref = infonce_dense(zs.double(), zt.double(), 0.05, True)
    torch.testing.assert_close(loss.double(), ref, rtol=1e-4, atol=1e-3)


def test_orthogonal_embeddings_closed_form(device):
    # z_s = z_t = I: S = I / tau, every row lse = log(e^{1/tau} + n - 1).
    n, tau = 50, 0.2
    z = torch.eye(n, dtype=torch.float64, device=device)
    expected = math.log(math.exp(1 / tau) + n - 1) - 1 / tau
    for sym in (False, True):
        assert contrastive_loss(z, z, tau, sym).item() == pytest.approx(expected, rel=1e-12)


def test_identical_embeddings(device):
    zs, _ = _pair(257, 24, device)
    zt = zs.detach().clone().requires_grad_()
    got = loss_and_grads(lambda a, b: contrastive_loss(a, b, 0.075, True), zs, zt)
    ref = loss_and_grads(lambda a, b: infonce_dense(a, b, 0.075, True), zs, zt)
    for g, r in zip(got, ref):
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-12)


def test_teacher_detached_and_noncontiguous(device):
    zs = torch.randn(24, 300, dtype=torch.float64, device=device).T.requires_grad_()  # [300, 24]
    zt = torch.randn(300, 24, dtype=torch.float64, device=device)
    loss = contrastive_loss(zs, zt, 0.3)
    (g,) = torch.autograd.grad(loss, zs)
    zs2 = zs.detach().clone().requires_grad_()
    (r,) = torch.autograd.grad(infonce_dense(zs2, zt, 0.3), zs2)
    torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-12)


def test_deterministic(device):
    zs, zt = _pair(700, 40, device, torch.float32)
    a = loss_and_grads(lambda x, y: contrastive_loss(x, y, 0.075, True), zs, zt)
    b = loss_and_grads(lambda x, y: contrastive_loss(x, y, 0.075, True), zs, zt)
    for x, y in zip(a, b):
        assert torch.equal(x, y)


@pytest.mark.parametrize("symmetric", [False, True])
def test_opcheck(device, symmetric):
    zs, zt = _pair(70, 8, device)
    torch.library.opcheck(op, (zs, zt, 0.5, symmetric, "ieee"))
    loss, lse_s, lse_t = op(zs.detach(), zt.detach(), 0.5, symmetric, "ieee")
    grad = torch.ones((), dtype=zs.dtype, device=device)
    for need in NEEDS:
        torch.library.opcheck(torch.ops.gkd.infonce_backward,
                              (grad, zs.detach(), zt.detach(), lse_s, lse_t, 0.5, symmetric, "ieee",
                               *need))


def test_torch_compile_fullgraph(device):
    zs, zt = _pair(100, 16, device)

    def f(a, b):
        return contrastive_loss(a, b, 0.2, True) * 2 + a.sum() * 0

    compiled = torch.compile(f, fullgraph=True)
    got = loss_and_grads(compiled, zs, zt)
    ref = loss_and_grads(lambda a, b: 2 * infonce_dense(a, b, 0.2, True), zs, zt)
    for g, r in zip(got, ref):
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-12)


# (n, m): square and symmetric, or more candidates than anchors (one-directional).
LOW_SHAPES = [(1000, 1000), (300, 2500)]


@pytest.mark.parametrize("n,m", LOW_SHAPES)
@pytest.mark.parametrize("precision", ["tf32", "bf16"])
def test_tensor_core_precision(device, precision, n, m):
    if device.type != "cuda":
        small = _anchors_candidates(8, 8 if n == m else 12, 4, device, torch.float32)
        with pytest.raises(ValueError, match="precision"):
            contrastive_loss(*small, 0.1, precision=precision)
        with pytest.raises(RuntimeError, match="precision"):
            op(*small, 0.1, False, precision)
        return
    sym = n == m
    zs, zt = _anchors_candidates(n, m, 128, device, torch.float32)
    got = loss_and_grads(lambda a, b: contrastive_loss(a, b, 0.075, sym, precision), zs, zt)
    ref = _ref64(lambda a, b: infonce_dense(a, b, 0.075, sym), zs, zt)
    # Same math in PyTorch at that precision: inputs rounded to the tile-product format.
    rnd = torch.bfloat16 if precision == "bf16" else torch.float32
    low = _ref64(lambda a, b: infonce_dense(a.to(rnd).double(), b.to(rnd).double(), 0.075, sym),
                 zs, zt)
    for g, r, lo in zip(got, ref, low):
        assert_low_precision_close(g, r, lo, eps=1e-3 * r.abs().max().item())


@pytest.mark.parametrize("n,m", LOW_SHAPES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("device", [p for p in DEVICES if not isinstance(p, str)], indirect=True)
def test_low_precision_cuda(device, dtype, n, m):
    """float16/bfloat16 inputs (computed in float32): err(kernel vs fp64 on the same rounded
    inputs) <= 2 err(the dense loss in PyTorch at that precision vs fp64) + eps."""
    sym = n == m
    zs, zt = _anchors_candidates(n, m, 128, device, torch.float32)
    lo_s, lo_t = zs.detach().to(dtype).requires_grad_(), zt.detach().to(dtype).requires_grad_()
    got = loss_and_grads(lambda a, b: contrastive_loss(a, b, 0.075, sym), lo_s, lo_t)
    ref = _ref64(lambda a, b: infonce_dense(a, b, 0.075, sym), lo_s, lo_t)
    torch_lo = loss_and_grads(lambda a, b: infonce_dense(a, b, 0.075, sym), lo_s, lo_t)
    assert got[0].dtype == dtype
    for g, r, t in zip(got, ref, torch_lo):
        assert torch.isfinite(g.float()).all()
        err, base = (g.double() - r).abs().max().item(), (t.double() - r).abs().max().item()
        assert err <= 2 * base + 1e-3 * r.abs().max().item(), (err, base)


# More candidates than anchors (m > n): extra negatives. (n, m) straddle the CPU tiles (256 rows,
# 2048 columns: 2500 needs two column chunks, 300 two row blocks) and the CUDA tiles (64 float,
# 32 double), and the z_t gradient pass has m rows over n columns on CUDA.
RECT = [(1, 2), (1, 70), (7, 20), (129, 200), (300, 2500)]


@pytest.mark.parametrize("n,m", RECT)
def test_rectangular_matches_dense_float64(device, n, m):
    zs, zt = _anchors_candidates(n, m, 11, device)
    got = loss_and_grads(lambda a, b: contrastive_loss(a, b, 0.1), zs, zt)
    ref = loss_and_grads(lambda a, b: infonce_dense(a, b, 0.1), zs, zt)
    assert got[1].shape == (n, 11) and got[2].shape == (m, 11)
    for g, r in zip(got, ref):
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("n,m", [(7, 20), (300, 2500)])
def test_rectangular_matches_dense_float32(device, n, m):
    zs, zt = _anchors_candidates(n, m, 64, device, torch.float32)
    got = loss_and_grads(lambda a, b: contrastive_loss(a, b, 0.075), zs, zt)
    ref64 = _ref64(lambda a, b: infonce_dense(a, b, 0.075), zs, zt)
    for g, r in zip(got, ref64):
        torch.testing.assert_close(g.double(), r, rtol=2e-5, atol=1e-7)


def test_rectangular_gradcheck(device):
    zs, zt = _anchors_candidates(4, 9, 3, device, normalize=False)
    assert torch.autograd.gradcheck(lambda a, b: contrastive_loss(a, b, 0.7), (zs, zt))


def test_rectangular_opcheck(device):
    zs, zt = _anchors_candidates(40, 90, 8, device)
    torch.library.opcheck(op, (zs, zt, 0.5, False, "ieee"))
    loss, lse_s, lse_t = op(zs.detach(), zt.detach(), 0.5, False, "ieee")
    assert lse_s.shape == (40,) and lse_t.shape == (0,)
    grad = torch.ones((), dtype=zs.dtype, device=device)
    for need in NEEDS:
        torch.library.opcheck(torch.ops.gkd.infonce_backward,
                              (grad, zs.detach(), zt.detach(), lse_s, lse_t, 0.5, False, "ieee",
                               *need))


def test_rectangular_ranks_sum_to_full_batch(device):
    """The distributed use: each rank's anchors meet every rank's candidates, rotated so its own
    come first; the anchor-weighted mean of the ranks' losses is the full batch's loss, and the
    gradients flowing back through the rotation are the full batch's gradients."""
    zs, zt = _anchors_candidates(50, 50, 16, device)
    full = loss_and_grads(lambda a, b: contrastive_loss(a, b, 0.2), zs, zt)
    bounds = [0, 13, 30, 50]  # uneven "ranks"

    def split(a, b):
        total = 0
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            total = total + (hi - lo) * contrastive_loss(a[lo:hi], torch.roll(b, -lo, 0), 0.2)
        return total / a.size(0)

    for g, r in zip(loss_and_grads(split, zs, zt), full):
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-12)


def test_rectangular_extra_candidates_closed_form(device):
    # Orthonormal rows, plus a copy of candidate 0 as an extra candidate (m = n + 1).
    n, tau = 5, 0.5
    zs = torch.eye(n, dtype=torch.float64, device=device)
    zt = torch.cat([zs, zs[:1]])  # m = n + 1: a duplicate of candidate 0
    base = math.log(math.exp(1 / tau) + n - 1) - 1 / tau
    # Anchor 0 now has its positive twice; every other anchor gains one exp(0) = 1 negative.
    expected = (math.log(2 * math.exp(1 / tau) + n - 1) - 1 / tau
                + (n - 1) * (math.log(math.exp(1 / tau) + n) - 1 / tau)) / n
    assert contrastive_loss(zs, zs, tau).item() == pytest.approx(base, rel=1e-12)
    assert contrastive_loss(zs, zt, tau).item() == pytest.approx(expected, rel=1e-12)


def test_rectangular_bad_input():
    zs, zt = _anchors_candidates(10, 12, 8, "cpu", torch.float32)
    with pytest.raises(ValueError, match="'z_t' must have at least n = 10 rows"):
        contrastive_loss(zs, zt[:9], 0.1)
    with pytest.raises(ValueError, match="symmetric=True 'z_t' must have exactly n = 10 rows"):
        contrastive_loss(zs, zt, 0.1, symmetric=True)
    with pytest.raises(ValueError, match="'z_t' must have"):
        infonce_dense(zs, zt, 0.1, symmetric=True)
    # The op validates on its own (C++ checks.h), forward and backward.
    with pytest.raises(RuntimeError, match="argument 'z_t' must have at least n = 10 rows"):
        op(zs, zt[:9], 0.1, False, "ieee")
    with pytest.raises(RuntimeError, match="symmetric=True argument 'z_t' must have exactly n = 10"):
        op(zs, zt, 0.1, True, "ieee")
    lse = torch.zeros(10)
    with pytest.raises(RuntimeError, match="argument 'z_t' must have at least n = 10 rows"):
        torch.ops.gkd.infonce_backward(torch.ones(()), zs, zt[:9], lse, torch.zeros(0), 0.1,
                                       False, "ieee", True, True)
    with pytest.raises(RuntimeError, match="symmetric=True argument 'z_t'"):
        torch.ops.gkd.infonce_backward(torch.ones(()), zs, zt, lse, lse, 0.1, True, "ieee",
                                       True, True)


def test_bad_input():
    zs, zt = _pair(10, 8, "cpu", torch.float32)
    with pytest.raises(ValueError, match="'z_t' must have at least n = 10"):
        contrastive_loss(zs, zt[:9], 0.1)
    with pytest.raises(ValueError, match="same width"):
        contrastive_loss(zs, zt[:, :7], 0.1)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="temperature"):
            contrastive_loss(zs, zt, bad)
    with pytest.raises(ValueError, match="floating-point"):
        contrastive_loss(zs.long(), zt.long(), 0.1)
    with pytest.raises(RuntimeError, match="z_t"):
        contrastive_loss(zs, zt.double(), 0.1)
    with pytest.raises(ValueError, match="2-D"):
        contrastive_loss(zs[0], zt[0], 0.1)
    with pytest.raises(ValueError, match="no rows"):
        contrastive_loss(zs[:0], zt[:0], 0.1)
    with pytest.raises(ValueError, match="precision"):
        contrastive_loss(zs, zt, 0.1, precision="fp8")
    # The op validates on its own (C++ checks.h), naming the argument.
    with pytest.raises(RuntimeError, match="'temperature'"):
        op(zs, zt, 0.0, False, "ieee")
    with pytest.raises(RuntimeError, match="same width"):
        op(zs, zt[:, :7], 0.1, False, "ieee")
    with pytest.raises(RuntimeError, match="'z_t' has dtype"):
        op(zs, zt.double(), 0.1, False, "ieee")
    with pytest.raises(RuntimeError, match="float32 or float64"):
        op(zs.half(), zt.half(), 0.1, False, "ieee")
    with pytest.raises(RuntimeError, match="'lse_s' must have shape"):
        torch.ops.gkd.infonce_backward(torch.ones(()), zs, zt, torch.zeros(3), torch.zeros(0), 0.1,
                                       False, "ieee", True, True)


def test_gcrd_module_subsets():
    from gkd_ext.losses import GCRDLoss
    crd = GCRDLoss(12, 20, p=16, temperature=0.1).double()
    hs, ht = torch.randn(50, 12, dtype=torch.float64), torch.randn(50, 20, dtype=torch.float64)
    mask = torch.zeros(50, dtype=torch.bool)
    mask[::3] = True
    loss = crd(hs, ht, nodes=mask)
    zs = torch.nn.functional.normalize(crd.proj_s(hs[mask]), dim=1)
    zt = torch.nn.functional.normalize(crd.proj_t(ht[mask]), dim=1)
    torch.testing.assert_close(loss, infonce_dense(zs, zt, 0.1))
    loss.backward()
    assert crd.proj_s[0].weight.grad is not None and crd.proj_t[0].weight.grad is not None
    sub = GCRDLoss(12, 20, p=16, max_samples=10, generator=torch.Generator().manual_seed(1)).double()
    assert torch.isfinite(sub(hs, ht))
    with pytest.raises(ValueError, match="max_samples"):
        GCRDLoss(12, 20, max_samples=0)
    with pytest.raises(ValueError, match="same number of rows"):
        crd(hs, ht[:10])
