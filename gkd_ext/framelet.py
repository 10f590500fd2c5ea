r"""The undecimated graph framelet transform on :func:`gkd_ext.spmm` (never an ``N x N`` matrix).

Spectral definition. With the normalised Laplacian :math:`L = I - D^{-1/2} A D^{-1/2}`
(eigenvalues in :math:`[0, \lambda_{max}] \subseteq [0, 2]`), a filter bank
:math:`g_0, \dots, g_{R-1}` on :math:`[0, \pi]` with :math:`\sum_r g_r(\xi)^2 = 1`, a dilation
scale :math:`s > 1` and ``levels`` :math:`J \ge 1`, level :math:`l = 1..J` uses the argument
:math:`\xi_l = \frac{\pi}{\lambda_{max}} s^{\,l - J}` (the last level maps the whole spectrum
onto :math:`[0, \pi]`, each earlier one is dilated by another factor ``s``) and

.. math:: W_{r,l} = g_r(\xi_l L)\, W_{0,l-1}, \qquad W_{0,0} = I

(the low-pass cascade: a level starts from the previous level's low-pass output). The frame
is :math:`\{W_{r,l} : r \ge 1, l = 1..J\} \cup \{W_{0,J}\}`, and it is tight:
:math:`\sum_e W_e^\top W_e = I` (each level splits the previous low-pass energy exactly).

Chebyshev approximation. Each :math:`g_r` is replaced by the degree :math:`n-1` polynomial
:math:`p_r(\xi) = c_0/2 + \sum_{k=1}^{n-1} c_k T_k(\xi/a - 1)`, :math:`a = \pi/2`, with
:math:`c_k = \frac{2}{\pi}\int_0^\pi \cos(k\theta)\, g(a(\cos\theta + 1))\, d\theta`
(:func:`chebyshev_coefficients`). Then :math:`W_{r,l} X` comes from one Chebyshev basis
:math:`T_k(\xi_l L / a - I)\, U` of the level's input :math:`U = W_{0,l-1} X`, shared by all
filters of the level: each basis step is one SpMM plus one subtraction (the diagonal of
:math:`2(\xi_l/a) L - 2I` is folded into the SpMM's edge values as self-loops). The frame is
then tight up to :func:`frame_error` (``sup |Σ_e p_e² - 1|`` over the spectrum: 2.0e-5 for the
default Haar bank, one level, ``order=6``), which bounds the relative reconstruction error of
``synthesis(analysis(x))``.

No fused kernel: with the diagonal folded in, what a fused step would save is the
``- T_{k-2}`` pass, measured at 3-21% of a step on the CPU (Coauthor-CS, D = 32..256; 3% on an
ogbn-arxiv-sized graph at D = 128), not worth a new op with CPU and CUDA kernels.

Every :math:`W_e` is a polynomial in :math:`L`, so its adjoint is the same polynomial in
:math:`L^\top` (for an undirected graph, :math:`W_e^\top = W_e`); :meth:`FrameletTransform.synthesis`
applies it. Memory: a level keeps two basis terms and one accumulator per filter, ``O(N·D·(2 +
R))``; under autograd every basis term is saved for the backward, ``O(N·D·(n + R))`` per level.
"""
from __future__ import annotations

import math
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .functional import spmm
from .graph import Graph

Tensor = torch.Tensor
Filter = Callable[[np.ndarray], np.ndarray]

_SQ3 = math.sqrt(3.0)
# name -> filters g_0 (low pass), g_1.. (high pass) on [0, pi]; each bank has sum_r g_r^2 = 1.
FILTER_BANKS: Dict[str, Tuple[Filter, ...]] = {
    "haar": (lambda x: np.cos(x / 2), lambda x: np.sin(x / 2)),
    "linear": (lambda x: np.cos(x / 2) ** 2, lambda x: np.sin(x) / math.sqrt(2.0),
               lambda x: np.sin(x / 2) ** 2),
    "quadratic": (lambda x: np.cos(x / 2) ** 3, lambda x: _SQ3 * np.sin(x / 2) * np.cos(x / 2) ** 2,
                  lambda x: _SQ3 * np.sin(x / 2) ** 2 * np.cos(x / 2),
                  lambda x: np.sin(x / 2) ** 3),
}
FILTER_NAMES = tuple(FILTER_BANKS)
CHEB_A = math.pi / 2          # filters live on [0, 2a] = [0, pi]
DEFAULT_ORDER = 6             # n Chebyshev coefficients: degree 5
LAMBDA_MARGIN = 1e-3          # relative head-room added to an estimated lambda_max


def _bank(filters: str) -> Tuple[Filter, ...]:
    if filters not in FILTER_BANKS:
        raise ValueError(f"framelet: 'filters' must be one of {list(FILTER_NAMES)}, got {filters!r}")
    return FILTER_BANKS[filters]


def _check_int(name: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"framelet: {name!r} must be an integer >= {low}, got {value!r}")
    return int(value)


def chebyshev_coefficients(g: Filter, n: int, points: Optional[int] = None) -> np.ndarray:
    r"""The first ``n`` Chebyshev coefficients of ``g`` on :math:`[0, \pi]`:
    :math:`c_k = \frac{2}{\pi}\int_0^\pi \cos(k\theta)\, g(a(\cos\theta + 1))\, d\theta`,
    :math:`a = \pi/2`, so that :math:`g(\xi) \approx c_0/2 + \sum_{k\ge1} c_k T_k(\xi/a - 1)`.

    The integral is taken by the trapezoidal rule on ``points`` (default ``max(1024, 8n)``)
    equally spaced :math:`\theta`: the integrand is an even, :math:`2\pi`-periodic function of
    :math:`\theta`, for which that rule converges exponentially (the tests check it against
    adaptive quadrature). Returns float64 ``[n]``.
    """
    n = _check_int("n", n, 1)
    points = max(1024, 8 * n) if points is None else _check_int("points", points, 3)
    theta = np.linspace(0.0, math.pi, points)
    values = np.asarray(g(CHEB_A * (np.cos(theta) + 1.0)), dtype=np.float64)
    w = np.full(points, math.pi / (points - 1))
    w[0] = w[-1] = w[0] / 2
    k = np.arange(n)[:, None]
    return (2.0 / math.pi) * (np.cos(k * theta[None, :]) * values[None, :]) @ w


def chebyshev_eval(coeffs: np.ndarray, xi: np.ndarray) -> np.ndarray:
    """``c_0/2 + Σ_k c_k T_k(xi/a - 1)``: the polynomial :func:`chebyshev_coefficients`
    describes, at points ``xi`` of :math:`[0, \\pi]` (numpy, float64)."""
    t = np.asarray(xi, dtype=np.float64) / CHEB_A - 1.0
    t0, t1 = np.ones_like(t), t
    out = coeffs[0] / 2 * t0
    if len(coeffs) > 1:
        out = out + coeffs[1] * t1
    for c in coeffs[2:]:
        t0, t1 = t1, 2 * t * t1 - t0
        out = out + c * t1
    return out


def frame_elements(num_filters: int, levels: int) -> List[Tuple[int, int]]:
    """The frame's elements ``(r, l)`` in the order every method here uses: the high passes
    ``r = 1..R-1`` of each level ``l = 1..levels``, then the last level's low pass
    ``(0, levels)``."""
    return [(r, l) for l in range(1, levels + 1) for r in range(1, num_filters)] + [(0, levels)]


def level_scales(levels: int, scale: float, lambda_max: float) -> List[float]:
    r""":math:`\xi_l = \frac{\pi}{\lambda_{max}} s^{\,l - J}` for ``l = 1..levels``."""
    return [math.pi / lambda_max * scale ** (l - levels) for l in range(1, levels + 1)]


def element_responses(filters: str, order: int, levels: int, scale: float, u: np.ndarray,
                      exact: bool = False) -> List[np.ndarray]:
    """The spectral response of every frame element (in :func:`frame_elements` order) at the
    relative eigenvalues ``u = λ / λ_max`` in ``[0, 1]``: Chebyshev polynomials, or the exact
    filters with ``exact=True``. The dense reference of the tests."""
    bank = _bank(filters)
    coeffs = [chebyshev_coefficients(g, order) for g in bank]
    u = np.asarray(u, dtype=np.float64)
    out: Dict[Tuple[int, int], np.ndarray] = {}
    low = np.ones_like(u)
    for l in range(1, levels + 1):
        xi = math.pi * u * scale ** (l - levels)
        resp = [g(xi) if exact else chebyshev_eval(c, xi) for g, c in zip(bank, coeffs)]
        for r in range(1, len(bank)):
            out[(r, l)] = resp[r] * low
        low = resp[0] * low
    out[(0, levels)] = low
    return [out[e] for e in frame_elements(len(bank), levels)]


def frame_error(filters: str = "haar", order: int = DEFAULT_ORDER, levels: int = 1,
                scale: float = 2.0, points: int = 20001) -> float:
    r"""How far the Chebyshev frame is from tight: :math:`\sup_\lambda |\sum_e p_e(\lambda)^2 - 1|`
    over the spectrum (a grid of ``points`` relative eigenvalues in :math:`[0, 1]`). It bounds
    :math:`\|\sum_e \tilde W_e^\top \tilde W_e - I\|_2` for every graph, hence the relative error
    of ``synthesis(analysis(x))``. Haar, one level: 2.7e-1 at ``order=2`` (the seed's),
    3.9e-3 at 4, 2.0e-5 at 6 (the default), 5.5e-8 at 8."""
    u = np.linspace(0.0, 1.0, points)
    total = sum(r ** 2 for r in element_responses(filters, order, levels, scale, u))
    return float(np.abs(total - 1.0).max())


# ------------------------------------------------------------------ the Laplacian
def _without_self_loops(graph: Graph) -> Graph:
    ei = graph.edge_index
    keep = ei[0] != ei[1]
    return Graph.from_edge_index(ei[:, keep], graph.num_dst)


def normalized_adjacency(graph: Graph) -> Graph:
    r""":math:`P = D^{-1/2} A D^{-1/2}` of ``graph`` without self-loops, as a graph with edge
    values (isolated nodes have an empty row, so :math:`L = I - P` has 1 on their diagonal, as
    PyG's ``get_laplacian(normalization="sym")`` gives)."""
    g = _without_self_loops(graph)
    g.value = g.gcn_norm(torch.ones(g.num_edges, dtype=torch.float64, device=g.device))
    return g


def laplacian_lambda_max(graph: Graph, method: str = "auto", iterations: int = 300,
                         seed: int = 0) -> float:
    r"""An upper estimate of the largest eigenvalue of :math:`L = I - D^{-1/2} A D^{-1/2}`.

    ``method="scipy"`` uses Lanczos (``scipy.sparse.linalg.eigsh``), ``"power"`` power
    iteration on :math:`L` (``iterations`` SpMMs, seeded), ``"auto"`` the first when scipy is
    importable. The estimate is raised by a relative ``1e-3`` (Lanczos) or ``1e-2`` (power
    iteration, which approaches from below) and capped at 2, so the spectrum stays inside the
    filters' domain. A graph without edges gives 1 (:math:`L = I`).
    """
    if method not in ("auto", "scipy", "power"):
        raise ValueError(f"laplacian_lambda_max: 'method' must be 'auto', 'scipy' or 'power', "
                         f"got {method!r}")
    p = normalized_adjacency(graph)
    n = p.num_dst
    if p.num_edges == 0 or n == 0:
        return 1.0
    if method in ("auto", "scipy"):
        try:
            import scipy.sparse as sp
            from scipy.sparse.linalg import eigsh
        except ImportError:
            if method == "scipy":
                raise
        else:
            ei = p.edge_index.cpu().numpy()
            mat = sp.csr_matrix((p.value.detach().cpu().double().numpy(), (ei[1], ei[0])), shape=(n, n))
            lap = sp.identity(n, format="csr") - mat
            if n < 64:
                lam = float(np.linalg.eigvalsh(lap.toarray())[-1])
            else:
                v0 = np.random.default_rng(seed).random(n)
                lam = float(eigsh(lap, k=1, which="LA", v0=v0, tol=1e-8,
                                  return_eigenvectors=False)[0])
            return min(2.0, lam * (1 + LAMBDA_MARGIN))
    gen = torch.Generator().manual_seed(seed)
    v = torch.rand(n, 1, generator=gen, dtype=torch.float64).to(p.device)
    pv = Graph(p.rowptr, p.col, p.num_src, value=p.value.double(), validate=False)
    lam = 0.0
    for _ in range(iterations):
        w = v - spmm(pv, v)
        lam = float((v * w).sum() / (v * v).sum())
        v = w / w.norm().clamp(min=1e-300)
    return min(2.0, lam * (1 + 10 * LAMBDA_MARGIN))


# ------------------------------------------------------------------ the transform
class FrameletTransform:
    r"""The Chebyshev-approximated undecimated framelet transform of a graph (module docstring).

    Args:
        graph: a square :class:`~gkd_ext.Graph` (self-loops are ignored). For a directed graph
            :meth:`analysis` uses :math:`L` and :meth:`synthesis` its transpose.
        filters: ``"haar"`` (default; ``{cos(ξ/2), sin(ξ/2)}``), ``"linear"`` or ``"quadratic"``.
        levels: ``J >= 1``.
        order: ``n >= 1`` Chebyshev coefficients per filter (polynomial degree ``n - 1``).
        scale: the dilation ``s > 1``.
        lambda_max: the spectrum's upper end; default :func:`laplacian_lambda_max`.

    Attributes:
        elements: ``[(r, l), ...]``, the frame elements in output order (:func:`frame_elements`).
        coeffs: float64 ``[R, n]`` Chebyshev coefficients.

    Shapes: :meth:`analysis` maps ``x [N, D]`` to one ``[N, D]`` per element;
    :meth:`synthesis` maps one ``[N, D]`` per element to ``[N, D]``; :meth:`apply` and
    :meth:`apply_adjoint` map ``[N, B·D]`` (block ``b`` for element ``elements[b]``) to
    ``[N, B·D]``. Dtype follows ``x`` (float32/float64; half precision on CUDA); gradients
    flow to ``x``. Deterministic (the SpMM backward walks the transpose).

    Example:
        >>> fw = FrameletTransform(graph, "haar", levels=1)
        >>> low, high = fw.analysis(x)[::-1]
        >>> x_back = fw.synthesis(fw.analysis(x))     # == x up to frame_error()
    """

    def __init__(self, graph: Graph, filters: str = "haar", levels: int = 1,
                 order: int = DEFAULT_ORDER, scale: float = 2.0,
                 lambda_max: Optional[float] = None):
        if not isinstance(graph, Graph):
            raise TypeError(f"FrameletTransform: 'graph' must be a gkd_ext.Graph, got "
                            f"{type(graph).__name__}")
        if not graph.is_square:
            raise ValueError(f"FrameletTransform: 'graph' must be square, got {graph.num_src} "
                             f"sources and {graph.num_dst} destinations")
        bank = _bank(filters)
        self.filters = filters
        self.levels = _check_int("levels", levels, 1)
        self.order = _check_int("order", order, 1)
        if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 1):
            raise ValueError(f"FrameletTransform: 'scale' must be a number > 1, got {scale!r}")
        self.scale = float(scale)
        if lambda_max is None:
            lambda_max = laplacian_lambda_max(graph)
        if not (isinstance(lambda_max, (int, float)) and 0 < lambda_max <= 2 + 1e-9):
            raise ValueError(f"FrameletTransform: 'lambda_max' must lie in (0, 2], got {lambda_max!r}")
        self.lambda_max = float(lambda_max)
        self.num_nodes = graph.num_dst
        self.coeffs = np.stack([chebyshev_coefficients(g, self.order) for g in bank])
        self.elements = frame_elements(len(bank), self.levels)
        self.xi = level_scales(self.levels, self.scale, self.lambda_max)
        p = normalized_adjacency(graph)
        # One structure with a self-loop per node, shared by every level and both directions;
        # per level, values of 2 t(L) = 2(xi/a - 1) I - 2(xi/a) P with t(L) = xi L / a - I.
        n, dev = p.num_dst, p.device
        loops = torch.arange(n, device=dev)
        self._ops = []
        for transpose in (False, True):
            ei = p.edge_index.flip(0) if transpose else p.edge_index
            edges = torch.cat([ei, torch.stack([loops, loops])], 1)
            s = Graph.from_edge_index(edges, n)
            is_edge = s.perm < p.num_edges
            weight = torch.cat([p.value, p.value.new_ones(n)])[s.perm]
            s.perm = None
            s.transpose()
            vals = [torch.where(is_edge, -2 * (xi / CHEB_A) * weight,
                                torch.full_like(weight, 2 * (xi / CHEB_A - 1))) for xi in self.xi]
            self._ops.append((s, {torch.float64: vals}))

    # -------------------------------------------------------------- internals
    def __repr__(self) -> str:
        return (f"FrameletTransform(num_nodes={self.num_nodes}, filters={self.filters!r}, "
                f"levels={self.levels}, order={self.order}, scale={self.scale:g}, "
                f"lambda_max={self.lambda_max:.4f})")

    @property
    def num_elements(self) -> int:
        return len(self.elements)

    def error(self) -> float:
        """:func:`frame_error` of this transform's settings."""
        return frame_error(self.filters, self.order, self.levels, self.scale)

    def _check_x(self, fn: str, x: Tensor, blocks: int = 1) -> None:
        if not isinstance(x, Tensor) or not x.is_floating_point():
            raise TypeError(f"FrameletTransform.{fn}: 'x' must be a floating-point tensor, got "
                            f"{getattr(x, 'dtype', type(x).__name__)}")
        if x.layout != torch.strided:
            raise TypeError(f"FrameletTransform.{fn}: 'x' must be dense (strided); densify "
                            "sparse features first or project them with a linear layer")
        if x.dim() != 2 or x.size(0) != self.num_nodes or x.size(1) % blocks:
            what = f"[{self.num_nodes}, D]" if blocks == 1 else \
                f"[{self.num_nodes}, {blocks}·D] (one block per frame element)"
            raise ValueError(f"FrameletTransform.{fn}: 'x' must have shape {what}, got "
                             f"{list(x.shape)}")
        if x.device != self._ops[0][0].device:
            raise ValueError(f"FrameletTransform.{fn}: 'x' is on {x.device} but the transform "
                             f"is on {self._ops[0][0].device} (use .to(device))")

    def _basis_filters(self, u: Tensor, level: int, coeffs: Tensor, transpose: bool) -> List[Tensor]:
        """``[p_r(xi_l L) u for r]`` with coefficient rows ``coeffs [R', n]`` (float64 numpy
        rows), all from one Chebyshev basis of ``u``."""
        graph, vals = self._ops[int(transpose)]
        if u.dtype not in vals:
            vals[u.dtype] = [v.to(u.dtype) for v in vals[torch.float64]]
        value = vals[u.dtype][level - 1]
        n = self.order
        outs = [u * float(c[0] / 2) for c in coeffs]
        if n == 1:
            return outs
        t_prev = u
        t_cur = spmm(graph, u, value) * 0.5          # T_1 = t(L) u
        for o, c in zip(outs, coeffs):
            o.add_(t_cur, alpha=float(c[1]))
        for k in range(2, n):
            t_next = spmm(graph, t_cur, value).sub_(t_prev)   # T_k = 2 t(L) T_{k-1} - T_{k-2}
            for o, c in zip(outs, coeffs):
                o.add_(t_next, alpha=float(c[k]))
            t_prev, t_cur = t_cur, t_next
        return outs

    def _blockwise(self, y: Tensor, transpose: bool) -> Tensor:
        # Element b = (r, l): W_b = g_r(xi_l L) g_0(xi_{l-1} L) ... g_0(xi_1 L); every factor
        # is a polynomial in L, so they commute and each level can act on all blocks that still
        # need a factor, from one shared basis with each block's own coefficients.
        B = len(self.elements)
        d = y.size(1) // B
        blocks = list(y.split(d, dim=1))
        for level in range(1, self.levels + 1):
            active = [b for b, (r, l) in enumerate(self.elements) if l >= level]
            if not active:
                continue
            stacked = torch.cat([blocks[b] for b in active], 1) if len(active) > 1 \
                else blocks[active[0]]
            rows = sorted({self.elements[b][0] if self.elements[b][1] == level else 0
                           for b in active})
            outs = dict(zip(rows, self._basis_filters(stacked, level, self.coeffs[rows],
                                                      transpose)))
            for i, b in enumerate(active):
                r, l = self.elements[b]
                blocks[b] = outs[r if l == level else 0][:, i * d:(i + 1) * d]
        return torch.cat(blocks, 1)

    # -------------------------------------------------------------- public
    def analysis(self, x: Tensor) -> List[Tensor]:
        """``[W_e x for e in elements]``: the framelet coefficients of ``x [N, D]``, each
        ``[N, D]``. One Chebyshev basis per level (``order - 1`` SpMMs of width D)."""
        self._check_x("analysis", x)
        out: Dict[Tuple[int, int], Tensor] = {}
        u = x
        rows = list(range(len(self.coeffs)))
        for level in range(1, self.levels + 1):
            res = self._basis_filters(u, level, self.coeffs[rows], False)
            for r in range(1, len(rows)):
                out[(r, level)] = res[r]
            u = res[0]
        out[(0, self.levels)] = u
        return [out[e] for e in self.elements]

    def apply(self, y: Tensor) -> Tensor:
        """Block ``b`` of ``y [N, B·D]`` mapped by ``W_{elements[b]}``: every element applied to
        its own input, from shared bases (``order - 1`` SpMMs per level of width ≤ B·D)."""
        self._check_x("apply", y, len(self.elements))
        return self._blockwise(y, False)

    def apply_adjoint(self, y: Tensor) -> Tensor:
        """Block ``b`` of ``y [N, B·D]`` mapped by ``W_{elements[b]}^T``."""
        self._check_x("apply_adjoint", y, len(self.elements))
        return self._blockwise(y, True)

    def synthesis(self, coeffs: Sequence[Tensor]) -> Tensor:
        """``Σ_e W_e^T c_e``: the adjoint of :meth:`analysis`, from one ``[N, D]`` per element;
        ``synthesis(analysis(x)) == x`` up to :meth:`error`."""
        if not isinstance(coeffs, (list, tuple)) or len(coeffs) != len(self.elements):
            got = f"a {type(coeffs).__name__}" if not isinstance(coeffs, (list, tuple)) else \
                f"{len(coeffs)}"
            raise ValueError(f"FrameletTransform.synthesis: 'coeffs' must be a list of "
                             f"{len(self.elements)} tensors (one per frame element), got {got}")
        y = torch.cat(list(coeffs), 1)
        out = self.apply_adjoint(y)
        return sum(out.split(coeffs[0].size(1), dim=1))

    def to(self, device) -> "FrameletTransform":
        """A copy on ``device``."""
        new = object.__new__(FrameletTransform)
        new.__dict__.update(self.__dict__)
        new._ops = [(g.to(device), {torch.float64: [v.to(device) for v in vals[torch.float64]]})
                    for g, vals in self._ops]
        return new
