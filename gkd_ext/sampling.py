"""Neighbour sampling for mini-batch training (GraphSAGE-style), on the ``gkd::sample_neighbors`` op.

A batch of seed nodes becomes a stack of rectangular :class:`~gkd_ext.Graph` blocks, one per
layer: block ``l`` maps the rows of layer ``l`` (its sources) to the rows of layer ``l + 1`` (its
destinations). Every block's destinations are the first rows of its sources, in order, so the
seeds are the first rows of every layer and a layer's root term (``x_i`` in GraphSAGE and GIN)
is ``x[:num_dst]``. The models of :mod:`gkd_ext.nn` run on :class:`Blocks` as they run on a
graph (``prepare`` builds each block's operator); a model of fewer layers uses the last blocks.

Sampling is seeded by one integer per hop, drawn from torch's default generator unless given,
so ``torch.manual_seed`` (and a resumed run's restored generator state) fixes the batches; the
op hashes (seed, node, draw), so CPU and CUDA draw the same sample.

Example:
    >>> g = Graph.from_edge_index(torch.tensor([[0, 1, 2, 3], [1, 2, 3, 0]]), 4)
    >>> blocks = NeighborSampler(g, [2, 2]).sample(torch.tensor([0]))
    >>> [b.num_dst for b in blocks.graphs], blocks.num_seeds
    ([2, 1], 1)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple

import torch

from .graph import Graph, remove_self_loops

Tensor = torch.Tensor


def _seed(seed: Optional[int]) -> int:
    if seed is None:
        return int(torch.randint(0, 2 ** 62, (1,)))
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"sample_neighbors: 'seed' must be an int or None, got {type(seed).__name__}")
    return seed


def sample_neighbors(graph: Graph, nodes: Tensor, fanout: int, *, replace: bool = False,
                     seed: Optional[int] = None) -> Tuple[Graph, Tensor, Tensor]:
    """One hop: for each node of ``nodes`` (unique global ids), up to ``fanout`` of its
    incoming edges (all when ``fanout == -1`` or the node has no more; with ``replace``,
    exactly ``fanout`` draws with replacement).

    Returns ``(block, src_nodes, edge_ids)``: ``block`` has ``len(nodes)`` destinations (row
    ``i`` is ``nodes[i]``) and ``len(src_nodes)`` sources, ``src_nodes`` starting with
    ``nodes`` then the new sources in order of first appearance; ``edge_ids`` are the sampled
    edges' positions in ``graph``'s edge order (for gathering edge values). O(len(nodes) ·
    fanout) time and memory (Floyd's algorithm: a hub costs what a leaf does)."""
    if not isinstance(graph, Graph):
        raise TypeError(f"sample_neighbors: 'graph' must be a gkd_ext.Graph, got {type(graph).__name__}")
    if not graph.is_square:
        raise ValueError(f"sample_neighbors: the graph must be square (sources and destinations "
                         f"are the same nodes), got {graph.num_src} x {graph.num_dst}")
    if not isinstance(nodes, Tensor) or nodes.dtype not in (torch.int64, torch.int32):
        raise TypeError("sample_neighbors: 'nodes' must be an int64 tensor of node ids")
    if not isinstance(fanout, int) or isinstance(fanout, bool):
        raise TypeError(f"sample_neighbors: 'fanout' must be an int, got {type(fanout).__name__}")
    rowptr, col, src, eids = torch.ops.gkd.sample_neighbors(
        graph.rowptr, graph.col, nodes.long().contiguous(), fanout, bool(replace), _seed(seed))
    block = Graph(rowptr, col, src.numel(), validate=False)
    block._checked = True   # the op builds a valid CSR
    return block, src, eids


@dataclass
class Blocks:
    """The sampled computation graph of one batch: ``graphs[l]`` maps layer ``l``'s rows to
    layer ``l + 1``'s (input side first), ``node_ids`` are the global ids of the input rows
    (every layer's rows are a prefix of them), ``degree`` their in-degree in the sampled graph
    (for operators that rescale a sampled sum, e.g. GCN's), ``edge_ids[l]`` the sampled edges'
    positions in that graph."""
    graphs: List[Graph]
    node_ids: Tensor
    degree: Tensor
    edge_ids: List[Tensor]

    @property
    def num_seeds(self) -> int:
        """Rows of the output layer: the batch's seed nodes, the first rows of every layer."""
        return self.graphs[-1].num_dst

    @property
    def num_hidden_rows(self) -> int:
        """Rows of the last hidden layer (the seeds and their sampled neighbours), the rows
        every hidden output is trimmed to so that all layers align node for node."""
        return self.graphs[-1].num_src

    def for_layers(self, layers: int) -> List[Graph]:
        """The blocks a model of ``layers`` layers runs on: the last ``layers``."""
        if layers > len(self.graphs):
            raise ValueError(f"a model of {layers} layers needs {layers} sampled hops, but the "
                             f"batch has {len(self.graphs)}; give one fan-out per layer of the "
                             "deepest model (--fanouts)")
        return self.graphs[len(self.graphs) - layers:]

    def map(self, fn: Callable[[Graph, Tensor], Graph]) -> "Blocks":
        """The same batch with each block replaced by ``fn(block, degree)``, ``degree`` being
        the sampled graph's in-degree of the block's source rows (a model's ``prepare``)."""
        return Blocks([fn(g, self.degree[: g.num_src]) for g in self.graphs], self.node_ids,
                      self.degree, self.edge_ids)

    def to(self, device) -> "Blocks":
        return Blocks([g.to(device) for g in self.graphs], self.node_ids.to(device),
                      self.degree.to(device), [e.to(device) for e in self.edge_ids])


class NeighborSampler:
    """Samples :class:`Blocks` for batches of seed nodes of ``graph``, ``fanouts[l]``
    neighbours per node for layer ``l`` (input side first, as PyG's ``num_neighbors``; -1 takes
    every neighbour). Self-loops of ``graph`` are never sampled (the models add their own where
    they have one), so with every fan-out -1 a model's output on the seeds equals its
    full-graph output."""

    def __init__(self, graph: Graph, fanouts: Sequence[int], *, replace: bool = False):
        if not isinstance(graph, Graph):
            raise TypeError(f"NeighborSampler: 'graph' must be a gkd_ext.Graph, got {type(graph).__name__}")
        fanouts = list(fanouts)
        if not fanouts or any(not isinstance(f, int) or f < -1 for f in fanouts):
            raise ValueError(f"NeighborSampler: 'fanouts' must be a non-empty list of ints >= -1 "
                             f"(-1: every neighbour), got {fanouts}")
        # Copy the graph only when it has self-loops (at ogbn-products size a copy is GBs).
        self.graph = remove_self_loops(graph) if graph.has_self_loops() else graph
        self.fanouts, self.replace = fanouts, bool(replace)
        self.degree = self.graph.degree("in")

    def sample(self, seeds: Tensor, seed: Optional[int] = None) -> Blocks:
        """The blocks of one batch of ``seeds`` (unique global node ids). ``seed`` seeds the
        first hop (the next hops take seed + 1, ...); default: drawn from torch's generator."""
        base = _seed(seed)
        nodes = seeds.long().to(self.graph.device)
        graphs: List[Graph] = []
        edge_ids: List[Tensor] = []
        for hop, fanout in enumerate(reversed(self.fanouts)):
            block, nodes, eids = sample_neighbors(self.graph, nodes, fanout, replace=self.replace,
                                                  seed=base + hop)
            graphs.insert(0, block)
            edge_ids.insert(0, eids)
        return Blocks(graphs, nodes, self.degree[nodes], edge_ids)


def padded_square(block: Graph) -> Graph:
    """A block as a square graph over its source rows: its edges into the first ``num_dst``
    rows, no edges into the others. Losses over a graph's edges (LSP) read the batch's sampled
    neighbourhoods this way, with every hidden row a node."""
    n_src = block.num_src
    pad = block.rowptr.new_full((n_src - block.num_dst,), block.num_edges)
    g = Graph(torch.cat([block.rowptr, pad]), block.col, n_src, validate=False)
    g._checked = block._checked
    return g


def induced_subgraph(graph: Graph, nodes: Tensor) -> Graph:
    """The graph induced on ``nodes`` (unique global ids), node ``i`` being ``nodes[i]``: every
    edge of ``graph`` between two of them, in the graph's order. O(sum of their degrees)."""
    block, _, eids = sample_neighbors(graph, nodes, -1, seed=0)
    keep = block.col < block.num_dst
    ei = torch.stack([block.col[keep], block.row[keep]])
    value = None if graph.value is None else graph.value[eids[keep]]
    return Graph.from_edge_index(ei, block.num_dst, value=value)
