"""Neighbour sampling for mini-batches: gkd::sample_neighbors (one hop per call, Floyd's
algorithm per row, an id table sized by the sample) against what a user without pyg-lib or
torch-sparse writes in PyTorch: gather every edge of the batch's rows, draw a random key per
edge, sort by (row, key), keep the first `fanout` of each row and relabel with torch.unique.

A batch of --batch seed nodes is sampled through len(--fanouts) hops (outermost first, as a
GNN's batch is) on the synthetic stand-ins of the standard workloads (power-law degrees, so hubs
are where the baseline pays: it touches every edge of a sampled row). Reported per case: the
median time of the whole multi-hop sample, its peak extra memory, and the sampled edges per
second (in the note). Check: the op's first rows equal the plain-Python reference
(gkd_ext.reference.sample_neighbors_reference) for the same seed; the baseline's blocks are
checked to hold only real edges with the fan-out respected.

    python bench/bench_sample.py                                    # CPU, arxiv and products
    python bench/bench_sample.py --device cuda --workloads arxiv reddit products
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from typing import List, Tuple  # noqa: E402

import torch  # noqa: E402

from common import Bench, parser  # noqa: E402

from gkd_ext import Graph  # noqa: E402
from gkd_ext.data import workload_graph  # noqa: E402
from gkd_ext.reference import sample_neighbors_reference  # noqa: E402

Tensor = torch.Tensor


def gkd_sample(g: Graph, seeds: Tensor, fanouts: List[int], seed: int) -> Tuple[Tensor, int]:
    nodes, edges = seeds, 0
    for hop, fanout in enumerate(reversed(fanouts)):
        rowptr, col, nodes, eids = torch.ops.gkd.sample_neighbors(g.rowptr, g.col, nodes, fanout,
                                                                  False, seed + hop)
        edges += eids.numel()
    return nodes, edges


def torch_hop(g: Graph, nodes: Tensor, fanout: int) -> Tuple[Tensor, Tensor, Tensor]:
    """One hop in plain PyTorch: (block rowptr, local col, src nodes); O(sum of full degrees)."""
    start = g.rowptr[nodes]
    deg = g.rowptr[nodes + 1] - start
    rows = torch.repeat_interleave(torch.arange(nodes.numel(), device=nodes.device), deg)
    offset = torch.repeat_interleave(torch.cumsum(deg, 0) - deg, deg)
    eids = start[rows] + torch.arange(rows.numel(), device=nodes.device) - offset
    keys = torch.rand(eids.numel(), device=nodes.device)
    order = torch.sort(keys).indices                                   # random order ...
    order = order[torch.sort(rows[order], stable=True).indices]        # ... within each row
    rank = torch.arange(order.numel(), device=nodes.device) - offset[order]
    picked = order[rank < fanout]
    picked = picked[torch.sort(rows[picked], stable=True).indices]
    count = torch.bincount(rows[picked], minlength=nodes.numel())
    rowptr = torch.cat([count.new_zeros(1), torch.cumsum(count, 0)])
    src_global = g.col[eids[picked]]
    # Relabel: the batch's nodes first, then the new sources.
    uniq, inverse = torch.unique(torch.cat([nodes, src_global]), return_inverse=True)
    first = torch.full((uniq.numel(),), -1, dtype=torch.long, device=nodes.device)
    first[inverse[: nodes.numel()]] = torch.arange(nodes.numel(), device=nodes.device)
    new = first < 0
    first[new] = nodes.numel() + torch.arange(int(new.sum()), device=nodes.device)
    src = torch.empty(uniq.numel(), dtype=torch.long, device=nodes.device)
    src[first] = uniq
    return rowptr, first[inverse[nodes.numel():]], src


def torch_sample(g: Graph, seeds: Tensor, fanouts: List[int]) -> Tuple[Tensor, int, list]:
    nodes, edges, blocks = seeds, 0, []
    for fanout in reversed(fanouts):
        rowptr, col, src = torch_hop(g, nodes, fanout)
        blocks.append((nodes, rowptr, col, src))
        nodes, edges = src, edges + col.numel()
    return nodes, edges, blocks


def check_torch_blocks(g: Graph, blocks, fanouts) -> Tuple[Tensor, Tensor]:
    """(violations, 0): every sampled edge exists and no row exceeds its fan-out."""
    bad = 0
    edges = set(zip(g.col.tolist(), g.row.tolist())) if g.num_edges < 5_000_000 else None
    for (nodes, rowptr, col, src), fanout in zip(blocks, reversed(fanouts)):
        counts = rowptr[1:] - rowptr[:-1]
        deg = g.rowptr[nodes + 1] - g.rowptr[nodes]
        bad += int((counts != deg.clamp(max=fanout)).sum())
        if edges is not None:
            dst = torch.repeat_interleave(nodes, counts)
            bad += sum((u, v) not in edges for u, v in zip(src[col].tolist(), dst.tolist()))
    return torch.tensor(float(bad)), torch.tensor(0.0)


def make_parser() -> argparse.ArgumentParser:
    p = parser(__doc__.split("\n")[0])
    p.add_argument("--workloads", nargs="+", default=["arxiv", "products"])
    p.add_argument("--scale", type=float, default=1.0, help="shrink the workload graphs")
    p.add_argument("--batch", type=int, default=1024, help="seed nodes per batch")
    p.add_argument("--fanouts", type=int, nargs="+", default=[15, 10, 5],
                   help="per layer, input side first (GraphSAGE's 3-layer setting)")
    p.add_argument("--check-nodes", type=int, default=64)
    return p


def main() -> None:
    args = make_parser().parse_args()
    bench = Bench("sample", args)
    dev = bench.device
    for name in args.workloads:
        g = workload_graph(name, args.scale, device=dev)
        g.row   # noqa: B018  (built before timing: the baseline needs it for its check only)
        gen = torch.Generator().manual_seed(0)
        seeds = torch.randperm(g.num_dst, generator=gen)[: args.batch].to(dev)
        case = f"{name} b={args.batch} f={','.join(map(str, args.fanouts))}"
        edges = gkd_sample(g, seeds, args.fanouts, 1)[1]

        def check_gkd():
            k = min(args.check_nodes, seeds.numel())
            got = torch.ops.gkd.sample_neighbors(g.rowptr, g.col, seeds, args.fanouts[-1], False, 1)
            ref = sample_neighbors_reference(g.to("cpu"), seeds[:k].cpu(), args.fanouts[-1], False, 1)
            n_e = int(ref[0][-1])
            return got[3][:n_e].cpu().double(), ref[3].double()

        row = bench.add(case, "gkd_ext", lambda: gkd_sample(g, seeds, args.fanouts, 1),
                        check=check_gkd, tol=0.0)
        if row.ms:
            row.note = f"{edges / row.ms / 1e3:.2f} M sampled edges/s ({edges} edges)"
            print(f"    {row.impl}: {row.note}", flush=True)
        base_edges = torch_sample(g, seeds, args.fanouts)[1]
        row = bench.add(case, "torch (sort per row)", lambda: torch_sample(g, seeds, args.fanouts),
                        check=lambda: check_torch_blocks(g, torch_sample(g, seeds, args.fanouts)[2],
                                                         args.fanouts),
                        tol=0.0, baseline=True)
        if row.ms:
            row.note = f"{base_edges / row.ms / 1e3:.2f} M sampled edges/s ({base_edges} edges)"
            print(f"    {row.impl}: {row.note}", flush=True)
    bench.finish()


if __name__ == "__main__":
    main()
