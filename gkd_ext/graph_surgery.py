r"""Sparse SDRF: curvature-based graph rewiring (Topping et al., ICLR 2022), never ``N x N``.

**Balanced Forman curvature** (Topping et al., Definition 1) of an edge :math:`i \sim j` of a
simple undirected graph, with degrees :math:`d_i, d_j`, :math:`S_1(v)` the neighbours of
:math:`v` and :math:`B_1(v) = S_1(v) \cup \{v\}`:

.. math::
    \mathrm{Ric}(i,j) = \frac{2}{d_i} + \frac{2}{d_j} - 2
      + \frac{2|\sharp_\Delta|}{\max(d_i,d_j)} + \frac{|\sharp_\Delta|}{\min(d_i,d_j)}
      + \frac{|\sharp_\square^i| + |\sharp_\square^j|}{\gamma_{max}\,\max(d_i,d_j)}

and :math:`\mathrm{Ric}(i,j) = 0` when :math:`\min(d_i, d_j) = 1`; the last term is 0 when there
is no 4-cycle. Here :math:`\sharp_\Delta = S_1(i) \cap S_1(j)` (triangles, the entries of
:math:`A \odot A^2`); :math:`\sharp_\square^i = \{k \in S_1(i) \setminus B_1(j) : \exists\, w \in
(S_1(k) \cap S_1(j)) \setminus B_1(i)\}` (neighbours of :math:`i` on a 4-cycle
:math:`i, k, w, j` without diagonals), :math:`\sharp_\square^j` the same with :math:`i, j`
swapped; and :math:`\gamma_{max}` the largest number of such 4-cycles through one node:
:math:`\max(\max_{k \in \sharp_\square^i} |(S_1(k) \cap S_1(j)) \setminus B_1(i)|,
\max_{w \in \sharp_\square^j} |(S_1(w) \cap S_1(i)) \setminus B_1(j)|)` (the paper's
:math:`A_k \cdot (A_j - A_i \odot A_j) - 1`).

Computed per edge from the CSR: triangles by probing the smaller endpoint's neighbours
(:math:`O(\min(d_i, d_j) \log E)`), 4-cycles by walking two steps from the endpoint whose
neighbours have the smaller degree sum (:math:`O(\min(s_i - d_j, s_j - d_i) \log E)`,
:math:`s_v = \sum_{u \sim v} d_u \le d_v d_{max}`), in chunks of bounded memory.

**SDRF** (Algorithm 1 of the paper; an iteration): take the edge :math:`(i, j)` of least
curvature; over the candidates :math:`(k, l)`, :math:`k \in B_1(i)`, :math:`l \in B_1(j)`,
:math:`k \ne l`, not yet an edge, compute the improvement :math:`\mathrm{Ric}'(i, j) -
\mathrm{Ric}(i, j)` that adding :math:`(k, l)` brings, and add one drawn with probability
:math:`\mathrm{softmax}(\tau \cdot \text{improvement})` from a seeded generator; then, if the
most positively curved edge (curvatures of the iteration's start, as the authors' code) is
above ``removal_bound``, remove it. Stop early when neither step changes the graph.

Cost of an iteration, not :math:`O(N^3)`: the improvements come in closed form from the
4-cycles of :math:`(i, j)` (:math:`O(d_i d_j + s_i)`); the extreme edges are found by
branch and bound (cheap lower/upper bounds from degrees, triangles and neighbour-degree sums
for every edge, exact curvature only for edges whose bound can beat the best exact value),
exact values are kept across iterations except around the changed edges, and the graph is
updated in place (:math:`O(E)` array copies). The authors' code instead forms dense
:math:`N \times N` matrices, loops over :math:`O(N^3)` triples, and stops its per-row loops at
the first non-edge (``break`` where ``continue`` was meant), leaving most curvatures stale.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import torch

from .graph import Graph

Tensor = torch.Tensor
# Entries of the ragged two-hop expansions held at once (int64 each, several arrays).
CHUNK = 1 << 22


# ------------------------------------------------------------------ small helpers
def _ranges(start: Tensor, count: Tensor) -> Tuple[Tensor, Tensor]:
    """``(owner, position)``: for every ``k``, ``count[k]`` positions from ``start[k]``."""
    total = int(count.sum()) if count.numel() else 0
    owner = torch.repeat_interleave(torch.arange(count.numel()), count)
    offsets = torch.cumsum(count, 0) - count
    pos = torch.arange(total) - offsets[owner] + start[owner]
    return owner, pos


def ric_formula(di: Tensor, dj: Tensor, tri: Tensor, sqi: Tensor, sqj: Tensor,
                gamma: Tensor) -> Tensor:
    """Balanced Forman curvature from its ingredients (float64, elementwise): degrees,
    triangle count, the two 4-cycle node counts and :math:`\\gamma_{max}`."""
    di, dj, tri = di.double(), dj.double(), tri.double()
    sqi, sqj, gamma = sqi.double(), sqj.double(), gamma.double()
    dmax, dmin = torch.maximum(di, dj), torch.minimum(di, dj)
    ric = 2 / di + 2 / dj - 2 + 2 * tri / dmax + tri / dmin
    ric = ric + torch.where(gamma > 0, (sqi + sqj) / (gamma.clamp(min=1) * dmax), 0.0)
    return torch.where(dmin <= 1, torch.zeros_like(ric), ric)


def _simple_undirected(graph: Graph) -> Tuple[int, Tensor]:
    """``(N, sorted keys u*N + v with u < v)`` of the simple undirected version of ``graph``."""
    if not isinstance(graph, Graph):
        raise TypeError(f"graph surgery: 'graph' must be a gkd_ext.Graph, got {type(graph).__name__}")
    if not graph.is_square:
        raise ValueError(f"graph surgery: 'graph' must be square, got {graph.num_src} sources "
                         f"and {graph.num_dst} destinations")
    n = graph.num_dst
    ei = graph.edge_index.cpu()
    u, v = torch.minimum(ei[0], ei[1]), torch.maximum(ei[0], ei[1])
    keep = u != v
    return n, torch.unique(u[keep] * n + v[keep])


# ------------------------------------------------------------------ the mutable graph
class _Adjacency:
    """A simple undirected graph under edits: sorted undirected keys ``u*N + v`` (``u < v``),
    their per-edge triangle counts and cached exact curvatures, and the symmetric CSR (sorted
    directed keys) that neighbourhood queries read."""

    def __init__(self, n: int, ukeys: Tensor):
        self.n = n
        self.ukeys = ukeys
        u, v = ukeys // n, ukeys % n
        keys = torch.cat([u * n + v, v * n + u]).sort().values
        self.keys = keys
        self.col = keys % n
        self.rowptr = torch.zeros(n + 1, dtype=torch.long)
        torch.cumsum(torch.bincount(keys // n, minlength=n), 0, out=self.rowptr[1:])
        self._refresh()
        self.tri = self.triangles(u, v)
        self.exact = torch.full((ukeys.numel(),), float("nan"), dtype=torch.float64)

    def _refresh(self) -> None:
        self.deg = self.rowptr[1:] - self.rowptr[:-1]
        row = self.keys // self.n
        self.nsum = torch.zeros(self.n, dtype=torch.long).index_add_(0, row, self.deg[self.col])

    # -------------------------------------------------------------- queries
    def neighbours(self, v: int) -> Tensor:
        return self.col[self.rowptr[v]:self.rowptr[v + 1]]

    def has_edge(self, a: Tensor, b: Tensor) -> Tensor:
        q = a * self.n + b
        if self.keys.numel() == 0:
            return torch.zeros_like(q, dtype=torch.bool)
        idx = torch.searchsorted(self.keys, q).clamp_(max=self.keys.numel() - 1)
        return self.keys[idx] == q

    def edge_ids(self, a: Tensor, b: Tensor) -> Tensor:
        """Positions in :attr:`ukeys` of existing undirected edges ``{a, b}``."""
        return torch.searchsorted(self.ukeys, torch.minimum(a, b) * self.n + torch.maximum(a, b))

    def expand(self, nodes: Tensor) -> Tuple[Tensor, Tensor]:
        """``(owner, neighbour)``: every neighbour of every node in ``nodes``."""
        owner, pos = _ranges(self.rowptr[nodes], self.deg[nodes])
        return owner, self.col[pos]

    def triangles(self, u: Tensor, v: Tensor) -> Tensor:
        """``|S1(u) ∩ S1(v)|`` per edge, probing the smaller endpoint's neighbours."""
        out = torch.zeros(u.numel(), dtype=torch.long)
        small = torch.where(self.deg[u] <= self.deg[v], u, v)
        other = torch.where(self.deg[u] <= self.deg[v], v, u)
        for idx in _chunks(self.deg[small], CHUNK):
            owner, w = self.expand(small[idx])
            hit = self.has_edge(other[idx][owner], w)
            out[idx] = torch.bincount(owner[hit], minlength=idx.numel())
        return out

    def four_cycles(self, i: Tensor, j: Tensor, pairs: bool = False):
        """Per edge ``(i, j)``: ``(|#□^i|, |#□^j|, γ_max)``; with ``pairs=True`` (one edge)
        also the 4-cycle node pairs ``(k, w)``, ``k ∈ #□^i``, ``w ∈ #□^j``, ``k ~ w``."""
        m = i.numel()
        sqi, sqj, gam = (torch.zeros(m, dtype=torch.long) for _ in range(3))
        cost_i = self.nsum[i] - self.deg[j]
        cost_j = self.nsum[j] - self.deg[i]
        flip = cost_j < cost_i
        a_side = torch.where(flip, j, i)      # walk a -> k -> w, probing w against b's row
        b_side = torch.where(flip, i, j)
        all_pairs = []
        for idx in _chunks(torch.minimum(cost_i, cost_j).clamp(min=1), CHUNK):
            a, b = a_side[idx], b_side[idx]
            own, k = self.expand(a)
            keep = (k != b[own]) & ~self.has_edge(b[own], k)
            own, k = own[keep], k[keep]
            own2, w = self.expand(k)
            e = own[own2]
            keep = (w != a[e]) & self.has_edge(b[e], w) & ~self.has_edge(a[e], w)
            e, k, w = e[keep], k[own2][keep], w[keep]
            na, ga = _group_counts(e, k, self.n, idx.numel())
            nb, gb = _group_counts(e, w, self.n, idx.numel())
            f = flip[idx]
            sqi[idx] = torch.where(f, nb, na)
            sqj[idx] = torch.where(f, na, nb)
            gam[idx] = torch.maximum(ga, gb)
            if pairs:
                all_pairs.append(torch.stack([w, k]) if bool(f.all()) else torch.stack([k, w]))
        if pairs:
            return sqi, sqj, gam, (torch.cat(all_pairs, 1) if all_pairs else
                                   torch.empty(2, 0, dtype=torch.long))
        return sqi, sqj, gam

    def curvature(self, ids: Tensor) -> Tensor:
        """Exact curvature of the undirected edges at positions ``ids`` of :attr:`ukeys`."""
        u, v = self.ukeys[ids] // self.n, self.ukeys[ids] % self.n
        sqi, sqj, gam = self.four_cycles(u, v)
        return ric_formula(self.deg[u], self.deg[v], self.tri[ids], sqi, sqj, gam)

    def bounds(self) -> Tuple[Tensor, Tensor]:
        """Lower and upper bounds of every edge's curvature (exact where cached)."""
        u, v = self.ukeys // self.n, self.ukeys % self.n
        du, dv, t = self.deg[u], self.deg[v], self.tri
        zero = torch.zeros_like(t)
        base = ric_formula(du, dv, t, zero, zero, zero)
        # |#□^u| <= |S1(u) \ B1(v)| and <= Σ_{w ~ v, w != u} (d_w - 1); both are 0 together.
        cu = torch.minimum(du - 1 - t, self.nsum[v] - du - (dv - 1)).clamp(min=0)
        cv = torch.minimum(dv - 1 - t, self.nsum[u] - dv - (du - 1)).clamp(min=0)
        none = (cu == 0) | (cv == 0) | (torch.minimum(du, dv) <= 1)
        slack = torch.where(none, 0.0, (cu + cv).double() / torch.maximum(du, dv).double())
        known = ~torch.isnan(self.exact)
        lb = torch.where(known, self.exact, base)
        ub = torch.where(known, self.exact, base + slack)
        return lb, ub

    # -------------------------------------------------------------- edits
    def _touched(self, x: int, y: int) -> Tensor:
        """Positions of the edges whose curvature an edit of ``{x, y}`` can change: those at
        ``x`` or ``y`` and those joining a neighbour of ``x`` to a neighbour of ``y``
        (walked from the side whose neighbours have the smaller degree sum)."""
        nx, ny = self.neighbours(x), self.neighbours(y)
        src, dst = (nx, ny) if int(self.nsum[x]) <= int(self.nsum[y]) else (ny, nx)
        own, b = self.expand(src)
        a = src[own]
        if dst.numel():          # rows of the CSR are sorted
            pos = torch.searchsorted(dst, b).clamp_(max=dst.numel() - 1)
            inside = dst[pos] == b
        else:
            inside = torch.zeros_like(b, dtype=torch.bool)
        pa = torch.cat([a[inside], torch.full_like(nx, x), torch.full_like(ny, y)])
        pb = torch.cat([b[inside], nx, ny])
        return torch.unique(self.edge_ids(pa, pb))

    def add(self, x: int, y: int) -> None:
        common = self._common(x, y)
        touched = self._touched(x, y)
        self.exact[touched] = float("nan")
        self._tri_update(x, y, common, +1)
        key = min(x, y) * self.n + max(x, y)
        pos = int(torch.searchsorted(self.ukeys, torch.tensor(key)))
        self.ukeys = _insert(self.ukeys, pos, key)
        self.tri = _insert(self.tri, pos, common.numel())
        self.exact = _insert(self.exact, pos, float("nan"))
        for a, b in ((x, y), (y, x)):
            k = a * self.n + b
            self.keys = _insert(self.keys, int(torch.searchsorted(self.keys, torch.tensor(k))), k)
            self.rowptr[a + 1:] += 1
        self.col = self.keys % self.n
        self._refresh()

    def remove(self, x: int, y: int) -> None:
        touched = self._touched(x, y)
        self.exact[touched] = float("nan")
        common = self._common(x, y)
        self._tri_update(x, y, common, -1)
        pos = int(self.edge_ids(torch.tensor(x), torch.tensor(y)))
        self.ukeys, self.tri, self.exact = (_delete(t, pos)
                                            for t in (self.ukeys, self.tri, self.exact))
        for a, b in ((x, y), (y, x)):
            at = int(torch.searchsorted(self.keys, torch.tensor(a * self.n + b)))
            self.keys = _delete(self.keys, at)
            self.rowptr[a + 1:] -= 1
        self.col = self.keys % self.n
        self._refresh()

    def _common(self, x: int, y: int) -> Tensor:
        nx = self.neighbours(x)
        return nx[self.has_edge(torch.full_like(nx, y), nx)]

    def _tri_update(self, x: int, y: int, common: Tensor, delta: int) -> None:
        if common.numel():
            for end in (x, y):
                self.tri[self.edge_ids(torch.full_like(common, end), common)] += delta

    def to_graph(self) -> Graph:
        row, col = self.keys // self.n, self.keys % self.n
        return Graph.from_edge_index(torch.stack([col, row]), self.n)


def _insert(t: Tensor, pos: int, value) -> Tensor:
    return torch.cat([t[:pos], torch.tensor([value], dtype=t.dtype), t[pos:]])


def _delete(t: Tensor, pos: int) -> Tensor:
    return torch.cat([t[:pos], t[pos + 1:]])


def _chunks(cost: Tensor, budget: int) -> List[Tensor]:
    """Index ranges over items whose summed ``cost`` stays within ``budget`` (at least one
    item each)."""
    m = cost.numel()
    if m == 0:
        return []
    cum = torch.cumsum(cost.clamp(min=1), 0)
    out, start = [], 0
    while start < m:
        base = int(cum[start - 1]) if start else 0
        end = int(torch.searchsorted(cum, torch.tensor(base + budget), right=True))
        end = max(end, start + 1)
        out.append(torch.arange(start, min(end, m)))
        start = end
    return out


def _group_counts(owner: Tensor, item: Tensor, n: int, m: int) -> Tuple[Tensor, Tensor]:
    """Per owner in ``[0, m)``: the number of distinct ``item`` and the largest multiplicity."""
    if owner.numel() == 0:
        z = torch.zeros(m, dtype=torch.long)
        return z, z.clone()
    keys, counts = torch.unique(owner * n + item, return_counts=True)
    who = keys // n
    distinct = torch.bincount(who, minlength=m)
    most = torch.zeros(m, dtype=torch.long).scatter_reduce_(0, who, counts, "amax")
    return distinct, most


# ------------------------------------------------------------------ public functions
def balanced_forman_curvature(graph: Graph) -> Tuple[Tensor, Tensor]:
    """The balanced Forman curvature (module docstring) of every edge of the simple
    undirected graph underlying ``graph`` (edge directions, duplicates and self-loops are
    dropped).

    Returns:
        ``(edges [2, M], curvature [M])``: each undirected edge once as ``u < v`` in
        increasing ``(u, v)`` order, and its curvature (float64).

    Cost ``O(Σ_e (min(d_u, d_v) + min(s_u - d_v, s_v - d_u)) log E)`` with ``s`` the
    neighbour-degree sums; memory ``O(N + E)`` plus bounded chunks. Deterministic.

    Example:
        >>> edges, ric = balanced_forman_curvature(graph)
    """
    n, ukeys = _simple_undirected(graph)
    adj = _Adjacency(n, ukeys)
    ric = adj.curvature(torch.arange(ukeys.numel())) if ukeys.numel() else \
        torch.empty(0, dtype=torch.float64)
    return torch.stack([ukeys // n, ukeys % n]), ric


@dataclass
class SDRFResult:
    """What :func:`sdrf` did: the rewired graph, and the edges added and removed in order."""
    graph: Graph
    added: List[Tuple[int, int]] = field(default_factory=list)
    removed: List[Tuple[int, int]] = field(default_factory=list)
    iterations: int = 0
    timings: Dict[str, float] = field(default_factory=dict)


def _extreme(adj: _Adjacency, largest: bool, above: Optional[float] = None
             ) -> Optional[Tuple[int, float]]:
    """``(position, curvature)`` of the least (or, ``largest``, the most) curved edge, ties to
    the smallest ``(u, v)``, by branch and bound over :meth:`_Adjacency.bounds`; with
    ``above``, None when no edge can exceed it."""
    m = adj.ukeys.numel()
    if m == 0:
        return None
    lb, ub = adj.bounds()
    floor = -math.inf if above is None else float(above)
    if largest and not bool((ub > floor).any()):
        return None
    chunk = 256
    while True:
        known = ~torch.isnan(adj.exact)
        if bool(known.any()):
            vals = adj.exact[known]
            best = max(float(vals.max()), floor) if largest else float(vals.min())
        else:
            best = floor if largest else math.inf
        hopeful = ~known & (((ub >= best) & (ub > floor)) if largest else (lb <= best))
        idx = hopeful.nonzero().view(-1)
        if idx.numel() == 0:
            break
        order = torch.argsort(ub[idx] if largest else lb[idx], descending=largest, stable=True)
        pick = idx[order[:chunk]]
        adj.exact[pick] = adj.curvature(pick)
        lb[pick] = ub[pick] = adj.exact[pick]
        chunk *= 2
    if largest and not best > floor:
        return None
    ties = (adj.exact == best).nonzero().view(-1)
    return int(ties[0]), best


def rewiring_candidates(adj: _Adjacency, pos: int) -> Tuple[Tensor, Tensor]:
    """For the edge at ``pos``, ``(candidates [2, C], improvement [C])``: every non-edge
    ``(k, l)``, ``k ∈ B1(i)``, ``l ∈ B1(j)``, ``k != l`` (each undirected pair once, in
    increasing ``(min, max)`` key order), and ``Ric'(i, j) - Ric(i, j)`` after adding it, in
    closed form from the 4-cycles of ``(i, j)``."""
    n = adj.n
    i, j = int(adj.ukeys[pos] // n), int(adj.ukeys[pos] % n)
    ti, tj = adj.neighbours(i), adj.neighbours(j)
    di, dj, tri = int(adj.deg[i]), int(adj.deg[j]), int(adj.tri[pos])
    I, J = torch.tensor([i]), torch.tensor([j])
    sqi0, sqj0, gam0, pairs = adj.four_cycles(I, J, pairs=True)
    sqi, sqj, gam = int(sqi0), int(sqj0), int(gam0)
    before = float(ric_formula(torch.tensor(di), torch.tensor(dj), torch.tensor(tri),
                               sqi0, sqj0, gam0))
    in_j = torch.zeros(n, dtype=torch.bool)
    in_j[tj] = True
    in_i = torch.zeros(n, dtype=torch.bool)
    in_i[ti] = True
    xi = ti[(ti != j) & ~in_j[ti]]            # S1(i) \ B1(j)
    xj = tj[(tj != i) & ~in_i[tj]]            # S1(j) \ B1(i)
    ci = torch.zeros(n, dtype=torch.long).index_add_(0, pairs[0], torch.ones_like(pairs[0]))
    cj = torch.zeros(n, dtype=torch.long).index_add_(0, pairs[1], torch.ones_like(pairs[1]))
    top_i = int(ci.max()) if pairs.numel() else 0
    top_j = int(cj.max()) if pairs.numel() else 0

    keys, gains = [], []

    def emit(k: Tensor, l: Tensor, new: Tensor) -> None:
        keys.append(torch.minimum(k, l) * n + torch.maximum(k, l))
        gains.append(new - before)

    def ric(di_, dj_, tri_, sqi_, sqj_, gam_):
        return ric_formula(torch.as_tensor(di_), torch.as_tensor(dj_), torch.as_tensor(tri_),
                           torch.as_tensor(sqi_), torch.as_tensor(sqj_), torch.as_tensor(gam_))

    # (i, l), l ∈ S1(j) \ B1(i): i gains l, a triangle appears, l stops closing 4-cycles.
    if xj.numel():
        w = pairs[1]
        lost_i = torch.zeros(n, dtype=torch.long).index_add_(0, w, (ci[pairs[0]] == 1).long())
        top_hit = torch.zeros(n, dtype=torch.long).index_add_(0, w, (ci[pairs[0]] == top_i).long())
        n_top_i = int((ci == top_i).sum()) if top_i > 0 else 0
        new_sqi = sqi - lost_i[xj]
        new_sqj = sqj - (cj[xj] > 0).long()
        gi = torch.where(top_hit[xj] < n_top_i, top_i, top_i - 1).clamp(min=0)
        gj = _max_without(cj, xj, top_j)
        emit(torch.full_like(xj, i), xj, ric(di + 1, dj, tri + 1, new_sqi, new_sqj,
                                             torch.maximum(gi, gj)))
    # (k, j), k ∈ S1(i) \ B1(j): the mirror image.
    if xi.numel():
        k = pairs[0]
        lost_j = torch.zeros(n, dtype=torch.long).index_add_(0, k, (cj[pairs[1]] == 1).long())
        top_hit = torch.zeros(n, dtype=torch.long).index_add_(0, k, (cj[pairs[1]] == top_j).long())
        n_top_j = int((cj == top_j).sum()) if top_j > 0 else 0
        new_sqj = sqj - lost_j[xi]
        new_sqi = sqi - (ci[xi] > 0).long()
        gj = torch.where(top_hit[xi] < n_top_j, top_j, top_j - 1).clamp(min=0)
        gi = _max_without(ci, xi, top_i)
        emit(xi, torch.full_like(xi, j), ric(di, dj + 1, tri + 1, new_sqi, new_sqj,
                                             torch.maximum(gi, gj)))
    # (k, l), k ∈ S1(i) \ {j}, l ∈ S1(j) \ {i}: a new 4-cycle when k ∈ #□-side sets, else no
    # change to Ric(i, j).
    ki, lj = ti[ti != j], tj[tj != i]
    rows = max(1, CHUNK // max(lj.numel(), 1))
    for s in range(0, ki.numel(), rows):
        k = ki[s:s + rows].repeat_interleave(lj.numel())
        l = lj.repeat(min(rows, ki.numel() - s))
        both_tri = in_j[k] & in_i[l]
        keep = (k != l) & ~adj.has_edge(k, l) & ~(both_tri & (k > l))
        k, l = k[keep], l[keep]
        square = ~in_j[k] & ~in_i[l]
        new = torch.full((k.numel(),), before, dtype=torch.float64)
        if bool(square.any()):
            ks, ls = k[square], l[square]
            new[square] = ric(di, dj, tri, sqi + (ci[ks] == 0).long(), sqj + (cj[ls] == 0).long(),
                              torch.maximum(torch.tensor(gam),
                                            torch.maximum(ci[ks], cj[ls]) + 1))
        emit(k, l, new)
    if not keys:
        return torch.empty(2, 0, dtype=torch.long), torch.empty(0, dtype=torch.float64)
    key = torch.cat(keys)
    gain = torch.cat(gains)
    order = torch.argsort(key, stable=True)
    key, gain = key[order], gain[order]
    return torch.stack([key // n, key % n]), gain


def _max_without(counts: Tensor, nodes: Tensor, top: int) -> Tensor:
    """Per node in ``nodes``: the maximum of ``counts`` over all other nodes."""
    if top == 0:
        return torch.zeros(nodes.numel(), dtype=torch.long)
    n_top = int((counts == top).sum())
    second = int(counts[counts < top].max()) if bool((counts < top).any()) else 0
    alone = (counts[nodes] == top) & (n_top == 1)
    return torch.where(alone, torch.tensor(second), torch.tensor(top))


def sdrf(graph: Graph, iterations: int, tau: float = 1.0, removal_bound: float = 0.5,
         remove_edges: bool = True, seed: int = 0) -> SDRFResult:
    """Stochastic discrete Ricci flow rewiring (module docstring) of the simple undirected
    graph underlying ``graph``, for at most ``iterations`` iterations.

    Args:
        graph: a square :class:`~gkd_ext.Graph` (taken as undirected: directions, duplicates
            and self-loops are dropped).
        iterations: the most iterations (``>= 0``); each adds at most one edge and removes
            at most one.
        tau: the softmax temperature of the added edge's draw (``> 0``; larger is greedier).
        removal_bound: edges curved above this are removed (the most curved one per
            iteration); ``remove_edges=False`` only adds.
        seed: seeds the draws; the same seed and graph give the same result.

    Returns:
        :class:`SDRFResult`: the rewired graph (both directions of every edge, no values) and
        the edges added and removed.

    Runs on the CPU (a graph on another device is copied; the result is on the CPU). Memory
    ``O(N + E)`` plus bounded chunks; an iteration costs ``O(E)`` array updates plus the
    local work of the module docstring. Deterministic for a seed.

    Example:
        >>> res = sdrf(graph, iterations=100, tau=1.0, removal_bound=0.5, seed=0)
        >>> res.graph, len(res.added), len(res.removed)
    """
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 0:
        raise ValueError(f"sdrf: 'iterations' must be an integer >= 0, got {iterations!r}")
    if not (isinstance(tau, (int, float)) and math.isfinite(tau) and tau > 0):
        raise ValueError(f"sdrf: 'tau' must be a finite number > 0, got {tau!r}")
    if not (isinstance(removal_bound, (int, float)) and math.isfinite(removal_bound)):
        raise ValueError(f"sdrf: 'removal_bound' must be a finite number, got {removal_bound!r}")
    t0 = time.perf_counter()
    n, ukeys = _simple_undirected(graph)
    adj = _Adjacency(n, ukeys)
    gen = torch.Generator().manual_seed(int(seed))
    result = SDRFResult(graph=graph)
    result.timings["setup_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    for it in range(iterations):
        most = _extreme(adj, largest=True, above=removal_bound) if remove_edges else None
        remove_key = None if most is None else int(adj.ukeys[most[0]])
        least = _extreme(adj, largest=False)
        added = False
        if least is not None:
            cand, gain = rewiring_candidates(adj, least[0])
            if gain.numel():
                probs = torch.softmax(tau * gain, 0)
                c = int(torch.multinomial(probs, 1, generator=gen))
                k, l = int(cand[0, c]), int(cand[1, c])
                adj.add(k, l)
                result.added.append((k, l))
                added = True
        removed = False
        if remove_key is not None:
            x, y = remove_key // n, remove_key % n
            adj.remove(x, y)
            result.removed.append((x, y))
            removed = True
        result.iterations = it + 1
        if not added and not removed:
            break
    result.timings["iterations_s"] = time.perf_counter() - t0
    result.graph = adj.to_graph()
    return result


__all__ = ["balanced_forman_curvature", "ric_formula", "rewiring_candidates", "sdrf",
           "SDRFResult"]
