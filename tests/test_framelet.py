"""The framelet transform (gkd_ext.framelet) and the framelet models (gkd_ext.nn.framelet)
against dense eigendecompositions on small graphs."""
import math

import numpy as np
import pytest
import torch

from gkd_ext import Graph
from gkd_ext.data import undirected_graph
from gkd_ext.framelet import (FILTER_BANKS, FILTER_NAMES, FrameletTransform, chebyshev_coefficients,
                              chebyshev_eval, element_responses, frame_error, laplacian_lambda_max)
from gkd_ext.nn import build_model, framelet_operators


def small_graph(n=30, m=80, seed=0, isolated=0):
    gen = torch.Generator().manual_seed(seed)
    src = torch.randint(0, n - isolated, (m,), generator=gen)
    dst = torch.randint(0, n - isolated, (m,), generator=gen)
    return undirected_graph(src, dst, n)


def dense_laplacian(graph):
    n = graph.num_dst
    A = torch.zeros(n, n, dtype=torch.float64)
    ei = graph.edge_index
    keep = ei[0] != ei[1]
    A[ei[1, keep], ei[0, keep]] = 1
    d = A.sum(1)
    dinv = torch.where(d > 0, d.pow(-0.5), torch.zeros_like(d))
    return A, torch.eye(n, dtype=torch.float64) - dinv[:, None] * A * dinv[None, :]


def dense_operators(graph, filters, order, levels, scale, lambda_max, exact=False):
    """Every frame element as a dense matrix V diag(response) V^T."""
    _, L = dense_laplacian(graph)
    lam, V = torch.linalg.eigh(L)
    resp = element_responses(filters, order, levels, scale, (lam / lambda_max).numpy(), exact=exact)
    return [V @ torch.diag(torch.from_numpy(r)) @ V.T for r in resp]


def test_chebyshev_coefficients_against_adaptive_quadrature():
    from scipy.integrate import quad
    a = math.pi / 2
    for name, bank in FILTER_BANKS.items():
        for g in bank:
            got = chebyshev_coefficients(g, 9)
            want = [2 / math.pi * quad(lambda t: math.cos(k * t) * float(g(np.float64(a * (math.cos(t) + 1)))),
                                       0, math.pi, epsabs=1e-13, epsrel=1e-13)[0] for k in range(9)]
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-12, err_msg=name)
    # Haar's low pass: the series converges, so the polynomial approaches the filter.
    xi = np.linspace(0, math.pi, 101)
    for n, tol in ((4, 2e-3), (8, 3e-8)):
        approx = chebyshev_eval(chebyshev_coefficients(FILTER_BANKS["haar"][0], n), xi)
        assert np.abs(approx - np.cos(xi / 2)).max() < tol


def test_stated_chebyshev_error():
    # The error the docs state for the default (Haar, one level, order 6), and its decay.
    assert frame_error("haar", 6, 1) == pytest.approx(2.0e-5, rel=0.05)
    errors = [frame_error("haar", n, 1) for n in (2, 4, 6, 8)]
    assert errors == sorted(errors, reverse=True) and errors[-1] < 1e-7
    for name in FILTER_NAMES:      # exact filters are a tight frame for any level count
        u = np.linspace(0, 1, 1001)
        for levels in (1, 2, 3):
            total = sum(r ** 2 for r in element_responses(name, 6, levels, 2.0, u, exact=True))
            np.testing.assert_allclose(total, 1.0, atol=1e-12)


@pytest.mark.parametrize("filters", FILTER_NAMES)
@pytest.mark.parametrize("levels", [1, 2, 3])
def test_analysis_and_synthesis_equal_dense_eigendecomposition(filters, levels):
    g = small_graph(seed=levels, isolated=2)
    lam = laplacian_lambda_max(g)
    fw = FrameletTransform(g, filters, levels=levels, order=6, scale=2.0, lambda_max=lam)
    x = torch.randn(g.num_dst, 5, dtype=torch.float64)
    W = dense_operators(g, filters, 6, levels, 2.0, lam)
    coeffs = fw.analysis(x)
    assert len(coeffs) == len(W) == fw.num_elements == (len(FILTER_BANKS[filters]) - 1) * levels + 1
    for c, We in zip(coeffs, W):
        torch.testing.assert_close(c, We @ x, rtol=0, atol=1e-11)
    # Blockwise application and its adjoint.
    ys = [torch.randn(g.num_dst, 3, dtype=torch.float64) for _ in W]
    out = fw.apply(torch.cat(ys, 1)).split(3, 1)
    back = fw.apply_adjoint(torch.cat(ys, 1)).split(3, 1)
    for o, b, y, We in zip(out, back, ys, W):
        torch.testing.assert_close(o, We @ y, rtol=0, atol=1e-11)
        torch.testing.assert_close(b, We.T @ y, rtol=0, atol=1e-11)
    # Tight up to the stated Chebyshev error, and close to the exact (filter) frame.
    rec = fw.synthesis(coeffs)
    assert float((rec - x).norm() / x.norm()) <= fw.error() + 1e-12
    W_exact = dense_operators(g, filters, 6, levels, 2.0, lam, exact=True)
    total = sum(We.T @ We for We in W_exact)
    torch.testing.assert_close(total, torch.eye(g.num_dst, dtype=torch.float64), rtol=0, atol=1e-12)
    torch.testing.assert_close(sum(We.T @ We for We in W), torch.eye(g.num_dst, dtype=torch.float64),
                               rtol=0, atol=fw.error() + 1e-12)


def test_reconstruction_improves_with_order():
    g = small_graph(40, 120, seed=5)
    x = torch.randn(40, 4, dtype=torch.float64)
    errs = []
    for order in (2, 4, 8, 12):
        fw = FrameletTransform(g, "haar", levels=2, order=order)
        errs.append(float((fw.synthesis(fw.analysis(x)) - x).norm() / x.norm()))
        assert errs[-1] <= fw.error() + 1e-12
    assert errs == sorted(errs, reverse=True) and errs[-1] < 1e-10


def test_adjoint_on_a_directed_graph_and_float32():
    gen = torch.Generator().manual_seed(1)
    ei = torch.randint(0, 20, (2, 60), generator=gen)
    g = Graph.from_edge_index(ei, 20)
    fw = FrameletTransform(g, "linear", levels=2, order=5, lambda_max=2.0)
    x = torch.randn(20, 3 * fw.num_elements, dtype=torch.float64)
    y = torch.randn(20, 3 * fw.num_elements, dtype=torch.float64)
    lhs = (fw.apply(x) * y).sum()
    rhs = (x * fw.apply_adjoint(y)).sum()
    assert float(lhs) == pytest.approx(float(rhs), rel=1e-12)
    x32 = x.float()
    torch.testing.assert_close(fw.apply(x32), fw.apply(x).float(), rtol=1e-4, atol=1e-5)


def test_gradients_flow_through_the_transform():
    g = small_graph(15, 30, seed=2)
    fw = FrameletTransform(g, "haar", levels=2, order=4, lambda_max=2.0)
    x = torch.randn(15, 2, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(lambda t: tuple(fw.analysis(t)), (x,))
    y = torch.randn(15, 2 * fw.num_elements, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(fw.apply_adjoint, (y,))
    ops = framelet_operators(g, "haar", 1, 4, lambda_max=2.0)
    torch.autograd.gradcheck(ops.propagate, (torch.randn(15, 4, dtype=torch.float64,
                                                           requires_grad=True),))


def test_lambda_max_estimates_bound_the_spectrum():
    for seed in range(3):
        g = small_graph(70, 200, seed=seed, isolated=3)
        _, L = dense_laplacian(g)
        true = float(torch.linalg.eigvalsh(L)[-1])
        for method in ("scipy", "power"):
            est = laplacian_lambda_max(g, method=method, iterations=2000)
            assert true - 1e-6 <= est <= min(2.0, true * 1.02) + 1e-9, (method, true, est)
    empty = Graph.from_edge_index(torch.empty(2, 0, dtype=torch.long), 5)
    assert laplacian_lambda_max(empty) == 1.0
    fw = FrameletTransform(empty, "haar")
    x = torch.randn(5, 2)
    assert float((fw.synthesis(fw.analysis(x)) - x).abs().max()) < 1e-4


def test_bad_input_names_the_argument():
    g = small_graph()
    with pytest.raises(ValueError, match="'filters' must be one of"):
        FrameletTransform(g, "sinc")
    with pytest.raises(ValueError, match="'levels' must be an integer >= 1"):
        FrameletTransform(g, levels=0)
    with pytest.raises(ValueError, match="'order' must be an integer >= 1"):
        FrameletTransform(g, order=0)
    with pytest.raises(ValueError, match="'scale' must be a number > 1"):
        FrameletTransform(g, scale=1.0)
    with pytest.raises(ValueError, match="'lambda_max' must lie in"):
        FrameletTransform(g, lambda_max=3.0)
    with pytest.raises(TypeError, match="'graph' must be a gkd_ext.Graph"):
        FrameletTransform(torch.zeros(3, 3))
    with pytest.raises(ValueError, match="'graph' must be square"):
        FrameletTransform(Graph.from_edge_index(torch.tensor([[0], [1]]), (2, 3)))
    with pytest.raises(ValueError, match="'method' must be"):
        laplacian_lambda_max(g, method="lanczos")
    fw = FrameletTransform(g, lambda_max=2.0)
    with pytest.raises(ValueError, match=r"'x' must have shape \[30, D\]"):
        fw.analysis(torch.randn(29, 3))
    with pytest.raises(ValueError, match=r"one block per frame element"):
        fw.apply(torch.randn(30, 3))
    with pytest.raises(TypeError, match="'x' must be a floating-point tensor"):
        fw.analysis(torch.ones(30, 3, dtype=torch.long))
    with pytest.raises(TypeError, match="'x' must be dense"):
        fw.analysis(torch.randn(30, 3).to_sparse_csr())
    with pytest.raises(ValueError, match="'coeffs' must be a list of 2 tensors"):
        fw.synthesis([torch.randn(30, 3)])
    with pytest.raises(ValueError, match="'knowledge' must be one of"):
        build_model("fmlp-o", 4, 8, 2, knowledge="lazy")
    with pytest.raises(ValueError, match="'filters' must be one of"):
        build_model("spatufg", 4, 8, 2, filters="meyer")


# ------------------------------------------------------------------ models
def dense_adj_hat(graph):
    A, _ = dense_laplacian(graph)
    At = A + torch.eye(A.size(0), dtype=torch.float64)
    d = At.sum(1)
    return At / torch.sqrt(d[:, None] * d[None, :])


@pytest.mark.parametrize("filters,levels", [("haar", 1), ("linear", 2)])
@pytest.mark.parametrize("blocks", [False, True])
def test_knowledge_features_equal_dense_powers(filters, levels, blocks, monkeypatch):
    if blocks:      # a few feature columns at a time
        import gkd_ext.nn.framelet as nf
        monkeypatch.setattr(nf, "KNOWLEDGE_BLOCK_BYTES", 25 * 8 * 10 * 4)
    g = small_graph(25, 60, seed=3, isolated=1)
    lam = laplacian_lambda_max(g)
    ops = framelet_operators(g, filters, levels, 6, lambda_max=lam)
    W = dense_operators(g, filters, 6, levels, 2.0, lam)
    Ah = dense_adj_hat(g)
    x = torch.randn(25, 6, dtype=torch.float64)
    know = ops.knowledge(x, 3)
    assert len(know) == len(W) and all(len(k) == 3 for k in know)
    for ke, We in zip(know, W):
        M = We.T @ Ah @ We
        Mk = torch.eye(25, dtype=torch.float64)
        for k in range(3):
            Mk = M @ Mk
            torch.testing.assert_close(ke[k], Mk @ x, rtol=0, atol=1e-12)
    assert ops.knowledge(x, 2)[0][0] is know[0][0]          # computed once per input
    sparse = x.float().to_sparse_csr()
    torch.testing.assert_close(ops.knowledge(sparse, 1)[1][0], know[1][0].float(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("arch,layers", [("fmlp-o", 1), ("fmlp-o", 3), ("fmlp-s", 2)])
def test_fmlp_precomputed_and_propagated_knowledge_agree(arch, layers):
    g = small_graph(30, 70, seed=4)
    x = torch.rand(30, 9)
    outs, grads = [], []
    for mode in ("precompute", "propagate"):
        torch.manual_seed(0)
        model = build_model(arch, 9, 8, 3, num_layers=layers, knowledge=mode, dropout=0.0)
        ops = model.prepare(g)
        z, hidden = model(ops, x)
        assert [h.shape[1] for h in hidden] == model.hidden_dims
        z.square().sum().backward()
        outs.append(z)
        grads.append(model.enc[0].weight.grad)
        assert model.uses_precomputed(30) == (mode == "precompute")
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-3, atol=1e-5)
    # Sparse CSR features (bag-of-words) give the same model in both modes.
    xs = (x * (x > 0.6)).to_sparse_csr()
    for mode in ("precompute", "propagate"):
        torch.manual_seed(0)
        model = build_model(arch, 9, 8, 3, num_layers=layers, knowledge=mode).eval()
        torch.testing.assert_close(model(model.prepare(g), xs)[0],
                                   model(model.prepare(g), xs.to_dense())[0], rtol=1e-4, atol=1e-5)
    # classify() on precomputed rows is the same model on a batch of nodes, no graph read.
    model = build_model(arch, 9, 8, 3, num_layers=layers, knowledge="precompute").eval()
    ops = model.prepare(g)
    full = model(ops, x)[0]
    rows = torch.tensor([3, 7, 11])
    know = ops.knowledge(x, layers)
    part = model.classify([[k[rows] for k in ke] for ke in know], x[rows])[0]
    torch.testing.assert_close(part, full[rows])
    auto = build_model(arch, 9, 8, 3, num_layers=layers, knowledge_bytes=10)
    assert not auto.uses_precomputed(30)


def test_fmlp_branches_read_their_own_knowledge():
    # The seed's FMLP fed the low-pass knowledge (and the low-pass encoder and classifier) to
    # the high-pass branch: here changing only the high-pass knowledge changes the output.
    g = small_graph(30, 70, seed=4)
    model = build_model("fmlp-s", 9, 8, 3, num_layers=2, knowledge="precompute").eval()
    ops = model.prepare(g)
    x = torch.rand(30, 9)
    know = ops.knowledge(x, 2)
    base = model.classify(know, x)[0]
    high = [list(k) for k in know]
    high[0][1] = high[0][1] + 1.0          # element 0 is the high pass (r=1, l=1)
    assert not torch.allclose(model.classify(high, x)[0], base)
    low = [list(k) for k in know]
    low[1][1] = low[1][1] + 1.0
    assert not torch.allclose(model.classify(low, x)[0], base)
    assert model.enc[0] is not model.enc[1] and model.cls[0] is not model.cls[1]


def test_spatufg_layer_equals_dense_formula():
    g = small_graph(20, 50, seed=6)
    torch.manual_seed(0)
    model = build_model("spatufg", 5, 4, 3, num_layers=2, dropout=0.0).double().eval()
    ops = model.prepare(g)
    x = torch.randn(20, 5, dtype=torch.float64)
    z, hidden = model(ops, x)
    lam = ops.framelet.lambda_max
    W = dense_operators(g, "haar", 6, 1, 2.0, lam)
    Ah = dense_adj_hat(g)
    h = x
    for i, conv in enumerate(model.convs):
        theta = conv.lin.weight.t().split(conv.out_dim, dim=1)
        h = sum(We.T @ torch.relu(Ah @ We @ h @ th) for We, th in zip(W, theta)) + conv.bias
        if i == 0:
            torch.testing.assert_close(hidden[0], h, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(z, h, rtol=1e-9, atol=1e-10)
    assert model.hidden_dims == [4]
    # Sparse CSR features give the same output.
    xs = x.float().to_sparse_csr()
    torch.testing.assert_close(model.float()(ops, xs)[0], z.float(), rtol=1e-4, atol=1e-5)


def test_models_share_prepared_operators():
    t = build_model("spatufg", 5, 4, 3)
    s = build_model("fmlp-o", 5, 4, 3)
    other = build_model("fmlp-s", 5, 4, 3, levels=2)
    assert t.prepare_key() == s.prepare_key() != other.prepare_key()
