"""Sparse SDRF (gkd_ext.graph_surgery): balanced Forman curvature against a dense brute force
of the paper's definition, the closed-form rewiring improvements against recomputation, the
whole rewiring against a dense O(N^3) SDRF, reproducibility and argument errors."""


import numpy as np
import pytest
import torch

from gkd_ext import Graph
from gkd_ext.data import undirected_graph
from gkd_ext.graph_surgery import (_Adjacency, _simple_undirected, balanced_forman_curvature,
                                   rewiring_candidates, ric_formula, sdrf)


# ------------------------------------------------------------------ dense brute force
def brute_ingredients(A, i, j):
    """(d_i, d_j, triangles, |#sq^i|, |#sq^j|, gamma_max) straight from Definition 1."""
    n = A.shape[0]
    S = [set(np.flatnonzero(A[v])) for v in range(n)]
    B = [S[v] | {v} for v in range(n)]
    tri = len(S[i] & S[j])
    sq_i = [k for k in S[i] - B[j] if (S[k] & S[j]) - B[i]]
    sq_j = [w for w in S[j] - B[i] if (S[w] & S[i]) - B[j]]
    gam = 0
    for k in sq_i:       # the paper's A_k . (A_j - A_i * A_j) - 1
        gam = max(gam, int(A[k] @ (A[j] - A[i] * A[j])) - 1)
    for w in sq_j:
        gam = max(gam, int(A[w] @ (A[i] - A[j] * A[i])) - 1)
    return len(S[i]), len(S[j]), tri, len(sq_i), len(sq_j), gam


def brute_ric(A, i, j):
    di, dj, t, a, b, g = brute_ingredients(A, i, j)
    if min(di, dj) == 1:
        return 0.0
    ric = 2 / di + 2 / dj - 2 + 2 * t / max(di, dj) + t / min(di, dj)
    if a + b:
        ric += (a + b) / (g * max(di, dj))
    return ric


def dense(graph):
    n, ukeys = _simple_undirected(graph)
    A = np.zeros((n, n), dtype=np.int64)
    u, v = (ukeys // n).numpy(), (ukeys % n).numpy()
    A[u, v] = A[v, u] = 1
    return A


def random_graph(n, m, seed, clustered=False):
    gen = torch.Generator().manual_seed(seed)
    src = torch.randint(0, n, (m,), generator=gen)
    if clustered:   # local edges make triangles and 4-cycles common
        dst = (src + torch.randint(1, 4, (m,), generator=gen)) % n
    else:
        dst = torch.randint(0, n, (m,), generator=gen)
    return undirected_graph(src, dst, n)


GRAPHS = [(12, 20, 0, False), (25, 60, 1, False), (30, 70, 2, True), (40, 160, 3, False),
          (18, 80, 4, True), (50, 90, 5, True)]


@pytest.mark.parametrize("n,m,seed,clustered", GRAPHS)
def test_curvature_equals_dense_brute_force(n, m, seed, clustered):
    g = random_graph(n, m, seed, clustered)
    edges, ric = balanced_forman_curvature(g)
    A = dense(g)
    assert edges.shape[1] == A.sum() // 2
    want = torch.tensor([brute_ric(A, int(u), int(v)) for u, v in edges.t()], dtype=torch.float64)
    torch.testing.assert_close(ric, want, rtol=0, atol=1e-12)
    # Symmetric in the endpoints.
    rev = torch.tensor([brute_ric(A, int(v), int(u)) for u, v in edges.t()], dtype=torch.float64)
    torch.testing.assert_close(ric, rev, rtol=0, atol=1e-12)


def test_curvature_small_chunks_and_known_values(monkeypatch):
    import gkd_ext.graph_surgery as gs
    g = random_graph(40, 160, 3)
    _, ric = balanced_forman_curvature(g)
    monkeypatch.setattr(gs, "CHUNK", 7)      # many tiny chunks, one edge at a time
    _, ric_small = balanced_forman_curvature(g)
    torch.testing.assert_close(ric, ric_small, rtol=0, atol=0)
    # A 4-cycle: every edge has two 4-cycle nodes, gamma 1: 1 + 1 - 2 + 2/2 = 1.
    ring = undirected_graph(torch.tensor([0, 1, 2, 3]), torch.tensor([1, 2, 3, 0]), 4)
    assert balanced_forman_curvature(ring)[1].tolist() == [1.0] * 4
    # A path: leaf edges are 0, the middle edge of a 4-path 2/2 + 2/2 - 2 = 0.
    path = undirected_graph(torch.tensor([0, 1, 2]), torch.tensor([1, 2, 3]), 4)
    assert balanced_forman_curvature(path)[1].tolist() == [0.0, 0.0, 0.0]
    # A tree hub: two stars joined by their centres, 2/4 + 2/4 - 2 = -1.
    a = [0, 0, 0, 0, 4, 4, 4]
    b = [1, 2, 3, 4, 5, 6, 7]
    e, r = balanced_forman_curvature(undirected_graph(torch.tensor(a), torch.tensor(b), 8))
    assert float(r[(e[0] == 0) & (e[1] == 4)]) == -1.0


def test_curvature_ignores_directions_duplicates_and_self_loops():
    g = random_graph(25, 60, 1)
    ei = g.edge_index
    one_way = ei[:, ei[0] < ei[1]]
    messy = Graph.from_edge_index(torch.cat([one_way, one_way, torch.tensor([[3, 5], [3, 5]])], 1), 25)
    e1, r1 = balanced_forman_curvature(g)
    e2, r2 = balanced_forman_curvature(messy)
    assert torch.equal(e1, e2) and torch.equal(r1, r2)


@pytest.mark.parametrize("n,m,seed,clustered", GRAPHS)
def test_rewiring_improvements_equal_recomputation(n, m, seed, clustered):
    g = random_graph(n, m, seed, clustered)
    n_, ukeys = _simple_undirected(g)
    adj = _Adjacency(n_, ukeys)
    A = dense(g)
    for pos in range(0, ukeys.numel(), max(1, ukeys.numel() // 6)):
        i, j = int(ukeys[pos] // n), int(ukeys[pos] % n)
        cand, gain = rewiring_candidates(adj, pos)
        Bi = set(np.flatnonzero(A[i])) | {i}
        Bj = set(np.flatnonzero(A[j])) | {j}
        want = sorted({(min(k, l), max(k, l)) for k in Bi for l in Bj if k != l and not A[k, l]})
        assert [tuple(c) for c in cand.t().tolist()] == want
        before = brute_ric(A, i, j)
        for (k, l), got in zip(want, gain.tolist()):
            B = A.copy()
            B[k, l] = B[l, k] = 1
            assert got == pytest.approx(brute_ric(B, i, j) - before, abs=1e-12), (i, j, k, l)


def dense_sdrf(A, iterations, tau, removal_bound, seed):
    """The algorithm as the paper states it, on a dense matrix: every curvature recomputed
    each iteration, candidates and draws in the same canonical order as the sparse version."""
    A = A.copy()
    n = A.shape[0]
    gen = torch.Generator().manual_seed(seed)

    def all_ric():
        u, v = np.nonzero(np.triu(A, 1))
        ing = [brute_ingredients(A, int(a), int(b)) for a, b in zip(u, v)]
        cols = [torch.tensor([x[c] for x in ing]) for c in range(6)]
        return u, v, ric_formula(*cols) if len(ing) else torch.empty(0, dtype=torch.float64)

    def ric_of(M, i, j):
        return float(ric_formula(*[torch.tensor(x) for x in brute_ingredients(M, i, j)]))

    for _ in range(iterations):
        u, v, ric = all_ric()
        remove = None
        if ric.numel() and float(ric.max()) > removal_bound:
            p = int((ric == ric.max()).nonzero()[0])
            remove = (int(u[p]), int(v[p]))
        p = int((ric == ric.min()).nonzero()[0])
        i, j = int(u[p]), int(v[p])
        Bi = set(np.flatnonzero(A[i])) | {i}
        Bj = set(np.flatnonzero(A[j])) | {j}
        cand = sorted({(min(k, l), max(k, l)) for k in Bi for l in Bj if k != l and not A[k, l]})
        added = False
        if cand:
            before = ric_of(A, i, j)
            gains = []
            for k, l in cand:
                B = A.copy()
                B[k, l] = B[l, k] = 1
                gains.append(ric_of(B, i, j) - before)
            c = int(torch.multinomial(torch.softmax(tau * torch.tensor(gains, dtype=torch.float64), 0),
                                      1, generator=gen))
            k, l = cand[c]
            A[k, l] = A[l, k] = 1
            added = True
        if remove is not None:
            A[remove[0], remove[1]] = A[remove[1], remove[0]] = 0
        if not added and remove is None:
            break
    return A


@pytest.mark.parametrize("n,m,seed,clustered", GRAPHS[:4])
@pytest.mark.parametrize("tau,bound", [(1.0, 0.5), (20.0, 0.0)])
def test_sdrf_equals_dense_sdrf(n, m, seed, clustered, tau, bound):
    g = random_graph(n, m, seed, clustered)
    got = sdrf(g, 15, tau=tau, removal_bound=bound, seed=7)
    want = dense_sdrf(dense(g), 15, tau, bound, seed=7)
    assert np.array_equal(dense(got.graph), want)
    assert got.iterations == 15 and len(got.added) >= 1


def test_sdrf_is_reproducible_and_symmetric():
    g = random_graph(60, 150, 11, True)
    a = sdrf(g, 25, seed=3)
    b = sdrf(g, 25, seed=3)
    c = sdrf(g, 25, seed=4)
    assert a.added == b.added and a.removed == b.removed
    assert torch.equal(a.graph.rowptr, b.graph.rowptr) and torch.equal(a.graph.col, b.graph.col)
    assert a.added != c.added
    ei = a.graph.edge_index
    fwd = set(map(tuple, ei.t().tolist()))
    assert fwd == {(v, u) for u, v in fwd} and all(u != v for u, v in fwd)
    # Without removal, the edge count only grows by the number of additions.
    d = sdrf(g, 10, remove_edges=False, seed=3)
    assert d.graph.num_edges == 2 * (dense(g).sum() // 2 + len(d.added)) and not d.removed


def test_sdrf_stops_when_nothing_changes():
    # K4: no non-edge to add and every curvature (2/3+2/3-2+4/3+2/3 = 4/3) below the bound.
    src, dst = zip(*[(a, b) for a in range(4) for b in range(a + 1, 4)])
    k4 = undirected_graph(torch.tensor(src), torch.tensor(dst), 4)
    assert balanced_forman_curvature(k4)[1].tolist() == pytest.approx([4 / 3] * 6)
    res = sdrf(k4, 50, removal_bound=1.5)
    assert res.iterations == 1 and not res.added and not res.removed
    # A triangle flips: its most curved edge is removed, then added back (Ric 1.5 > 0.5).
    tri = undirected_graph(torch.tensor([0, 1, 2]), torch.tensor([1, 2, 0]), 3)
    res = sdrf(tri, 4, removal_bound=0.5)
    assert res.removed == [(0, 1), (0, 1)] and res.added == [(0, 1), (0, 1)]
    assert res.graph.num_edges == 6 and sdrf(tri, 3, removal_bound=0.5).graph.num_edges == 4
    assert sdrf(tri, 0).graph.num_edges == 6


def test_sdrf_bad_arguments():
    g = random_graph(12, 20, 0)
    with pytest.raises(ValueError, match="'iterations' must be an integer >= 0"):
        sdrf(g, -1)
    with pytest.raises(ValueError, match="'tau' must be a finite number > 0"):
        sdrf(g, 3, tau=0.0)
    with pytest.raises(ValueError, match="'removal_bound' must be a finite number"):
        sdrf(g, 3, removal_bound=float("nan"))
    with pytest.raises(TypeError, match="'graph' must be a gkd_ext.Graph"):
        balanced_forman_curvature(torch.zeros(2, 3))
    rect = Graph.from_edge_index(torch.tensor([[0], [1]]), (3, 2))
    with pytest.raises(ValueError, match="'graph' must be square"):
        sdrf(rect, 1)


def test_edits_keep_the_incremental_state_exact():
    g = random_graph(30, 70, 2, True)
    n, ukeys = _simple_undirected(g)
    adj = _Adjacency(n, ukeys)
    adj.exact[:] = adj.curvature(torch.arange(ukeys.numel()))
    A = dense(g)
    gen = np.random.default_rng(0)
    for step in range(12):
        if step % 3 == 2:
            u, v = np.nonzero(np.triu(A, 1))
            p = gen.integers(len(u))
            x, y = int(u[p]), int(v[p])
            adj.remove(x, y)
            A[x, y] = A[y, x] = 0
        else:
            while True:
                x, y = (int(t) for t in gen.integers(0, n, 2))
                if x != y and not A[x, y]:
                    break
            adj.add(x, y)
            A[x, y] = A[y, x] = 1
        fresh = _Adjacency(n, adj.ukeys.clone())
        assert torch.equal(adj.tri, fresh.tri) and torch.equal(adj.nsum, fresh.nsum)
        known = ~torch.isnan(adj.exact)
        full = fresh.curvature(torch.arange(adj.ukeys.numel()))
        torch.testing.assert_close(adj.exact[known], full[known], rtol=0, atol=0)
        adj.exact[:] = full

