"""Models on the gkd_ext ops: edge softmax, layers against dense references, the factory."""
import pytest
import torch
import torch.nn.functional as F

from gkd_ext import Graph
from gkd_ext.functional import use_impl
from gkd_ext.nn import (GAT, GATConv, GINConv, MODEL_NAMES, SAGEConv, build_model, edge_softmax,
                        global_pool, self_loop_graph)


def random_graph(n=12, p=0.3, seed=0, self_loops=False):
    """A directed graph without duplicate edges; node n-1 is isolated (no in/out edges)."""
    gen = torch.Generator().manual_seed(seed)
    a = torch.rand(n, n, generator=gen) < p
    if not self_loops:
        a.fill_diagonal_(False)
    a[n - 1, :] = False
    a[:, n - 1] = False
    dst, src = a.nonzero(as_tuple=True)
    return Graph.from_edge_index(torch.stack([src, dst]), n), a


def dense_adj(graph):
    a = torch.zeros(graph.num_dst, graph.num_src, dtype=torch.bool)
    a[graph.row, graph.col] = True
    return a


# ------------------------------------------------------------------ edge softmax
@pytest.mark.parametrize("heads", [1, 3])
def test_edge_softmax_matches_dense_softmax(heads, device):
    g, a = random_graph()
    s = torch.randn(g.num_edges, heads, dtype=torch.float64)
    alpha = edge_softmax(g.to(device), s.to(device)).cpu()
    assert alpha.shape == s.shape
    for h in range(heads):
        dense = torch.full(a.shape, float("-inf"), dtype=torch.float64)
        dense[g.row, g.col] = s[:, h]
        ref = torch.softmax(dense, dim=1).nan_to_num(0.0)  # rows without edges -> 0
        torch.testing.assert_close(alpha[:, h], ref[g.row, g.col])
    sums = torch.zeros(g.num_dst, heads, dtype=torch.float64).index_add_(0, g.row, alpha)
    has_in = g.degree("in") > 0
    torch.testing.assert_close(sums[has_in], torch.ones_like(sums[has_in]))


def test_edge_softmax_large_scores_and_duplicates():
    # Duplicate edges are separate entries of the softmax; huge scores must not overflow.
    ei = torch.tensor([[0, 0, 1, 2], [1, 1, 1, 0]])
    g = Graph.from_edge_index(ei, 3)
    s = torch.tensor([[1e4], [1e4], [-1e4], [5e3]])
    alpha = edge_softmax(g, s)
    assert torch.isfinite(alpha).all()
    torch.testing.assert_close(alpha[g.row == 1].sum(), torch.tensor(1.0))
    torch.testing.assert_close(alpha[g.row == 0], torch.tensor([[1.0]]))
    one_d = edge_softmax(g, s[:, 0])
    assert one_d.shape == (4,)
    torch.testing.assert_close(one_d, alpha[:, 0])


def test_edge_softmax_gradcheck():
    g, _ = random_graph(n=7, p=0.4, seed=1)
    s = torch.randn(g.num_edges, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: edge_softmax(g, t), (s,))


def test_edge_softmax_no_edges():
    g = Graph.from_edge_index(torch.zeros(2, 0, dtype=torch.long), 4)
    assert edge_softmax(g, torch.zeros(0, 2)).shape == (0, 2)


def test_gatconv_gradcheck():
    g, _ = random_graph(n=6, p=0.4, seed=9)
    g = self_loop_graph(g)
    conv = GATConv(3, 2, heads=2, residual=True).double()
    x = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: conv(g, t), (x,))


def test_edge_softmax_bad_input():
    g, _ = random_graph()
    with pytest.raises(ValueError, match=r"shape \[E\] or \[E, H\]"):
        edge_softmax(g, torch.randn(g.num_edges + 1, 2))
    with pytest.raises(TypeError, match="floating-point"):
        edge_softmax(g, torch.ones(g.num_edges, dtype=torch.long))


# ------------------------------------------------------------------ layers vs dense references
def test_gatconv_matches_dense_attention():
    g, _ = random_graph(n=10, p=0.35, seed=2, self_loops=True)
    g = self_loop_graph(g)
    conv = GATConv(5, 4, heads=3, concat=True).double()
    x = torch.randn(10, 5, dtype=torch.float64)
    out = conv(g, x)
    a = dense_adj(g)
    wh = conv.lin(x).view(10, 3, 4)
    ref = []
    for h in range(3):
        s = (wh[:, h] @ conv.att_dst[0, h])[:, None] + (wh[:, h] @ conv.att_src[0, h])[None, :]
        s = F.leaky_relu(s, 0.2).masked_fill(~a, float("-inf"))
        ref.append(torch.softmax(s, 1) @ wh[:, h])
    ref = torch.cat(ref, 1) + conv.bias
    torch.testing.assert_close(out, ref)
    mean_conv = GATConv(5, 4, heads=3, concat=False).double()
    assert mean_conv(g, x).shape == (10, 4)


def test_sage_and_gin_match_dense_references():
    g, a = random_graph(n=9, p=0.4, seed=3)
    x = torch.randn(9, 6, dtype=torch.float64)
    af = a.double()
    deg = af.sum(1, keepdim=True)
    for out_dim in (3, 8):  # both the project-first and aggregate-first paths
        conv = SAGEConv(6, out_dim, aggr="mean").double()
        mean = (af @ x) / deg.clamp(min=1)
        torch.testing.assert_close(conv(g, x), conv.lin_l(mean) + conv.lin_r(x) + conv.bias)
    pool = SAGEConv(6, 4, aggr="pool").double()
    m = F.relu(pool.pool(x))
    mx = torch.where(a[:, :, None], m[None], torch.tensor(float("-inf"), dtype=torch.float64))
    mx = mx.max(1).values.masked_fill(deg == 0, 0)
    torch.testing.assert_close(pool(g, x), pool.lin_l(mx) + pool.lin_r(x) + pool.bias)
    gin = GINConv(6, 5, eps=0.3, train_eps=True).double()
    torch.testing.assert_close(gin(g, x), gin.mlp(1.3 * x + af @ x))


def test_sage_ignores_stored_values():
    g, _ = random_graph(seed=4)
    x = torch.randn(g.num_dst, 4)
    conv = SAGEConv(4, 3)
    plain = conv(g, x)
    g.value = torch.rand(g.num_edges) * 5
    torch.testing.assert_close(conv(g, x), plain)


# ------------------------------------------------------------------ models
MODELS = ["gcn", "gat", "sage", "sage-pool", "gin", "mlp"]


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("num_layers", [1, 3])
def test_model_forward_backward(name, num_layers, device):
    g, _ = random_graph(n=15, p=0.25, seed=5)
    x = torch.randn(15, 7, device=device)
    model = build_model(name, 7, 6, 4, num_layers=num_layers, heads=2, dropout=0.0,
                        **({"residual": True, "attn_dropout": 0.0} if name == "gat" else {}))
    model = model.to(device)
    logits, hidden = model(model.prepare(g.to(device)), x)
    assert logits.shape == (15, 4)
    width = 12 if name == "gat" else 6  # GAT hidden layers concatenate 2 heads of 6
    assert [tuple(h.shape) for h in hidden] == [(15, width)] * (num_layers - 1)
    assert model.hidden_dims == [width] * (num_layers - 1)
    # The hidden entries are pre-activation: for ReLU/ELU models some entries are negative.
    for h in hidden:
        assert (h < 0).any()
    (logits.square().sum() + sum(h.sum() for h in hidden)).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{name}: no gradient reached {pname}"
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", MODELS)
def test_model_eval_is_deterministic_and_train_uses_dropout(name):
    g, _ = random_graph(n=15, p=0.25, seed=6)
    x = torch.randn(15, 7)
    model = build_model(name, 7, 8, 3, num_layers=2, heads=2, dropout=0.5)
    g = model.prepare(g)
    model.eval()
    torch.testing.assert_close(model(g, x)[0], model(g, x)[0])
    model.train()
    assert not torch.allclose(model(g, x)[0], model(g, x)[0])


def test_gat_heads_and_output_heads():
    g, _ = random_graph(n=8, seed=7)
    g = self_loop_graph(g)
    model = GAT(5, 4, 3, num_layers=3, heads=3, out_heads=2, dropout=0.0, attn_dropout=0.0,
                residual=True)
    logits, hidden = model(g, torch.randn(8, 5))
    assert logits.shape == (8, 3) and [h.shape[1] for h in hidden] == [12, 12]
    assert model.convs[0].res is None and model.convs[1].res is not None
    assert model.convs[-1].heads == 2


def test_build_model_errors_and_aliases():
    with pytest.raises(ValueError, match=r"unknown model 'transformer'.*gcn"):
        build_model("transformer", 4, 4, 2)
    with pytest.raises(ValueError, match=r"gcn takes no option\(s\) \['heads_out'\]"):
        build_model("gcn", 4, 4, 2, heads_out=3)
    assert build_model("GraphSAGE", 4, 4, 2).convs[0].aggr == "mean"
    assert build_model("sage_pool", 4, 4, 2).convs[0].aggr == "pool"
    assert "gat" in MODEL_NAMES
    with pytest.raises(ValueError, match="num_layers"):
        build_model("gin", 4, 4, 2, num_layers=0)


def prepared(name, g):
    return build_model(name, 3, 4, 2).prepare(g)


def test_prepare_self_loops_and_norm():
    g, _ = random_graph(n=10, p=0.3, seed=8, self_loops=True)
    n = g.num_dst
    n_loops = int((g.col == g.row).sum())
    assert n_loops > 0
    for name in ("gcn", "gat"):
        pg = prepared(name, g)
        loops = pg.col == pg.row
        assert int(loops.sum()) == n  # exactly one self-loop per node
        assert pg.num_edges == g.num_edges - n_loops + n
    gcn = prepared("gcn", g)
    deg = gcn.degree("in").double()
    torch.testing.assert_close(gcn.value.double(), (deg[gcn.col] * deg[gcn.row]).rsqrt())
    assert prepared("gat", g).value is None
    sage = prepared("sage", g)
    assert sage.num_edges == g.num_edges and sage.value is None
    assert prepared("mlp", g) is None
    # models whose preparation agrees share a key, so a trainer prepares a graph once for them
    assert build_model("gin", 3, 4, 2).prepare_key() != build_model("gcn", 3, 4, 2).prepare_key()
    assert build_model("gat", 3, 4, 2).prepare_key() == build_model("gat", 3, 8, 2, heads=3).prepare_key()


def test_global_pool():
    x = torch.tensor([[1.0, -2.0], [3.0, -4.0], [5.0, 6.0]])
    batch = torch.tensor([0, 0, 2])
    torch.testing.assert_close(global_pool(x, batch, 3, "sum"),
                               torch.tensor([[4.0, -6.0], [0.0, 0.0], [5.0, 6.0]]))
    torch.testing.assert_close(global_pool(x, batch, 3, "mean"),
                               torch.tensor([[2.0, -3.0], [0.0, 0.0], [5.0, 6.0]]))
    torch.testing.assert_close(global_pool(x, batch, 3, "max"),
                               torch.tensor([[3.0, -2.0], [0.0, 0.0], [5.0, 6.0]]))
    with pytest.raises(ValueError, match="reduce"):
        global_pool(x, batch, 3, "median")


@pytest.mark.parametrize("name", MODELS)
def test_models_take_sparse_csr_features(name):
    # Bag-of-words features go in as CSR (gkd_ext.data.node_features); every model must give
    # what it gives on the same matrix dense.
    g, _ = random_graph(n=15, p=0.25, seed=8)
    x = torch.rand(15, 9) * (torch.rand(15, 9) < 0.2)
    model = build_model(name, 9, 8, 3, num_layers=2, heads=2, dropout=0.5).eval()
    g = model.prepare(g)
    for impl in ("fused", "reference"):   # gkd_ext.spmm over the pattern, or torch.sparse
        with use_impl(impl):
            grads = []
            for inp in (x.to_sparse_csr(), x):
                model.zero_grad()
                out = model(g, inp)[0]
                out.square().sum().backward()
                grads.append([p.grad.clone() for p in model.parameters()])
                if inp.layout == torch.sparse_csr:
                    sparse_out = out.detach()
            torch.testing.assert_close(sparse_out, out.detach())
            for a, b in zip(*grads):
                torch.testing.assert_close(a, b)
    model.train()
    model(g, x.to_sparse_csr())[0].sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_feature_dropout_on_csr_drops_stored_entries_only():
    from gkd_ext.nn.functional import feature_dropout
    x = torch.rand(200, 50) * (torch.rand(200, 50) < 0.1)
    xs = x.to_sparse_csr()
    torch.manual_seed(0)
    out = feature_dropout(xs, 0.5, True)
    assert out.layout == torch.sparse_csr
    assert torch.equal(out.col_indices(), xs.col_indices())
    v, v0 = out.values(), xs.values()
    kept = v != 0
    torch.testing.assert_close(v[kept], 2 * v0[kept])   # inverted dropout scaling
    assert 0.4 < kept.float().mean() < 0.6
    assert feature_dropout(xs, 0.5, False) is xs
    dense = feature_dropout(x, 0.0, True)
    torch.testing.assert_close(dense, x)


def test_feature_linear_pattern_cache_never_mixes_patterns():
    # More patterns than the cache keeps, each freed before the next is made, so memory (and
    # data pointers) get reused: every product must still use its own pattern.
    from gkd_ext.nn.functional import feature_linear
    lin = torch.nn.Linear(20, 5)
    gen = torch.Generator().manual_seed(0)
    for _ in range(10):
        x = torch.rand(30, 20, generator=gen) * (torch.rand(30, 20, generator=gen) < 0.2)
        xs = x.to_sparse_csr()
        torch.testing.assert_close(feature_linear(lin, xs), lin(x))
        del xs
