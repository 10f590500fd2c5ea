"""Seeded synthetic graphs with the sizes and degree skew of the standard workloads (PERF.md)."""
from __future__ import annotations

from typing import Optional

import torch

from ..graph import Graph
from .dataset import NodeDataset, undirected_graph
from .shchur import per_class_split

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
    as in real multigraphs; nothing is downloaded, and the same seed gives the same graph on
    the same kind of device. On a CUDA ``device`` the edges are drawn there (the GPU's random
    generator: a different draw of the same distribution, seconds faster at products size);
    otherwise on the CPU.
    """
    if num_nodes <= 0 or num_edges < 0:
        raise ValueError(f"power_law_graph: need num_nodes > 0 and num_edges >= 0, got {num_nodes}, {num_edges}")
    on = torch.device(device) if device is not None and torch.device(device).type == "cuda" \
        else torch.device("cpu")
    gen = torch.Generator(device=on).manual_seed(seed)
    weights = torch.arange(1, num_nodes + 1, dtype=torch.float64, device=on).pow(-exponent)
    cdf = torch.cumsum(weights, 0)
    cdf /= cdf[-1].clone()
    relabel = torch.randperm(num_nodes, generator=gen, device=on)
    chunks_src, chunks_dst = [], []
    chunk = 1 << 24
    for start in range(0, num_edges, chunk):
        m = min(chunk, num_edges - start)
        u = torch.rand(m, generator=gen, dtype=torch.float64, device=on)
        dst = relabel[torch.searchsorted(cdf, u).clamp_(max=num_nodes - 1)]
        src = torch.randint(0, num_nodes, (m,), generator=gen, device=on)
        chunks_src.append(src)
        chunks_dst.append(dst)
    if num_edges == 0:
        chunks_src = [torch.empty(0, dtype=torch.long, device=on)]
        chunks_dst = [torch.empty(0, dtype=torch.long, device=on)]
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


def csbm(num_nodes: int, num_classes: int, feature_dim: int, homophily: float,
         avg_degree: float, seed: int = 0, feature_noise: float = 1.0,
         mean_scale: float = 1.0) -> NodeDataset:
    """A contextual stochastic block model: a :class:`NodeDataset` whose edge homophily is
    set by a knob.

    Labels are uniform over ``num_classes``. About ``num_nodes * avg_degree / 2`` undirected
    edges are drawn: each picks a uniform endpoint ``u`` and, with probability ``homophily``,
    a partner of ``u``'s class, otherwise one of another class (both uniform), so the edge
    homophily (share of edges joining equal labels) is ``homophily`` up to sampling noise and
    the few self-loops/duplicates that are dropped. Features are Gaussian around class means:
    ``x = mean_scale * mu[y] + feature_noise * eps`` with ``mu, eps ~ N(0, I)``. The graph is
    symmetrised without self-loops; masks are the 20/30-per-class split with the same seed.
    """
    if num_nodes <= 0 or num_classes < 2 or num_nodes < num_classes:
        raise ValueError(f"csbm: need num_nodes >= num_classes >= 2, got {num_nodes}, {num_classes}")
    if not 0.0 <= homophily <= 1.0:
        raise ValueError(f"csbm: 'homophily' must lie in [0, 1], got {homophily}")
    if avg_degree < 0 or feature_dim <= 0:
        raise ValueError(f"csbm: need avg_degree >= 0 and feature_dim > 0, got {avg_degree}, {feature_dim}")
    gen = torch.Generator().manual_seed(seed)
    # Round-robin labels, shuffled, so every class has floor or ceil of N/C nodes.
    y = (torch.arange(num_nodes) % num_classes)[torch.randperm(num_nodes, generator=gen)]
    order = torch.argsort(y, stable=True)
    counts = torch.bincount(y, minlength=num_classes)
    start = torch.zeros(num_classes, dtype=torch.long)
    start[1:] = torch.cumsum(counts, 0)[:-1]
    m = int(round(num_nodes * avg_degree / 2))
    u = torch.randint(0, num_nodes, (m,), generator=gen)
    same = torch.rand(m, generator=gen) < homophily
    # Partner class: u's own, or a uniformly chosen different one.
    shift = torch.randint(1, num_classes, (m,), generator=gen)
    cls = torch.where(same, y[u], (y[u] + shift) % num_classes)
    pick = (torch.rand(m, generator=gen) * counts[cls]).long()
    v = order[start[cls] + torch.minimum(pick, counts[cls] - 1)]
    mu = torch.randn(num_classes, feature_dim, generator=gen)
    x = mean_scale * mu[y] + feature_noise * torch.randn(num_nodes, feature_dim, generator=gen)
    graph = undirected_graph(u, v, num_nodes)
    train, val, test = per_class_split(y, 20, 30, seed=seed)
    return NodeDataset(f"csbm-h{homophily:g}", x, y, graph, train, val, test)


def edge_homophily(graph: Graph, y: torch.Tensor) -> float:
    """Share of edges whose endpoints have the same label (Zhu et al. 2020)."""
    if graph.num_edges == 0:
        return float("nan")
    return float((y[graph.col] == y[graph.row]).float().mean())
