"""The Graph type: a directed graph stored as CSR by destination, ready for the gkd:: ops."""
from __future__ import annotations

import contextlib
import warnings
from typing import Optional, Tuple, Union

import torch

Tensor = torch.Tensor
NumNodes = Union[int, Tuple[int, int], None]


@contextlib.contextmanager
def quiet_sparse_csr():
    """Silence torch's "sparse CSR support is in beta" UserWarning while building CSR tensors."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        yield


def _as_index(t, name: str) -> Tensor:
    if not isinstance(t, Tensor):
        raise TypeError(f"Graph: '{name}' must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"Graph: '{name}' must be an int64 or int32 tensor, got {t.dtype}")
    return t.long()


class Graph:
    """A directed graph with ``num_src`` source and ``num_dst`` destination nodes.

    Edges ``e = (j -> i)`` are stored as CSR by destination: the incoming edges of node ``i``
    are positions ``rowptr[i]:rowptr[i+1]`` of ``col`` (their sources), sorted by source.
    This order is *the graph's edge order*: per-edge tensors given to the ops (edge values,
    attention scores) are indexed by it, and :attr:`edge_index` lists the edges in it.
    ``perm[k]`` is the position in the construction input of the graph's edge ``k``, so values
    held in input order ``v`` become ``v[graph.perm]``; ``from_edge_index(..., value=v)`` does
    this once for you.

    A square graph has ``num_src == num_dst``; rectangular graphs (bipartite graphs, sampled
    subgraphs with ``num_src`` sources feeding ``num_dst`` targets) are supported by every op.

    The transpose (CSR by source), which backward passes walk to stay deterministic without
    atomics, is built on first use and cached.

    ``validate=False`` skips the O(E) structure checks here (for graphs known to be well
    formed); it never makes the ops unsafe: every op checks the index values it walks (rowptr,
    col and the transpose it is given) and raises a RuntimeError naming the argument, and
    building the row index or the transpose validates an unchecked graph first (ValueError).
    Editing ``col`` in place after the transpose was cached makes the backward passes refuse
    the stale transpose.

    Build one with :meth:`from_edge_index` or :meth:`from_sparse`.
    """

    def __init__(self, rowptr: Tensor, col: Tensor, num_src: int, perm: Optional[Tensor] = None,
                 value: Optional[Tensor] = None, validate: bool = True):
        rowptr = _as_index(rowptr, "rowptr").contiguous()
        col = _as_index(col, "col").contiguous()
        self.rowptr, self.col = rowptr, col
        self.num_src, self.num_dst = int(num_src), int(rowptr.numel()) - 1
        self.perm = perm
        self.value = value
        self._transpose: Optional[Tuple[Tensor, Tensor, Tensor]] = None
        self._row: Optional[Tensor] = None
        self._checked = False   # validate() passed: the structure may be read without checks
        if validate:
            self.validate()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_edge_index(cls, edge_index: Tensor, num_nodes: NumNodes = None,
                        value: Optional[Tensor] = None) -> "Graph":
        """Build from a ``2 x E`` edge list (PyG convention: row 0 sources, row 1 targets).

        Args:
            edge_index: int64 or int32 tensor ``[2, E]``; duplicate edges and self-loops are kept.
            num_nodes: ``N`` for a square graph, ``(num_src, num_dst)`` for a rectangular one,
                or None to take ``max index + 1`` (this reads the indices, a host sync).
            value: optional edge values ``[E]`` or ``[E, H]`` in the order of ``edge_index``;
                stored in the graph's order as :attr:`value`.
        """
        edge_index = _as_index(edge_index, "edge_index")
        if edge_index.dim() != 2 or edge_index.size(0) != 2:
            raise ValueError(f"Graph.from_edge_index: 'edge_index' must have shape [2, E], "
                             f"got {list(edge_index.shape)}")
        src, dst = edge_index[0], edge_index[1]
        E = src.numel()
        if num_nodes is None:
            n = int(edge_index.max()) + 1 if E > 0 else 0
            num_src = num_dst = n
        elif isinstance(num_nodes, (tuple, list)):
            if len(num_nodes) != 2:
                raise ValueError("Graph.from_edge_index: 'num_nodes' must be an int or a "
                                 f"(num_src, num_dst) pair, got {num_nodes!r}")
            num_src, num_dst = int(num_nodes[0]), int(num_nodes[1])
        else:
            num_src = num_dst = int(num_nodes)
        if num_src < 0 or num_dst < 0:
            raise ValueError(f"Graph.from_edge_index: 'num_nodes' must be non-negative, got {num_nodes!r}")
        if E > 0:
            _check_range(src, num_src, "edge_index[0] (sources)")
            _check_range(dst, num_dst, "edge_index[1] (targets)")
        if value is not None:
            _check_value(value, E, "Graph.from_edge_index", edge_index.device)
        # Sort by (destination, source): rows become contiguous and neighbour rows are read in
        # increasing address order, which helps both caches and coalescing.
        perm = _lexsort(dst, src, num_dst, num_src)
        col = src[perm]
        counts = torch.bincount(dst, minlength=num_dst) if E > 0 else \
            torch.zeros(num_dst, dtype=torch.long, device=dst.device)
        rowptr = torch.zeros(num_dst + 1, dtype=torch.long, device=dst.device)
        torch.cumsum(counts, 0, out=rowptr[1:])
        g = cls(rowptr, col, num_src, perm=perm, value=None if value is None else value[perm],
                validate=False)
        g._row = dst[perm]
        g._checked = True   # built from range-checked indices
        return g

    @classmethod
    def from_sparse(cls, adj) -> "Graph":
        """Build from a sparse adjacency matrix ``A`` of shape ``[num_dst, num_src]``.

        ``A[i, j] != 0`` stored means an edge ``j -> i`` with value ``A[i, j]``, so that
        ``spmm(Graph.from_sparse(A), x) == A @ x``. Accepts torch sparse COO and CSR tensors and
        scipy.sparse matrices/arrays. Explicitly stored zeros are kept as edges.
        """
        if isinstance(adj, Tensor):
            if adj.layout in (torch.sparse_csr, torch.sparse_coo) and adj.dim() != 2:
                raise ValueError(f"Graph.from_sparse: expected a 2-D sparse matrix, got shape "
                                 f"{list(adj.shape)}")
            if adj.layout == torch.sparse_csr:
                rowptr, col = adj.crow_indices().long(), adj.col_indices().long()
                rows = torch.repeat_interleave(torch.arange(adj.size(0), device=rowptr.device),
                                               rowptr[1:] - rowptr[:-1])
                edge_index = torch.stack([col, rows])
                values = adj.values()
            elif adj.layout == torch.sparse_coo:
                adj = adj.coalesce()
                idx = adj.indices()
                edge_index = torch.stack([idx[1], idx[0]])
                values = adj.values()
            else:
                raise TypeError(f"Graph.from_sparse: expected a sparse COO or CSR tensor, got layout {adj.layout}")
            if adj.dim() != 2 or values.dim() != 1:
                raise ValueError(f"Graph.from_sparse: expected a 2-D sparse matrix with scalar values, got shape {list(adj.shape)}")
            return cls.from_edge_index(edge_index, (adj.size(1), adj.size(0)), value=values)
        try:
            import scipy.sparse as sp
        except ImportError:  # pragma: no cover
            sp = None
        if sp is not None and sp.issparse(adj):
            # scipy sparse arrays may be 1-D or N-D (scipy >= 1.15): only matrices make a graph.
            shape = tuple(adj.shape)
            if len(shape) != 2:
                raise ValueError(f"Graph.from_sparse: expected a 2-D sparse matrix, got a scipy "
                                 f"sparse array of shape {list(shape)}")
            coo = adj.tocoo()
            import numpy as np
            edge_index = torch.from_numpy(np.stack([coo.col, coo.row]).astype(np.int64))
            values = torch.from_numpy(np.asarray(coo.data))
            return cls.from_edge_index(edge_index, (coo.shape[1], coo.shape[0]), value=values)
        raise TypeError("Graph.from_sparse: expected a torch sparse COO/CSR tensor or a scipy.sparse "
                        f"matrix, got {type(adj).__name__}")

    # ------------------------------------------------------------------ checks
    def validate(self) -> "Graph":
        """Check the CSR structure (O(E)); raises ValueError naming what is wrong."""
        rowptr, col = self.rowptr, self.col
        if rowptr.dim() != 1 or rowptr.numel() < 1:
            raise ValueError(f"Graph: 'rowptr' must be 1-D with N_dst + 1 >= 1 entries, got shape {list(rowptr.shape)}")
        if col.dim() != 1:
            raise ValueError(f"Graph: 'col' must be 1-D [E], got shape {list(col.shape)}")
        if col.device != rowptr.device:
            raise ValueError(f"Graph: 'col' is on {col.device} but 'rowptr' is on {rowptr.device}")
        if int(rowptr[0]) != 0 or int(rowptr[-1]) != col.numel():
            raise ValueError(f"Graph: 'rowptr' must start at 0 and end at E = {col.numel()}, "
                             f"got {int(rowptr[0])} ... {int(rowptr[-1])}")
        if rowptr.numel() > 1 and bool((rowptr[1:] < rowptr[:-1]).any()):
            raise ValueError("Graph: 'rowptr' must be non-decreasing")
        if col.numel() > 0:
            _check_range(col, self.num_src, "col (sources)")
        if self.value is not None:
            _check_value(self.value, col.numel(), "Graph", col.device)
        self._checked = True
        return self

    def _ensure_checked(self) -> None:
        # Graph(..., validate=False) skips the O(E) checks; the ops check what they read
        # themselves, but building the row index or the transpose here reads the structure in
        # Python (a col of 10**9 would make bincount allocate 8 GB), so check it once first.
        if not self._checked:
            self.validate()

    # ------------------------------------------------------------------ views
    @property
    def num_edges(self) -> int:
        return int(self.col.numel())

    @property
    def is_square(self) -> bool:
        return self.num_src == self.num_dst

    @property
    def row(self) -> Tensor:
        """Destination of each edge, in the graph's edge order."""
        if self._row is None:
            self._ensure_checked()
            self._row = torch.repeat_interleave(
                torch.arange(self.num_dst, device=self.rowptr.device), self.degree("in"))
        return self._row

    def has_self_loops(self, rows_per_chunk: int = 1 << 20) -> bool:
        """Whether any edge is ``i -> i``, found ``rows_per_chunk`` rows at a time, so no
        E-long index is built or kept (at ogbn-products size :attr:`row` would hold 1 GB)."""
        if self._row is not None:
            return bool((self.col == self._row).any())
        rp = self.rowptr
        for start in range(0, self.num_dst, rows_per_chunk):
            stop = min(self.num_dst, start + rows_per_chunk)
            lo, hi = int(rp[start]), int(rp[stop])
            rows = torch.repeat_interleave(torch.arange(start, stop, device=rp.device),
                                           rp[start + 1: stop + 1] - rp[start:stop])
            if bool((self.col[lo:hi] == rows).any()):
                return True
        return False

    @property
    def edge_index(self) -> Tensor:
        """``[2, E]`` (sources, targets) in the graph's edge order."""
        return torch.stack([self.col, self.row])

    def transpose(self) -> Tuple[Tensor, Tensor, Tensor]:
        """The CSR by source, cached: ``(t_rowptr [N_src+1], t_col [E] targets, t_perm [E])``,
        where ``t_perm[k]`` is the graph-order position of the k-th transposed edge."""
        if self._transpose is None:
            self._ensure_checked()
            # Graph order is sorted by destination, so a stable sort by source alone gives
            # (source, destination, graph position) order: t_perm increases along every row
            # of the transpose, the order the ops check fastest (csrc/gkd_ext.cpp).
            t_perm = torch.sort(self.col, stable=True).indices
            counts = torch.bincount(self.col, minlength=self.num_src) if self.num_edges else \
                torch.zeros(self.num_src, dtype=torch.long, device=self.col.device)
            t_rowptr = torch.zeros(self.num_src + 1, dtype=torch.long, device=self.col.device)
            torch.cumsum(counts, 0, out=t_rowptr[1:])
            self._transpose = (t_rowptr, self.row[t_perm].contiguous(), t_perm)
        return self._transpose

    def degree(self, direction: str = "in") -> Tensor:
        """Edge counts per node: ``"in"`` per destination, ``"out"`` per source (int64)."""
        if direction == "in":
            return self.rowptr[1:] - self.rowptr[:-1]
        if direction == "out":
            t_rowptr = self.transpose()[0]
            return t_rowptr[1:] - t_rowptr[:-1]
        raise ValueError(f"Graph.degree: 'direction' must be 'in' or 'out', got {direction!r}")

    # ------------------------------------------------------------------ transforms
    def add_self_loops(self, fill_value: float = 1.0) -> "Graph":
        """A new square graph with one self-loop ``i -> i`` added to every node. Existing edges
        (self-loops included) are kept; stored values get ``fill_value`` on the new loops."""
        if not self.is_square:
            raise ValueError(f"Graph.add_self_loops: the graph must be square, got "
                             f"{self.num_src} sources and {self.num_dst} destinations")
        n, dev = self.num_dst, self.col.device
        loops = torch.arange(n, device=dev)
        edge_index = torch.cat([self.edge_index, torch.stack([loops, loops])], dim=1)
        value = None
        if self.value is not None:
            fill = self.value.new_full((n,) + tuple(self.value.shape[1:]), fill_value)
            value = torch.cat([self.value, fill])
        return Graph.from_edge_index(edge_index, n, value=value)

    def gcn_norm(self, edge_weight: Optional[Tensor] = None) -> Tensor:
        """Symmetric normalisation values ``w_e / sqrt(deg(j) deg(i))`` for every edge ``j -> i``
        in the graph's order, with weighted in-degrees ``deg(i) = sum of w over i's incoming
        edges`` (PyG's convention; call :meth:`add_self_loops` first for GCN's A + I).
        ``edge_weight`` defaults to the stored values, else ones."""
        if not self.is_square:
            raise ValueError("Graph.gcn_norm: the graph must be square")
        w = edge_weight if edge_weight is not None else self.value
        if w is None:
            w = torch.ones(self.num_edges, device=self.col.device)
        if w.dim() != 1 or w.numel() != self.num_edges:
            raise ValueError(f"Graph.gcn_norm: 'edge_weight' must have shape [{self.num_edges}], got {list(w.shape)}")
        deg = torch.zeros(self.num_dst, dtype=w.dtype, device=w.device).index_add_(0, self.row, w)
        dinv = deg.pow(-0.5).masked_fill_(deg <= 0, 0)
        return dinv[self.col] * w * dinv[self.row]

    def to(self, device) -> "Graph":
        """A copy on ``device`` (the cached transpose moves too)."""
        g = Graph(self.rowptr.to(device), self.col.to(device), self.num_src,
                  perm=None if self.perm is None else self.perm.to(device),
                  value=None if self.value is None else self.value.to(device), validate=False)
        g._checked = self._checked
        if self._row is not None:
            g._row = self._row.to(device)
        if self._transpose is not None:
            g._transpose = tuple(t.to(device) for t in self._transpose)
        return g

    @property
    def device(self) -> torch.device:
        return self.rowptr.device

    def __repr__(self) -> str:
        shape = f"num_nodes={self.num_dst}" if self.is_square else \
            f"num_src={self.num_src}, num_dst={self.num_dst}"
        return f"Graph({shape}, num_edges={self.num_edges}, device={self.device})"


def remove_self_loops(graph: Graph) -> Graph:
    """A copy of ``graph`` without its ``i -> i`` edges (stored values follow the edges)."""
    ei = graph.edge_index
    keep = ei[0] != ei[1]
    value = None if graph.value is None else graph.value[keep]
    return Graph.from_edge_index(ei[:, keep], (graph.num_src, graph.num_dst), value=value)


def _lexsort(major: Tensor, minor: Tensor, num_major: int, num_minor: int) -> Tensor:
    """The stable permutation sorting by (major, minor), both checked to lie in [0, num_major)
    and [0, num_minor). One sort of the key major * num_minor + minor where that key cannot
    overflow int64 (num_major * num_minor <= 2**63), else two stable sorts (minor, then major)."""
    if num_major * max(num_minor, 1) <= 2 ** 63:
        return torch.sort(major * max(num_minor, 1) + minor, stable=True).indices
    by_minor = torch.sort(minor, stable=True).indices
    return by_minor[torch.sort(major[by_minor], stable=True).indices]


def _check_range(idx: Tensor, n: int, name: str) -> None:
    lo, hi = int(idx.min()), int(idx.max())
    if lo < 0 or hi >= n:
        raise ValueError(f"Graph: {name} must lie in [0, {n}), found values in [{lo}, {hi}]")


def _check_value(value: Tensor, E: int, where: str, device) -> None:
    if not isinstance(value, Tensor) or not value.is_floating_point():
        raise TypeError(f"{where}: 'value' must be a floating-point tensor, got "
                        f"{getattr(value, 'dtype', type(value).__name__)}")
    if value.dim() not in (1, 2) or value.size(0) != E:
        raise ValueError(f"{where}: 'value' must have shape [E] or [E, H] with E = {E}, got {list(value.shape)}")
    if value.device != torch.device(device):
        raise ValueError(f"{where}: 'value' is on {value.device} but the edges are on {device}")
