"""Loader for the GraphSAGE/PyG raw PPI files (Zitnik & Leskovec; Hamilton et al. 2017)."""
from __future__ import annotations

import json
import os
from typing import Union

import numpy as np
import torch

from .dataset import NodeDataset, undirected_graph

SPLITS = ("train", "valid", "test")


def _read_node_link(path: str, num_nodes: int):
    """Edges of a networkx node-link JSON file (plain ``json``, no pickle), as positions
    ``id - min(id)`` of integer node ids that must cover ``0..num_nodes-1`` after the shift."""
    with open(path) as f:
        data = json.load(f)
    nodes = data.get("nodes")
    links = data.get("links", data.get("edges"))
    if not isinstance(nodes, list) or not isinstance(links, list):
        raise ValueError(f"load_ppi: {path!r} is not a node-link graph (needs 'nodes' and 'links')")
    ids = [nd["id"] for nd in nodes]
    if not all(isinstance(i, int) for i in ids):
        raise ValueError(f"load_ppi: {path!r} has non-integer node ids")
    base = min(ids) if ids else 0
    if sorted(i - base for i in ids) != list(range(num_nodes)):
        raise ValueError(f"load_ppi: node ids in {path!r} must be {num_nodes} consecutive integers "
                         "matching the rows of the features file")
    src = np.array([lk["source"] for lk in links], dtype=np.int64) - base
    dst = np.array([lk["target"] for lk in links], dtype=np.int64) - base
    return src, dst


def load_ppi(root: Union[str, os.PathLike]) -> NodeDataset:
    """Read ``root/{train,valid,test}_{graph.json,feats.npy,labels.npy,graph_id.npy}``.

    Returns one :class:`NodeDataset` over the disjoint union of all graphs (24 in the
    published data: 20 train, 2 validation, 2 test): ``x [N, 50]``, multi-label ``y [N, 121]``
    (float 0/1, ``multilabel=True``), masks selecting the nodes of each split, and
    ``graph_id`` numbering the graphs consecutively across splits. Edges never cross graphs,
    so full-batch message passing on the union is inductive; ``dataset.subgraph(mask)`` cuts
    out a split. Arrays are read with ``allow_pickle=False``.
    """
    root = os.fspath(root)
    xs, ys, gids, srcs, dsts, split_of = [], [], [], [], [], []
    offset, gid_offset = 0, 0
    all_paths = [{k: os.path.join(root, f"{split}_{k}") for k in
                  ("graph.json", "feats.npy", "labels.npy", "graph_id.npy")} for split in SPLITS]
    for paths in all_paths:  # report a missing file before reading anything
        for p in paths.values():
            if not os.path.exists(p):
                raise FileNotFoundError(f"load_ppi: missing {p!r}")
    for s, (split, paths) in enumerate(zip(SPLITS, all_paths)):
        x = np.load(paths["feats.npy"], allow_pickle=False).astype(np.float32)
        y = np.load(paths["labels.npy"], allow_pickle=False).astype(np.float32)
        gid = np.load(paths["graph_id.npy"], allow_pickle=False).astype(np.int64).reshape(-1)
        n = x.shape[0]
        if y.shape[0] != n or gid.shape[0] != n or y.ndim != 2:
            raise ValueError(f"load_ppi: {split} files disagree: feats {x.shape}, labels "
                             f"{y.shape}, graph_id {gid.shape}")
        src, dst = _read_node_link(paths["graph.json"], n)
        if src.size and np.any(gid[src] != gid[dst]):
            raise ValueError(f"load_ppi: {split}_graph.json has edges between different graphs")
        _, gid = np.unique(gid, return_inverse=True)
        xs.append(x)
        ys.append(y)
        gids.append(gid.reshape(-1) + gid_offset)
        srcs.append(src + offset)
        dsts.append(dst + offset)
        split_of.append(np.full(n, s))
        offset += n
        gid_offset += int(gid.max()) + 1 if n else 0
    if len({y.shape[1] for y in ys}) != 1 or len({x.shape[1] for x in xs}) != 1:
        raise ValueError("load_ppi: the splits disagree on the number of features or labels")
    graph = undirected_graph(np.concatenate(srcs), np.concatenate(dsts), offset)
    split_of = torch.from_numpy(np.concatenate(split_of))
    return NodeDataset("ppi", torch.from_numpy(np.concatenate(xs)),
                       torch.from_numpy(np.concatenate(ys)), graph,
                       split_of == 0, split_of == 1, split_of == 2, multilabel=True, metric="micro_f1",
                       graph_id=torch.from_numpy(np.concatenate(gids)))
