"""Loader for the GraphSAGE/PyG raw PPI files (Zitnik & Leskovec; Hamilton et al. 2017)."""
from __future__ import annotations

import json
import os
from typing import Union

import numpy as np
import torch

from .dataset import NodeDataset, undirected_graph
from .safe_io import INTEGER, NUMERIC, Where, read_npy

SPLITS = ("train", "valid", "test")
_LOADER = "load_ppi"


def _read_json(path: str, where: Where):
    field = os.path.basename(path)
    try:
        with open(path, "rb") as f:
            return json.loads(f.read().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise where.error(field, f"is not UTF-8 text (byte {exc.start}); expected node-link "
                                 "JSON") from None
    except RecursionError:
        raise where.error(field, "nests JSON too deeply; expected node-link JSON") from None
    except ValueError as exc:  # json.JSONDecodeError, and int() digit limits
        raise where.error(field, f"is not valid JSON ({exc}); expected node-link JSON") from None


def _read_node_link(path: str, num_nodes: int):
    """Edges of a networkx node-link JSON file (plain ``json``, no pickle), as positions
    ``id - min(id)`` of integer node ids that must cover ``0..num_nodes-1`` after the shift."""
    where = Where(_LOADER, path)
    field = os.path.basename(path)
    data = _read_json(path, where)
    if not isinstance(data, dict):
        raise where.error(field, f"holds a JSON {type(data).__name__}; expected an object with "
                                 "'nodes' and 'links'")
    nodes = data.get("nodes")
    links = data.get("links", data.get("edges"))
    if not isinstance(nodes, list) or not isinstance(links, list):
        raise where.error(field, "is not a node-link graph; expected lists 'nodes' and 'links' "
                                 "(or 'edges')")
    if not all(isinstance(nd, dict) and type(nd.get("id")) is int for nd in nodes):
        raise where.error("nodes", f"in {field}: expected objects with an integer 'id' each")
    ids = [nd["id"] for nd in nodes]
    base = min(ids) if ids else 0
    if len(ids) != num_nodes or sorted(i - base for i in ids) != list(range(num_nodes)):
        raise where.error("nodes", f"in {field}: expected {num_nodes} consecutive integer ids "
                                   "matching the rows of the features file")
    for lk in links:
        if not isinstance(lk, dict) or not all(type(lk.get(k)) is int and
                                               0 <= lk[k] - base < num_nodes
                                               for k in ("source", "target")):
            raise where.error("links", f"in {field}: link {str(lk)[:80]} must have integer "
                                       f"'source' and 'target' among the node ids "
                                       f"[{base}, {base + num_nodes})")
    src = np.array([lk["source"] - base for lk in links], dtype=np.int64)
    dst = np.array([lk["target"] - base for lk in links], dtype=np.int64)
    return src, dst


def load_ppi(root: Union[str, os.PathLike]) -> NodeDataset:
    """Read ``root/{train,valid,test}_{graph.json,feats.npy,labels.npy,graph_id.npy}``.

    Returns one :class:`NodeDataset` over the disjoint union of all graphs (24 in the
    published data: 20 train, 2 validation, 2 test): ``x [N, 50]``, multi-label ``y [N, 121]``
    (float 0/1, ``multilabel=True``), masks selecting the nodes of each split, and
    ``graph_id`` numbering the graphs consecutively across splits. Edges never cross graphs,
    so full-batch message passing on the union is inductive; ``dataset.subgraph(mask)`` cuts
    out a split. Arrays are read with :func:`gkd_ext.data.safe_io.read_npy` (never unpickled;
    each header's shape is checked against the file size before anything is allocated).

    Raises:
        FileNotFoundError: a missing file (named).
        DataFormatError (a ValueError): a malformed or inconsistent file; the message names
            the file, the field and what was expected.
    """
    root = os.fspath(root)
    xs, ys, gids, srcs, dsts, split_of = [], [], [], [], [], []
    offset, gid_offset = 0, 0
    all_paths = [{k: os.path.join(root, f"{split}_{k}") for k in
                  ("graph.json", "feats.npy", "labels.npy", "graph_id.npy")} for split in SPLITS]
    for paths in all_paths:  # report a missing file before reading anything
        for p in paths.values():
            if not os.path.exists(p):
                raise FileNotFoundError(f"{_LOADER}: missing {p!r}")
    for s, (split, paths) in enumerate(zip(SPLITS, all_paths)):
        x = read_npy(paths["feats.npy"], _LOADER, kinds=NUMERIC, ndim=2).astype(np.float32, copy=False)
        n = x.shape[0]
        y = read_npy(paths["labels.npy"], _LOADER, kinds=NUMERIC, ndim=2)
        if y.shape[0] != n:
            raise Where(_LOADER, paths["labels.npy"]).error(
                f"{split}_labels.npy", f"has {y.shape[0]} rows; expected {n}, one per row of "
                                       f"{split}_feats.npy")
        if bool(((y != 0) & (y != 1)).any()):   # NaN included
            raise Where(_LOADER, paths["labels.npy"]).error(
                f"{split}_labels.npy", "holds values outside {0, 1}; expected multi-label 0/1")
        gid = read_npy(paths["graph_id.npy"], _LOADER, kinds=INTEGER, ndim=(1, 2)).reshape(-1)
        if gid.shape[0] != n:
            raise Where(_LOADER, paths["graph_id.npy"]).error(
                f"{split}_graph_id.npy", f"has {gid.shape[0]} entries; expected {n}, one per row "
                                         f"of {split}_feats.npy")
        src, dst = _read_node_link(paths["graph.json"], n)
        if src.size and np.any(gid[src] != gid[dst]):
            raise Where(_LOADER, paths["graph.json"]).error(
                "links", f"in {split}_graph.json join nodes of different graphs (per "
                         f"{split}_graph_id.npy); expected edges within a graph")
        _, gid = np.unique(gid, return_inverse=True)
        xs.append(x)
        ys.append(y.astype(np.float32, copy=False))
        gids.append(gid.reshape(-1) + gid_offset)
        srcs.append(src + offset)
        dsts.append(dst + offset)
        split_of.append(np.full(n, s))
        offset += n
        gid_offset += int(gid.max()) + 1 if n else 0
    for what, arrays, name in (("feature", xs, "feats.npy"), ("label", ys, "labels.npy")):
        widths = [a.shape[1] for a in arrays]
        if len(set(widths)) != 1:
            raise Where(_LOADER, root).error(
                name, f"the splits disagree on the number of {what} columns ({dict(zip(SPLITS, widths))}); "
                      "expected the same in train, valid and test")
    graph = undirected_graph(np.concatenate(srcs), np.concatenate(dsts), offset)
    split_of = torch.from_numpy(np.concatenate(split_of))
    return NodeDataset("ppi", torch.from_numpy(np.concatenate(xs)),
                       torch.from_numpy(np.concatenate(ys)), graph,
                       split_of == 0, split_of == 1, split_of == 2, multilabel=True, metric="micro_f1",
                       graph_id=torch.from_numpy(np.concatenate(gids)))
