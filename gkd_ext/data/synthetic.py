"""Seeded synthetic graphs with the sizes and degree skew of the standard workloads (PERF.md)."""
from __future__ import annotations

from typing import Optional

import torch

from ..graph import Graph

# name: (num_nodes, num_edges) of the real graphs they stand in for.
WORKLOADS = {
    "arxiv": (169_343, 2_330_000),       # symmetrised ogbn-arxiv
    "products": (2_449_029, 123_718_280),
    "reddit": (232_965, 114_615_892),
}


def power_law_graph(num_nodes: int, num_edges: int, exponent: float = 0.8, seed: int = 0,
                    device: Optional[torch.device] = None) -> Graph:
    """A directed graph whose in-degrees follow a power law (a few hubs, a long tail).

    Destinations are drawn with probability proportional to ``rank ** -exponent`` (node ranks
    shuffled so hubs are spread over the id range), sources uniformly. Duplicates may occur,
    as in real multigraphs; nothing is downloaded, and the same seed gives the same graph.
    """
    if num_nodes <= 0 or num_edges < 0:
        raise ValueError(f"power_law_graph: need num_nodes > 0 and num_edges >= 0, got {num_nodes}, {num_edges}")
    gen = torch.Generator().manual_seed(seed)
    weights = torch.arange(1, num_nodes + 1, dtype=torch.float64).pow(-exponent)
    cdf = torch.cumsum(weights, 0)
    cdf /= cdf[-1].clone()
    relabel = torch.randperm(num_nodes, generator=gen)
    chunks_src, chunks_dst = [], []
    chunk = 1 << 24
    for start in range(0, num_edges, chunk):
        m = min(chunk, num_edges - start)
        u = torch.rand(m, generator=gen, dtype=torch.float64)
        dst = relabel[torch.searchsorted(cdf, u).clamp_(max=num_nodes - 1)]
        src = torch.randint(0, num_nodes, (m,), generator=gen)
        chunks_src.append(src)
        chunks_dst.append(dst)
    if num_edges == 0:
        chunks_src, chunks_dst = [torch.empty(0, dtype=torch.long)], [torch.empty(0, dtype=torch.long)]
    edge_index = torch.stack([torch.cat(chunks_src), torch.cat(chunks_dst)])
    del chunks_src, chunks_dst
    if device is not None:
        edge_index = edge_index.to(device)
    return Graph.from_edge_index(edge_index, num_nodes)


def workload_graph(name: str, scale: float = 1.0, seed: int = 0,
                   device: Optional[torch.device] = None) -> Graph:
    """The synthetic stand-in for a standard workload (``arxiv``, ``products``, ``reddit``);
    ``scale`` < 1 shrinks nodes and edges alike (say so when reporting)."""
    if name not in WORKLOADS:
        raise ValueError(f"workload_graph: unknown workload {name!r}; choose from {sorted(WORKLOADS)}")
    n, e = WORKLOADS[name]
    return power_law_graph(max(1, int(n * scale)), int(e * scale), seed=seed, device=device)
