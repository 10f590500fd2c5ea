"""Dataset containers shared by the loaders, and the graph clean-up they all apply."""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np
import torch

from ..graph import Graph, quiet_sparse_csr

Tensor = torch.Tensor


def undirected_graph(src, dst, num_nodes: int) -> Graph:
    """A simple undirected graph from edge endpoints (numpy or torch, any integer dtype): both
    directions of every edge, duplicates merged and self-loops removed, as PyG's loaders do.
    Each undirected edge ``{u, v}`` becomes the two directed edges ``u -> v`` and ``v -> u``."""
    src = torch.as_tensor(np.asarray(src), dtype=torch.long).reshape(-1)
    dst = torch.as_tensor(np.asarray(dst), dtype=torch.long).reshape(-1)
    if src.numel() != dst.numel():
        raise ValueError(f"undirected_graph: {src.numel()} sources but {dst.numel()} targets")
    if src.numel() and (int(torch.minimum(src, dst).min()) < 0
                        or int(torch.maximum(src, dst).max()) >= num_nodes):
        raise ValueError(f"undirected_graph: edge endpoints must lie in [0, {num_nodes})")
    s, d = torch.cat([src, dst]), torch.cat([dst, src])
    keep = s != d
    key = torch.unique(s[keep] * max(num_nodes, 1) + d[keep])
    return Graph.from_edge_index(torch.stack([key // max(num_nodes, 1), key % max(num_nodes, 1)]),
                                 num_nodes)


def csr_features(data: np.ndarray, indices: np.ndarray, indptr: np.ndarray,
                 shape: Tuple[int, int]) -> Tensor:
    """Node features as a float32 ``torch.sparse_csr`` tensor ``[rows, cols]`` (int64 indices)
    built straight from scipy-style CSR arrays, already checked by
    :func:`gkd_ext.data.safe_io.check_csr`. Column indices are sorted within each row and
    duplicates summed (the canonical form that torch's CSR invariants and
    :class:`~gkd_ext.graph.Graph` expect); already-canonical input, as published files are,
    is taken as is. Memory O(rows + nnz); nothing dense is built."""
    rows = int(shape[0])
    data = np.asarray(data, dtype=np.float32)
    indices = np.asarray(indices, dtype=np.int64)
    indptr = np.asarray(indptr, dtype=np.int64)
    if indices.size > 1:
        row_of = np.repeat(np.arange(rows, dtype=np.int64), np.diff(indptr))
        if bool(np.any((row_of[1:] == row_of[:-1]) & (indices[1:] <= indices[:-1]))):
            order = np.lexsort((indices, row_of))
            row_of, indices, data = row_of[order], indices[order], data[order]
            first = np.ones(indices.size, dtype=bool)
            first[1:] = (row_of[1:] != row_of[:-1]) | (indices[1:] != indices[:-1])
            starts = np.flatnonzero(first)
            data, indices, row_of = np.add.reduceat(data, starts), indices[starts], row_of[starts]
            indptr = np.zeros(rows + 1, dtype=np.int64)
            np.cumsum(np.bincount(row_of, minlength=rows), out=indptr[1:])
    with quiet_sparse_csr():
        return torch.sparse_csr_tensor(torch.from_numpy(indptr), torch.from_numpy(indices),
                                       torch.from_numpy(data), (rows, int(shape[1])))


def select_rows(x: Tensor, index: Tensor) -> Tensor:
    """Rows ``index`` (int64 ``[K]``, each in ``[0, x.size(0))``) of a strided or sparse-CSR
    ``x``, in the same layout. A CSR ``x`` is never densified: O(K + nnz of the kept rows)."""
    index = torch.as_tensor(index, dtype=torch.long, device=x.device).reshape(-1)
    if x.layout != torch.sparse_csr:
        return x[index]
    crow, col, val = x.crow_indices(), x.col_indices(), x.values()
    start = crow[index]
    count = crow[index + 1] - start
    new_crow = torch.cat([torch.zeros(1, dtype=crow.dtype, device=crow.device),
                          torch.cumsum(count, 0).to(crow.dtype)])
    # Position in the old values of each kept entry: its rank inside the new rows, shifted by
    # where its row started in the old ones.
    pos = torch.arange(int(new_crow[-1]), dtype=crow.dtype, device=crow.device) + \
        torch.repeat_interleave(start - new_crow[:-1], count)
    with quiet_sparse_csr():
        return torch.sparse_csr_tensor(new_crow, col[pos], val[pos], (index.numel(), x.size(1)))


def connected_components(graph: Graph) -> Tensor:
    """Component label of every node of a square graph, edges taken as undirected: the
    smallest node id of its component. Hooking plus pointer jumping, O((N + E) log N)."""
    if not graph.is_square:
        raise ValueError("connected_components: the graph must be square (num_src == num_dst)")
    ei = graph.edge_index.cpu()
    u, v = ei[0], ei[1]
    comp = torch.arange(graph.num_dst)
    while True:
        lu, lv = comp[u], comp[v]
        low = torch.minimum(lu, lv)
        # Hook each edge's two trees under the smaller label; labels only ever decrease.
        new = comp.scatter_reduce(0, lu, low, "amin").scatter_reduce_(0, lv, low, "amin")
        while True:   # pointer jumping: every node points straight at its root
            jumped = new[new]
            if torch.equal(jumped, new):
                break
            new = jumped
        if torch.equal(new, comp):
            return comp
        comp = new


@dataclass
class NodeDataset:
    """A node-classification graph: features ``x [N, F]``, labels ``y``, and ``graph``
    (symmetrised, no self-loops; each model's ``prepare`` adds what it needs).

    ``x`` is float32, strided or ``torch.sparse_csr``: loaders of sparse-format features
    (Shchur npz, Planetoid) return CSR built from the stored arrays, never a dense ``N x F``;
    :func:`gkd_ext.data.node_features` and every model take either layout.

    ``y`` is int64 ``[N]`` for single-label data, or float ``[N, C]`` of 0/1 with
    ``multilabel=True`` (PPI). ``train_mask``/``val_mask``/``test_mask`` are boolean ``[N]``
    when the dataset comes with a split (given masks, the Planetoid public split, or a seeded
    Shchur split from :func:`gkd_ext.data.load_dataset`). ``graph_id [N]`` says which graph a
    node belongs to when several disjoint graphs are stored together (PPI). ``metric`` names
    the metric the dataset's literature reports (:mod:`gkd_ext.train.metrics`).
    """
    name: str
    x: Tensor
    y: Tensor
    graph: Graph
    train_mask: Optional[Tensor] = None
    val_mask: Optional[Tensor] = None
    test_mask: Optional[Tensor] = None
    multilabel: bool = False
    graph_id: Optional[Tensor] = None
    metric: str = "accuracy"

    @property
    def num_nodes(self) -> int:
        return self.x.size(0)

    @property
    def num_features(self) -> int:
        return self.x.size(1)

    @property
    def num_classes(self) -> int:
        return self.y.size(1) if self.multilabel else int(self.y.max()) + 1

    def masks(self) -> Tuple[Tensor, Tensor, Tensor]:
        """``(train_mask, val_mask, test_mask)``; raises if the dataset has no split."""
        if self.train_mask is None or self.val_mask is None or self.test_mask is None:
            raise ValueError(f"NodeDataset {self.name!r} has no train/val/test masks; use "
                             "per_class_split(y) or load it through load_dataset")
        return self.train_mask, self.val_mask, self.test_mask

    def subgraph(self, mask: Tensor) -> "NodeDataset":
        """The dataset induced on the nodes where ``mask`` is True (edges between kept nodes;
        nodes renumbered in order). For inductive training on some of PPI's graphs."""
        mask = torch.as_tensor(mask, dtype=torch.bool)
        if mask.shape != (self.num_nodes,):
            raise ValueError(f"NodeDataset.subgraph: 'mask' must have shape [{self.num_nodes}], "
                             f"got {list(mask.shape)}")
        new_id = torch.cumsum(mask.long(), 0) - 1
        ei = self.graph.edge_index
        keep = mask[ei[0]] & mask[ei[1]]
        graph = Graph.from_edge_index(new_id[ei[:, keep]], int(mask.sum()))

        def sel(t):
            return None if t is None else t[mask]
        return NodeDataset(self.name, select_rows(self.x, mask.nonzero().view(-1)), self.y[mask],
                           graph, sel(self.train_mask),
                           sel(self.val_mask), sel(self.test_mask), self.multilabel,
                           sel(self.graph_id), self.metric)

    def largest_connected_component(self) -> "NodeDataset":
        """The dataset restricted to its largest connected component, as Shchur et al.
        evaluate (ties go to the component with the smallest node id)."""
        comp = connected_components(self.graph)
        sizes = torch.bincount(comp, minlength=self.num_nodes)
        return self.subgraph(comp == int(sizes.argmax()))


@dataclass
class GraphDataset:
    """A graph-classification dataset stored as one disjoint union.

    ``graph`` holds all ``num_graphs`` graphs (symmetrised, no self-loops), ``x [N, F]`` the
    node features, ``batch [N]`` the graph id of every node (sorted, 0-based), ``y [G]`` the
    int64 graph labels (0-based). :meth:`collate` cuts out a mini-batch of graphs.
    """
    name: str
    x: Tensor
    graph: Graph
    batch: Tensor
    y: Tensor

    @property
    def num_graphs(self) -> int:
        return self.y.numel()

    @property
    def num_nodes(self) -> int:
        return self.x.size(0)

    @property
    def num_features(self) -> int:
        return self.x.size(1)

    @property
    def num_classes(self) -> int:
        return int(self.y.max()) + 1

    def __len__(self) -> int:
        return self.num_graphs

    def __post_init__(self):
        # collate slices each graph's nodes and incoming edges as contiguous ranges, which
        # holds when nodes are stored graph by graph and no edge joins two graphs.
        if self.batch.numel() > 1 and bool((self.batch[1:] < self.batch[:-1]).any()):
            raise ValueError(f"GraphDataset {self.name!r}: 'batch' must list nodes graph by graph")
        if self.graph.num_edges and not torch.equal(self.batch[self.graph.col],
                                                     self.batch[self.graph.row]):
            raise ValueError(f"GraphDataset {self.name!r}: an edge joins two different graphs")
        counts = torch.bincount(self.batch, minlength=self.num_graphs)
        self._ptr = torch.zeros(self.num_graphs + 1, dtype=torch.long)
        torch.cumsum(counts, 0, out=self._ptr[1:])

    def node_ids(self, index) -> Tensor:
        """The node ids of the graphs ``index``, graph by graph in the given order."""
        index = torch.as_tensor(index, dtype=torch.long).reshape(-1)
        if index.numel() and (int(index.min()) < 0 or int(index.max()) >= self.num_graphs):
            raise IndexError(f"GraphDataset: graph ids must lie in [0, {self.num_graphs}), got "
                             f"values in [{int(index.min())}, {int(index.max())}]")
        return _ranges(self._ptr[index], self._ptr[index + 1])

    def collate(self, index) -> Tuple[Graph, Tensor, Tensor, Tensor]:
        """The graphs ``index`` (int64 ids) as ``(graph, x, batch, y)``: one disjoint union
        whose ``batch`` numbers the selected graphs ``0..len(index)-1`` in the given order.
        O(nodes + edges of the selected graphs): each graph's incoming edges are one contiguous
        range of the CSR, copied with its sources shifted, so no sort is needed."""
        index = torch.as_tensor(index, dtype=torch.long).reshape(-1)
        nodes = self.node_ids(index)
        sizes = self._ptr[index + 1] - self._ptr[index]
        rowptr = self.graph.rowptr
        deg = rowptr[nodes + 1] - rowptr[nodes]
        new_rowptr = torch.zeros(nodes.numel() + 1, dtype=torch.long)
        torch.cumsum(deg, 0, out=new_rowptr[1:])
        starts = torch.zeros_like(sizes)
        starts[1:] = torch.cumsum(sizes, 0)[:-1]
        edges = _ranges(rowptr[self._ptr[index]], rowptr[self._ptr[index + 1]])
        edge_graph_sizes = rowptr[self._ptr[index + 1]] - rowptr[self._ptr[index]]
        shift = torch.repeat_interleave(self._ptr[index] - starts, edge_graph_sizes)
        graph = Graph(new_rowptr, self.graph.col[edges] - shift, nodes.numel(), validate=False)
        graph._checked = self.graph._checked   # whole graphs' rows of a checked graph
        batch = torch.repeat_interleave(torch.arange(index.numel()), sizes)
        return graph, select_rows(self.x, nodes), batch, self.y[index]


def _ranges(start: Tensor, end: Tensor) -> Tensor:
    """The concatenation of ``arange(start[k], end[k])`` over k, without a Python loop."""
    lengths = end - start
    total = int(lengths.sum()) if lengths.numel() else 0
    offsets = torch.zeros_like(lengths)
    if lengths.numel():
        offsets[1:] = torch.cumsum(lengths, 0)[:-1]
    return torch.arange(total, dtype=torch.long) + torch.repeat_interleave(start - offsets, lengths)


def stratified_kfold(y: Tensor, n_folds: int = 10, seed: int = 0) -> List[Tuple[Tensor, Tensor]]:
    """Seeded stratified ``n_folds``-fold cross-validation indices for labels ``y [G]``:
    a list of ``(train_idx, test_idx)``; every item is in exactly one test fold, and each
    class is spread over the folds as evenly as possible (fold sizes differ by at most one
    per class). The same seed gives the same folds."""
    y = torch.as_tensor(y).reshape(-1)
    if n_folds < 2 or n_folds > y.numel():
        raise ValueError(f"stratified_kfold: need 2 <= n_folds <= {y.numel()}, got {n_folds}")
    gen = torch.Generator().manual_seed(seed)
    fold = torch.empty(y.numel(), dtype=torch.long)
    offset = 0
    for c in torch.unique(y).tolist():
        idx = (y == c).nonzero().view(-1)
        idx = idx[torch.randperm(idx.numel(), generator=gen)]
        # Continue the round-robin where the previous class stopped so fold sizes stay even.
        fold[idx] = (torch.arange(idx.numel()) + offset) % n_folds
        offset = (offset + idx.numel()) % n_folds
    return [((fold != k).nonzero().view(-1), (fold == k).nonzero().view(-1)) for k in range(n_folds)]
