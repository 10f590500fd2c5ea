"""gkd::lsp / gkd::lsp_backward, gkd_ext.lsp_loss and gkd_ext.losses.LSPLoss."""
import pytest
import torch

import gkd_ext
from gkd_ext import Graph, LSPLoss, lsp_loss
from gkd_ext.kernels import LSP_KERNELS as KERNELS, LSP_REDUCTIONS as REDUCTIONS
from gkd_ext.reference import lsp_reference_dgl, lsp_reference_pyg
from gkd_ext.testing import NEEDS, assert_low_precision_close, features, grads, random_graph

from conftest import DEVICES

# Parameters that keep every kernel's logits spread out at unit-variance features.
PARAMS = {"rbf": {"gamma": 0.1}, "laplacian": {"sigma": 2.0}}


def make_graph(n=23, e=90, device="cpu", isolated=3):
    """Random square graph; the last `isolated` nodes receive no edge; plus self-loops and
    duplicated edges."""
    return random_graph(n, e, device, isolated=isolated, self_loops=True, duplicates=7)


def assert_close(a, b, rtol=1e-9, atol=1e-11):
    torch.testing.assert_close(a, b, rtol=rtol, atol=atol)


# ------------------------------------------------------------------ forward + gradients
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("kernel", KERNELS)
def test_matches_references(device, kernel, reduction):
    g = make_graph(device=device)
    hs, ht = features(g.num_dst, 6, device), features(g.num_dst, 11, device)  # D_s != D_t
    p = PARAMS.get(kernel, {})
    out = lsp_loss(g, hs, ht, kernel, reduction, **p)
    ref_pyg = lsp_reference_pyg(g, hs, ht, kernel, reduction, **p)
    ref_dgl = lsp_reference_dgl(g, hs, ht, kernel, reduction, **p)
    assert out.shape == ref_pyg.shape
    assert_close(out, ref_pyg)
    assert_close(out, ref_dgl)
    for got, want in zip(grads(out, hs, ht), grads(ref_dgl, hs, ht)):
        assert_close(got, want)


@pytest.mark.parametrize("backend", ["torch", "torch_scatter"])
def test_pyg_style_edge_mean(backend):
    """The efficient-gnns setting: rbf kernel, F.kl_div(..., 'mean') over edges."""
    if backend == "torch_scatter":
        pytest.importorskip("torch_scatter")
    g = make_graph(n=40, e=200)
    hs, ht = features(40, 16, "cpu"), features(40, 8, "cpu", grad=False)
    out = lsp_loss(g, hs, ht, "rbf", "edge_mean", gamma=0.05)
    ref = lsp_reference_pyg(g, hs, ht, "rbf", "edge_mean", backend=backend, gamma=0.05)
    assert_close(out, ref)
    assert_close(grads(out, hs)[0], grads(ref, hs)[0])


def test_dgl_style_node_mean():
    """The original LSP / Alignahead setting: L1 kernel, sigma = 100, mean over nodes."""
    g = make_graph(n=40, e=200)
    hs, ht = features(40, 16, "cpu", scale=30.0), features(40, 16, "cpu", scale=30.0)
    out = lsp_loss(g, hs, ht, "laplacian", "node_mean")
    ref = lsp_reference_dgl(g, hs, ht)
    assert_close(out, ref)
    for got, want in zip(grads(out, hs, ht), grads(ref, hs, ht)):
        assert_close(got, want)


@pytest.mark.parametrize("kernel", KERNELS)
def test_float32(device, kernel):
    g = make_graph(n=60, e=500, device=device)
    hs64, ht64 = features(60, 33, device), features(60, 20, device)
    hs, ht = hs64.detach().float().requires_grad_(), ht64.detach().float().requires_grad_()
    p = PARAMS.get(kernel, {})
    out = lsp_loss(g, hs, ht, kernel, "none", **p)
    ref = lsp_reference_dgl(g, hs64, ht64, kernel, "none", **p)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.double(), ref, rtol=1e-4, atol=1e-5)
    for got, want in zip(grads(out, hs, ht), grads(ref, hs64, ht64)):
        torch.testing.assert_close(got.double(), want, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("kernel", KERNELS)
def test_gradcheck(device, kernel):
    g = make_graph(n=7, e=16, device=device, isolated=1)
    hs, ht = features(7, 3, device), features(7, 4, device)
    p = PARAMS.get(kernel, {})
    assert torch.autograd.gradcheck(lambda a, b: lsp_loss(g, a, b, kernel, "none", **p), (hs, ht))


def test_teacher_requires_grad_or_not(device):
    g = make_graph(device=device)
    hs, ht = features(g.num_dst, 5, device), features(g.num_dst, 5, device, grad=False)
    lsp_loss(g, hs, ht, "laplacian", sigma=1.0).backward()
    assert hs.grad is not None and ht.grad is None
    hs2 = hs.detach().clone().requires_grad_()
    ht2 = ht.detach().clone().requires_grad_()
    lsp_loss(g, hs2, ht2, "laplacian", sigma=1.0).backward()
    assert_close(hs2.grad, hs.grad)  # the student's gradient does not depend on need_t
    ref = lsp_reference_dgl(g, hs2, ht2, "laplacian", sigma=1.0)
    assert_close(ht2.grad, grads(ref, ht2)[0])
    # Teacher only.
    hs3 = hs.detach().clone()
    ht3 = ht.detach().clone().requires_grad_()
    lsp_loss(g, hs3, ht3, "laplacian", sigma=1.0).backward()
    assert_close(ht3.grad, ht2.grad)


def test_deterministic(device):
    g = make_graph(n=300, e=6000, device=device)
    hs, ht = features(300, 40, device, dtype=torch.float32), features(300, 24, device, dtype=torch.float32)
    runs = [grads(lsp_loss(g, hs, ht, "cosine"), hs, ht) for _ in range(2)]
    for a, b in zip(*runs):
        assert torch.equal(a, b)


# ------------------------------------------------------------------ edge cases
def test_zero_edges(device):
    g = Graph.from_edge_index(torch.empty(2, 0, dtype=torch.long), 5).to(device)
    hs, ht = features(5, 4, device), features(5, 3, device)
    for red in REDUCTIONS:
        out = lsp_loss(g, hs, ht, "rbf", red)
        assert torch.all(out == 0)
    gs, gt = grads(lsp_loss(g, hs, ht, "rbf", "sum"), hs, ht)
    assert torch.all(gs == 0) and torch.all(gt == 0)


def test_zero_nodes(device):
    g = Graph.from_edge_index(torch.empty(2, 0, dtype=torch.long), 0).to(device)
    hs, ht = features(0, 4, device), features(0, 4, device)
    assert lsp_loss(g, hs, ht, "rbf", "none").shape == (0,)
    assert float(lsp_loss(g, hs, ht, "rbf", "node_mean").detach()) == 0.0


def test_isolated_nodes_are_zero(device):
    g = make_graph(device=device, isolated=4)
    hs, ht = features(g.num_dst, 5, device), features(g.num_dst, 5, device)
    kl = lsp_loss(g, hs, ht, "linear", "none")
    assert torch.all(kl[-4:] == 0) and torch.all(kl[:-4] >= -1e-12)
    assert float(kl[:-4].detach().abs().sum()) > 0


def test_self_loops_and_duplicates_only(device):
    # Every node: a self-loop and the same neighbour twice. l2 at a == b has gradient 0.
    n = 6
    i = torch.arange(n)
    src = torch.cat([i, (i + 1) % n, (i + 1) % n])
    dst = torch.cat([i, i, i])
    g = Graph.from_edge_index(torch.stack([src, dst]), n).to(device)
    for kernel in KERNELS:
        hs, ht = features(n, 4, device), features(n, 7, device)
        out = lsp_loss(g, hs, ht, kernel, "sum", **PARAMS.get(kernel, {}))
        ref = lsp_reference_pyg(g, hs, ht, kernel, "sum", **PARAMS.get(kernel, {}))
        assert_close(out, ref)
        for got, want in zip(grads(out, hs, ht), grads(ref, hs, ht)):
            assert_close(got, want)


def test_single_node(device):
    g = Graph.from_edge_index(torch.tensor([[0], [0]]), 1).to(device)
    hs, ht = features(1, 3, device), features(1, 3, device)
    out = lsp_loss(g, hs, ht, "rbf", "sum")  # one edge: both softmaxes are 1, KL = 0
    assert float(out.detach()) == 0.0
    assert torch.all(grads(out, hs)[0] == 0)


def test_non_contiguous(device):
    g = make_graph(device=device)
    n = g.num_dst
    big_s = torch.randn(n, 12, dtype=torch.float64, device=device)
    big_t = torch.randn(9, n, dtype=torch.float64, device=device)
    hs = big_s[:, ::2].requires_grad_()   # strided columns
    ht = big_t.t().requires_grad_()       # transposed
    assert not hs.is_contiguous() and not ht.is_contiguous()
    out = lsp_loss(g, hs, ht, "poly", "node_mean")
    ref = lsp_reference_dgl(g, hs.contiguous(), ht.contiguous(), "poly", "node_mean")
    assert_close(out, ref)
    for got, want in zip(grads(out, hs, ht), grads(ref, hs, ht)):
        assert_close(got, want)


@pytest.mark.parametrize("kernel", ["rbf", "linear", "l2"])
def test_hub_with_100k_incoming_edges(kernel):
    n, e = 1000, 100_000
    gen = torch.Generator().manual_seed(1)
    src = torch.cat([torch.randint(0, n, (e,), generator=gen), torch.arange(1, n)])
    dst = torch.cat([torch.zeros(e, dtype=torch.long), torch.randint(1, n, (n - 1,), generator=gen)])
    g = Graph.from_edge_index(torch.stack([src, dst]), n)
    hs, ht = features(n, 8, "cpu"), features(n, 8, "cpu")
    p = PARAMS.get(kernel, {})
    out = lsp_loss(g, hs, ht, kernel, "none", **p)
    ref = lsp_reference_dgl(g, hs, ht, kernel, "none", **p)
    assert_close(out, ref, rtol=1e-8, atol=1e-10)
    assert_close(grads(out, hs)[0], grads(ref, hs)[0], rtol=1e-7, atol=1e-12)
    out32 = lsp_loss(g, hs.detach().float(), ht.detach().float(), kernel, "none", **p)
    torch.testing.assert_close(out32.double(), ref.detach(), rtol=2e-3, atol=1e-4)


@pytest.mark.parametrize("kernel", ["linear", "l2", "rbf", "cosine"])
def test_large_logits(device, kernel):
    g = make_graph(n=50, e=400, device=device)
    hs, ht = features(50, 16, device, scale=300.0), features(50, 16, device, scale=300.0)
    out = lsp_loss(g, hs, ht, kernel, "none")
    ref = lsp_reference_dgl(g, hs, ht, kernel, "none")
    assert torch.isfinite(out).all()
    if kernel == "linear":
        assert float(ref.detach().max()) > 1e4  # the logits really are large
    scale = max(1.0, float(ref.detach().abs().max()))
    torch.testing.assert_close(out, ref, rtol=1e-7, atol=1e-7 * scale)
    gs, gt = grads(out, hs, ht)
    rs, rt = grads(ref, hs, ht)
    for got, want in ((gs, rs), (gt, rt)):
        assert torch.isfinite(got).all()
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6 * max(1.0, float(want.abs().max())))
    out32 = lsp_loss(g, hs.detach().float(), ht.detach().float(), kernel, "none")
    assert torch.isfinite(out32).all()
    hs32 = hs.detach().float().requires_grad_()
    lsp_loss(g, hs32, ht.detach().float(), kernel, "sum").backward()
    assert torch.isfinite(hs32.grad).all()


# ------------------------------------------------------------------ low precision (CUDA)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("device", [p for p in DEVICES if not isinstance(p, str)], indirect=True)
def test_low_precision_cuda(device, dtype):
    """err(kernel vs fp64) <= 2 err(same math in PyTorch at that precision vs fp64) + eps."""
    g = make_graph(n=200, e=3000, device=device)
    hs, ht = features(200, 64, device), features(200, 48, device)
    ref = lsp_reference_dgl(g, hs, ht, "cosine", "none")
    lo_s, lo_t = hs.detach().to(dtype).requires_grad_(), ht.detach().to(dtype).requires_grad_()
    out = lsp_loss(g, lo_s, lo_t, "cosine", "none")
    torch_lo = lsp_reference_dgl(g, lo_s.float().to(dtype), lo_t.float().to(dtype), "cosine", "none")
    assert_low_precision_close(out, ref, torch_lo)
    gs = grads(out, lo_s)[0]
    assert torch.isfinite(gs.float()).all()
    torch.testing.assert_close(gs.double(), grads(ref, hs)[0], rtol=5e-2, atol=5e-3)


# ------------------------------------------------------------------ op registration
def _op_args(device, dtype=torch.float64, grad=True):
    g = make_graph(n=12, e=40, device=device, isolated=2)
    hs, ht = features(12, 5, device, dtype, grad=grad), features(12, 3, device, dtype, grad=grad)
    return g, hs, ht


@pytest.mark.parametrize("kernel", ["rbf", "laplacian", "cosine"])
def test_opcheck_forward(device, kernel):
    g, hs, ht = _op_args(device)
    args = (g.rowptr, g.col, hs, ht, kernel, 0.7, *g.transpose())
    torch.library.opcheck(torch.ops.gkd.lsp.default, args)


@pytest.mark.parametrize("need", NEEDS)
def test_opcheck_backward(device, need):
    g, hs, ht = _op_args(device, grad=False)
    _, stats, logits = torch.ops.gkd.lsp(g.rowptr, g.col, hs, ht, "l2", 1.0)
    gkl = torch.randn(12, dtype=torch.float64, device=device)
    args = (g.rowptr, g.col, hs, ht, stats, logits, gkl, "l2", 1.0, *g.transpose(), *need)
    torch.library.opcheck(torch.ops.gkd.lsp_backward.default, args)


def test_torch_compile_fullgraph(device):
    g, hs, ht = _op_args(device, dtype=torch.float32)
    g.transpose()  # cached before compiling: the compiled region reads it, never builds it

    @torch.compile(fullgraph=True)
    def step(a, b):
        return lsp_loss(g, a, b, "rbf", "node_mean", gamma=0.3) * 2.0

    loss = step(hs, ht)
    ga, gb = torch.autograd.grad(loss, (hs, ht))  # runs the AOT-compiled backward graph
    ref = lsp_loss(g, hs, ht, "rbf", "node_mean", gamma=0.3) * 2.0
    rga, rgb = torch.autograd.grad(ref, (hs, ht))
    torch.testing.assert_close(loss, ref)
    torch.testing.assert_close(ga, rga)
    torch.testing.assert_close(gb, rgb)
    assert float(ga.abs().sum()) > 0 and float(gb.abs().sum()) > 0


# ------------------------------------------------------------------ module
def test_module_matches_functional(device):
    g, hs, ht = _op_args(device)
    m = LSPLoss("laplacian", "edge_mean", sigma=3.0)
    assert "sigma=3.0" in repr(m)
    assert_close(m(hs, ht, g), lsp_loss(g, hs, ht, "laplacian", "edge_mean", sigma=3.0))
    assert_close(m(hs, ht, graph=g.edge_index), m(hs, ht, graph=g))   # a PyG edge_index works
    assert gkd_ext.losses.LSPLoss is LSPLoss


def test_module_restricted_to_nodes(device):
    g, hs, ht = _op_args(device)
    nodes = torch.arange(0, g.num_dst, 2, device=device)
    per_node = lsp_loss(g, hs, ht, "rbf", "none")
    assert_close(LSPLoss("rbf", "node_mean")(hs, ht, g, nodes=nodes), per_node[nodes].mean())
    assert_close(LSPLoss("rbf", "sum")(hs, ht, g, nodes=nodes), per_node[nodes].sum())
    indeg = g.degree("in")[nodes].sum().to(per_node.dtype)
    assert_close(LSPLoss("rbf", "edge_mean")(hs, ht, g, nodes=nodes), per_node[nodes].sum() / indeg)
    with pytest.raises(TypeError, match="'graph' is required"):
        LSPLoss()(hs, ht)


def test_module_bad_construction():
    with pytest.raises(ValueError, match="'kernel'"):
        LSPLoss("gaussian")
    with pytest.raises(ValueError, match="'reduction'"):
        LSPLoss("rbf", "batchmean")
    with pytest.raises(ValueError, match="'gamma'.*> 0"):
        LSPLoss("rbf", gamma=-1.0)
    with pytest.raises(ValueError, match="unknown kernel parameter"):
        LSPLoss("cosine", gamma=0.5)


# ------------------------------------------------------------------ bad input
def test_bad_input_python():
    g = make_graph()
    n = g.num_dst
    hs, ht = torch.randn(n, 4), torch.randn(n, 4)
    with pytest.raises(TypeError, match="'graph' must be a gkd_ext.Graph"):
        lsp_loss(g.edge_index, hs, ht)
    with pytest.raises(ValueError, match="'h_teacher' must have N = "):
        lsp_loss(g, hs, ht[:-1])
    with pytest.raises(ValueError, match="'h_student' must have N = "):
        lsp_loss(g, hs[:-1], ht)
    with pytest.raises(ValueError, match="'kernel' must be one of"):
        lsp_loss(g, hs, ht, kernel="gauss")
    with pytest.raises(ValueError, match="'reduction' must be one of"):
        lsp_loss(g, hs, ht, reduction="mean")
    with pytest.raises(ValueError, match="'gamma' of the rbf kernel must be a finite number > 0"):
        lsp_loss(g, hs, ht, "rbf", gamma=0.0)
    with pytest.raises(ValueError, match="'sigma' of the laplacian kernel must be a finite number > 0"):
        lsp_loss(g, hs, ht, "laplacian", sigma=-2.0)
    with pytest.raises(ValueError, match="unknown kernel parameter"):
        lsp_loss(g, hs, ht, "rbf", sigma=1.0)
    with pytest.raises(ValueError, match="'h_teacher' has dtype torch.float64"):
        lsp_loss(g, hs, ht.double())
    with pytest.raises(ValueError, match="'h_student' must be a floating-point tensor"):
        lsp_loss(g, hs.long(), ht)
    with pytest.raises(ValueError, match="'h_student' must be 2-D"):
        lsp_loss(g, hs[:, 0], ht)
    with pytest.raises(RuntimeError, match="must be on the graph's device"):
        lsp_loss(g, hs.to("meta"), ht)
    rect = Graph.from_edge_index(torch.tensor([[0, 1], [0, 2]]), (2, 3))
    with pytest.raises(ValueError, match="must be square"):
        lsp_loss(rect, torch.randn(3, 4), torch.randn(3, 4))


def test_bad_input_op():
    g = make_graph()
    n = g.num_dst
    hs, ht = torch.randn(n, 4), torch.randn(n, 4)
    op = torch.ops.gkd.lsp
    with pytest.raises(RuntimeError, match="argument 'kernel' must be one of"):
        op(g.rowptr, g.col, hs, ht, "gauss", 1.0)
    with pytest.raises(RuntimeError, match=r"'param' \(gamma of the rbf kernel\) must be a finite number > 0"):
        op(g.rowptr, g.col, hs, ht, "rbf", -1.0)
    with pytest.raises(RuntimeError, match="only square graphs are supported"):
        op(g.rowptr, g.col, hs[:-1], ht[:-1], "rbf", 1.0)
    with pytest.raises(RuntimeError, match="argument 'h_t' has dtype"):
        op(g.rowptr, g.col, hs, ht.double(), "rbf", 1.0)
    with pytest.raises(RuntimeError, match="argument 'h_s' must be float32 or float64 on CPU"):
        op(g.rowptr, g.col, hs.half(), ht.half(), "rbf", 1.0)
    with pytest.raises(RuntimeError, match="argument 'col' must be int64"):
        op(g.rowptr, g.col.int(), hs, ht, "rbf", 1.0)
    _, stats, logits = op(g.rowptr, g.col, hs, ht, "rbf", 1.0)
    bwd = torch.ops.gkd.lsp_backward
    gkl = torch.ones(n)
    with pytest.raises(RuntimeError, match="need the transposed graph"):
        bwd(g.rowptr, g.col, hs, ht, stats, logits, gkl, "rbf", 1.0, None, None, None, True, False)
    with pytest.raises(RuntimeError, match="argument 'stats' must be the Float"):
        bwd(g.rowptr, g.col, hs, ht, stats[:, :2], logits, gkl, "rbf", 1.0, *g.transpose(), True, False)
    with pytest.raises(RuntimeError, match="argument 'grad_kl' must have shape"):
        bwd(g.rowptr, g.col, hs, ht, stats, logits, gkl[:-1], "rbf", 1.0, *g.transpose(), True, False)
    with pytest.raises(RuntimeError, match="argument 'edge_logits' must be the Float"):
        bwd(g.rowptr, g.col, hs, ht, stats, logits[:-1], gkl, "rbf", 1.0, *g.transpose(), True, False)
    t_rowptr, t_col, t_perm = g.transpose()
    with pytest.raises(RuntimeError, match="'t_col' and 't_perm' must have E"):
        bwd(g.rowptr, g.col, hs, ht, stats, logits, gkl, "rbf", 1.0, t_rowptr, t_col[:-1], t_perm, True, False)
