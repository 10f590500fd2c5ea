"""gkd::spmm and gkd::sddmm against the pure-PyTorch references."""
import pytest
import torch

import gkd_ext
from gkd_ext import Graph
from gkd_ext.kernels import SPMM_REDUCES as REDUCES
from gkd_ext.reference import sddmm_reference, spmm_reference
from gkd_ext.testing import assert_low_precision_close, random_graph

from conftest import DEVICES


@pytest.mark.parametrize("reduce", REDUCES)
@pytest.mark.parametrize("D", [1, 7, 33, 128, 130])
@pytest.mark.parametrize("with_value", [False, True])
def test_forward_matches_reference(device, reduce, D, with_value):
    g = random_graph((37, 45), 301, device)
    x = torch.randn(37, D, device=device)
    v = torch.rand(g.num_edges, device=device) + 0.5 if with_value else None
    out = gkd_ext.spmm(g, x, v, reduce=reduce)
    ref = spmm_reference(g, x, v, reduce=reduce)
    assert out.shape == (45, D)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("reduce", REDUCES)
def test_multihead_forward_and_3d_input(device, reduce):
    g = random_graph((20, 20), 120, device)
    H, F = 3, 5
    x = torch.randn(20, H, F, device=device)
    v = torch.randn(g.num_edges, H, device=device)
    out = gkd_ext.spmm(g, x, v, reduce=reduce)
    assert out.shape == (20, H, F)
    torch.testing.assert_close(out, spmm_reference(g, x, v, reduce=reduce), rtol=1e-5, atol=1e-5)
    out2 = gkd_ext.spmm(g, x.reshape(20, H * F), v, reduce=reduce)
    torch.testing.assert_close(out2, out.reshape(20, H * F))


@pytest.mark.parametrize("reduce", REDUCES)
@pytest.mark.parametrize("heads", [1, 2])
def test_gradcheck_x_and_values(device, reduce, heads):
    g = random_graph((9, 11), 40, device)
    x = torch.randn(9, 2 * 3, dtype=torch.float64, device=device, requires_grad=True)
    shape = (g.num_edges,) if heads == 1 else (g.num_edges, heads)
    v = torch.randn(*shape, dtype=torch.float64, device=device, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, v: gkd_ext.spmm(g, x, v, reduce=reduce), (x, v))
    # each gradient alone (the op skips the other)
    assert torch.autograd.gradcheck(lambda x: gkd_ext.spmm(g, x, v.detach(), reduce=reduce), (x,))
    assert torch.autograd.gradcheck(lambda v: gkd_ext.spmm(g, x.detach(), v, reduce=reduce), (v,))


@pytest.mark.parametrize("reduce", REDUCES)
@pytest.mark.parametrize("D,dtype", [(19, torch.float32), (128, torch.float32), (64, torch.float64),
                                     (130, torch.float64)])
def test_gradients_match_reference(device, reduce, D, dtype):
    # widths that are and are not multiples of the CPU kernels' register blocks
    g = random_graph((30, 25), 200, device)
    x = torch.randn(30, D, device=device, dtype=dtype, requires_grad=True)
    v = torch.rand(g.num_edges, device=device, dtype=dtype, requires_grad=True)
    go = torch.randn(25, D, device=device, dtype=dtype)
    gx, gv = torch.autograd.grad(gkd_ext.spmm(g, x, v, reduce=reduce), (x, v), go)
    rx, rv = torch.autograd.grad(spmm_reference(g, x, v, reduce=reduce), (x, v), go)
    torch.testing.assert_close(gx, rx, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(gv, rv, rtol=1e-4, atol=1e-5)


def test_backward_is_deterministic(device):
    g = random_graph((50, 50), 2000, device)
    x = torch.randn(50, 64, device=device, requires_grad=True)
    v = torch.rand(g.num_edges, device=device, requires_grad=True)
    go = torch.randn(50, 64, device=device)
    first = torch.autograd.grad(gkd_ext.spmm(g, x, v), (x, v), go)
    for _ in range(3):
        again = torch.autograd.grad(gkd_ext.spmm(g, x, v), (x, v), go)
        assert all(torch.equal(a, b) for a, b in zip(first, again))


def test_opcheck(device):
    g = random_graph((12, 10), 50, device)
    t = g.transpose()
    x = torch.randn(12, 8, device=device, requires_grad=True)
    v = torch.rand(g.num_edges, device=device, requires_grad=True)
    for reduce in REDUCES:
        torch.library.opcheck(torch.ops.gkd.spmm, (g.rowptr, g.col, v, x, reduce, *t))
        torch.library.opcheck(torch.ops.gkd.spmm, (g.rowptr, g.col, None, x, reduce, *t))
        out, arg = torch.ops.gkd.spmm(g.rowptr, g.col, v, x, reduce)
        go = torch.randn_like(out)
        torch.library.opcheck(torch.ops.gkd.spmm_backward,
                              (g.rowptr, g.col, v.detach(), x.detach(), go, arg, reduce, *t, True, True))
    a = torch.randn(10, 8, device=device, requires_grad=True)
    torch.library.opcheck(torch.ops.gkd.sddmm, (g.rowptr, g.col, a, x, 2, *t))


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_torch_compile_fullgraph(device, backend):
    g = random_graph((40, 40), 300, device)
    g.transpose()  # built eagerly, so the compiled region only calls the ops

    def step(x, v):
        h = gkd_ext.spmm(g, x, v, reduce="sum")
        return (gkd_ext.spmm(g, torch.relu(h), v, reduce="mean") ** 2).sum()

    x = torch.randn(40, 16, device=device, requires_grad=True)
    v = torch.rand(g.num_edges, device=device, requires_grad=True)
    compiled = torch.compile(step, fullgraph=True, backend=backend)
    loss = compiled(x, v)
    gx, gv = torch.autograd.grad(loss, (x, v))
    ex, ev = torch.autograd.grad(step(x, v), (x, v))
    torch.testing.assert_close(gx, ex, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gv, ev, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------ edge cases
@pytest.mark.parametrize("reduce", REDUCES)
def test_zero_edges(device, reduce):
    g = Graph.from_edge_index(torch.empty(2, 0, dtype=torch.long, device=device), 5)
    x = torch.randn(5, 4, device=device, requires_grad=True)
    v = torch.empty(0, device=device, requires_grad=True)
    out = gkd_ext.spmm(g, x, v, reduce=reduce)
    assert torch.equal(out, torch.zeros(5, 4, device=device))
    gx, gv = torch.autograd.grad(out.sum(), (x, v))
    assert torch.equal(gx, torch.zeros_like(x)) and gv.shape == (0,)


@pytest.mark.parametrize("reduce", REDUCES)
def test_isolated_rows_self_loops_duplicates(device, reduce):
    # node 3 has no incoming edge; 0->0 is a self-loop; 1->2 appears twice
    ei = torch.tensor([[0, 1, 1, 2, 0], [0, 2, 2, 1, 1]], device=device)
    g = Graph.from_edge_index(ei, 4)
    x = torch.randn(4, 3, dtype=torch.float64, device=device, requires_grad=True)
    v = torch.rand(g.num_edges, dtype=torch.float64, device=device, requires_grad=True)
    out = gkd_ext.spmm(g, x, v, reduce=reduce)
    torch.testing.assert_close(out, spmm_reference(g, x, v, reduce=reduce))
    assert torch.equal(out[3], torch.zeros(3, dtype=torch.float64, device=device))
    if reduce == "sum":
        i = (g.row == 2).nonzero().view(-1)
        torch.testing.assert_close(out[2], (v[i, None] * x[1]).sum(0))
    assert torch.autograd.gradcheck(lambda x, v: gkd_ext.spmm(g, x, v, reduce=reduce), (x, v))


def test_rectangular_and_single_node(device):
    g = random_graph((7, 3), 20, device)
    x = torch.randn(7, 5, device=device)
    torch.testing.assert_close(gkd_ext.spmm(g, x), spmm_reference(g, x))
    one = Graph.from_edge_index(torch.tensor([[0], [0]], device=device), 1)
    torch.testing.assert_close(gkd_ext.spmm(one, torch.full((1, 2), 3.0, device=device)),
                               torch.full((1, 2), 3.0, device=device))


def test_non_contiguous_inputs(device):
    g = random_graph((16, 16), 90, device)
    base = torch.randn(10, 16, device=device, requires_grad=True)
    x = base.t()  # [16, 10], not contiguous
    vbase = torch.rand(g.num_edges, 2, device=device, requires_grad=True)
    v = vbase[:, 0]
    assert not x.is_contiguous() and not v.is_contiguous()
    out = gkd_ext.spmm(g, x, v)
    torch.testing.assert_close(out, spmm_reference(g, x.contiguous(), v.contiguous()))
    out.sum().backward()
    assert base.grad is not None and vbase.grad is not None


def test_edge_values_follow_input_order(device):
    ei = torch.tensor([[2, 0, 1], [0, 1, 0]], device=device)   # edges given unsorted
    w = torch.tensor([10.0, 20.0, 30.0], device=device)
    g = Graph.from_edge_index(ei, 3, value=w)
    x = torch.eye(3, device=device)
    out = gkd_ext.spmm(g, x)           # uses g.value, permuted into graph order once
    assert out[0, 2] == 10.0 and out[0, 1] == 30.0 and out[1, 0] == 20.0
    assert torch.equal(g.value, w[g.perm])


def test_matches_torch_sparse(device):
    g = random_graph((60, 50), 500, device)
    x = torch.randn(60, 24, device=device)
    v = torch.rand(g.num_edges, device=device)
    adj = torch.sparse_coo_tensor(torch.stack([g.row, g.col]), v, (50, 60))
    torch.testing.assert_close(gkd_ext.spmm(g, x, v), (adj @ x), rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------ sddmm
@pytest.mark.parametrize("heads", [1, 4])
def test_sddmm(device, heads):
    g = random_graph((13, 17), 90, device)
    a = torch.randn(17, 4 * 3, dtype=torch.float64, device=device, requires_grad=True)
    b = torch.randn(13, 4 * 3, dtype=torch.float64, device=device, requires_grad=True)
    out = gkd_ext.sddmm(g, a, b, heads=heads)
    torch.testing.assert_close(out, sddmm_reference(g, a, b, heads))
    assert torch.autograd.gradcheck(lambda a, b: gkd_ext.sddmm(g, a, b, heads=heads), (a, b))
    assert gkd_ext.sddmm(g, a, b).shape == (g.num_edges,)
    a3, b3 = a.detach().view(17, 4, 3), b.detach().view(13, 4, 3)
    torch.testing.assert_close(gkd_ext.sddmm(g, a3, b3), sddmm_reference(g, a, b, 4))


# ------------------------------------------------------------------ low precision (CUDA)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("device", [p for p in DEVICES if not isinstance(p, str)], indirect=True)
def test_low_precision_cuda(device, dtype):
    """err(kernel vs fp64) <= 2 err(same math in PyTorch at that precision vs fp64) + eps."""
    g = random_graph((500, 500), 8000, device)
    x = torch.randn(500, 64, device=device)
    v = torch.rand(g.num_edges, device=device)
    exact = spmm_reference(g, x.double(), v.double())
    ours = gkd_ext.spmm(g, x.to(dtype), v.to(dtype)).double()
    torch_lp = spmm_reference(g, x.to(dtype), v.to(dtype)).double()
    assert_low_precision_close(ours, exact, torch_lp)


# ------------------------------------------------------------------ bad input
def test_bad_input_messages():
    g = random_graph((5, 5), 10, "cpu")
    x = torch.randn(5, 4)
    with pytest.raises(ValueError, match="'x' must have num_src = 5 rows"):
        gkd_ext.spmm(g, torch.randn(6, 4))
    with pytest.raises(RuntimeError, match="'value' must have shape \\[E\\] or \\[E, H\\] with E = 10"):
        gkd_ext.spmm(g, x, torch.rand(9))
    with pytest.raises(RuntimeError, match="'value' has dtype Double but 'x' has dtype Float"):
        gkd_ext.spmm(g, x, torch.rand(10, dtype=torch.float64))
    with pytest.raises(RuntimeError, match="must be float32 or float64 on CPU"):
        gkd_ext.spmm(g, x.half())
    with pytest.raises(ValueError, match="'reduce' must be one of"):
        gkd_ext.spmm(g, x, reduce="min")
    with pytest.raises(RuntimeError, match="must be on the graph's device"):
        gkd_ext.spmm(g, torch.randn(5, 4, device="meta"))
    with pytest.raises(TypeError, match="'graph' must be a gkd_ext.Graph"):
        gkd_ext.spmm(torch.zeros(2, 3, dtype=torch.long), x)
    with pytest.raises(RuntimeError, match="heads the feature width of 'x' \\(4\\) must be divisible by H"):
        gkd_ext.spmm(g, x, torch.rand(10, 3))


def test_bad_csr_structure():
    x = torch.randn(3, 2)
    col = torch.tensor([0, 1, 2])
    with pytest.raises(RuntimeError, match="'rowptr' must be int64"):
        torch.ops.gkd.spmm(torch.tensor([0, 1, 3], dtype=torch.int32), col, None, x, "sum")
    with pytest.raises(RuntimeError, match="'rowptr' must be a 1-D tensor of length N_dst \\+ 1"):
        torch.ops.gkd.spmm(torch.empty(0, dtype=torch.long), col, None, x, "sum")
    with pytest.raises(RuntimeError, match="'reduce' must be one of 'sum', 'mean', 'max'"):
        torch.ops.gkd.spmm(torch.tensor([0, 3]), col, None, x, "prod")
    with pytest.raises(ValueError, match="'rowptr' must be non-decreasing"):
        Graph(torch.tensor([0, 2, 1, 3]), col, num_src=3)
    with pytest.raises(ValueError, match="must start at 0 and end at E = 3"):
        Graph(torch.tensor([0, 1, 2]), col, num_src=3)
    with pytest.raises(ValueError, match="col \\(sources\\) must lie in \\[0, 2\\)"):
        Graph(torch.tensor([0, 1, 3]), col, num_src=2)
    with pytest.raises(ValueError, match="edge_index\\[0\\] \\(sources\\) must lie in \\[0, 3\\)"):
        Graph.from_edge_index(torch.tensor([[0, 5], [1, 1]]), 3)
    with pytest.raises(ValueError, match="edge_index\\[1\\] \\(targets\\) must lie in \\[0, 3\\)"):
        Graph.from_edge_index(torch.tensor([[0, 1], [-1, 1]]), 3)
    with pytest.raises(ValueError, match="'edge_index' must have shape \\[2, E\\]"):
        Graph.from_edge_index(torch.zeros(3, 4, dtype=torch.long))
    with pytest.raises(TypeError, match="must be an int64 or int32 tensor"):
        Graph.from_edge_index(torch.zeros(2, 4))


def test_transpose_needed_for_x_gradient():
    g = random_graph((5, 5), 10, "cpu")
    x, go = torch.randn(5, 4), torch.randn(5, 4)
    with pytest.raises(RuntimeError, match="needs the transposed graph"):
        torch.ops.gkd.spmm_backward(g.rowptr, g.col, None, x, go, torch.empty(0, dtype=torch.long),
                                    "sum", None, None, None, True, False)


def test_cuda_tensor_on_cpu_only_build_is_explained():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA; the CPU-only message cannot be provoked")
    if gkd_ext.functional.has_cuda_kernels():
        pytest.skip("this build has CUDA kernels")
    # Without a GPU no CUDA tensor can exist; the check itself is exercised through its helper.
    g = random_graph((3, 3), 4, "cpu")

    class FakeCuda:
        is_cuda = True
        device = g.device
    with pytest.raises(RuntimeError, match="CPU kernels only"):
        gkd_ext.functional._check_device("spmm", g, FakeCuda())


def test_sddmm_bad_input_messages():
    g = random_graph((5, 4), 10, "cpu")
    a, b = torch.randn(4, 6), torch.randn(5, 6)
    with pytest.raises(ValueError, match="'a' needs num_dst = 4 rows and 'b' num_src = 5 rows"):
        gkd_ext.sddmm(g, b, a)
    with pytest.raises(RuntimeError, match="argument 'heads' must be >= 1 and divide D = 6"):
        gkd_ext.sddmm(g, a, b, heads=4)
    with pytest.raises(RuntimeError, match="'a' and 'b' must have the same width"):
        torch.ops.gkd.sddmm(g.rowptr, g.col, a, torch.randn(5, 3), 1)
    with pytest.raises(RuntimeError, match="argument 'b' has dtype Double but 'a' has dtype Float"):
        gkd_ext.sddmm(g, a, b.double())
