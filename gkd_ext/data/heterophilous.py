"""Loader for the heterophilous-graph npz files of Platonov et al. (2023)."""
from __future__ import annotations

import os
from typing import Optional, Union

import numpy as np
import torch

from .dataset import NodeDataset, undirected_graph

_KEYS = ("node_features", "node_labels", "edges", "train_masks", "val_masks", "test_masks")


def load_heterophilous(path: Union[str, os.PathLike], split: int = 0,
                       name: Optional[str] = None) -> NodeDataset:
    """Read a Platonov et al. npz (``node_features [N, F]``, ``node_labels [N]``,
    ``edges [E, 2]`` listing each undirected edge once, ``{train,val,test}_masks [S, N]``)
    without unpickling. Edges are symmetrised; ``split`` (0..S-1, S = 10 in the published
    files) picks the row of the given masks."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"load_heterophilous: no file at {path!r}")
    with np.load(path, allow_pickle=False) as npz:
        missing = [k for k in _KEYS if k not in npz.files]
        if missing:
            raise ValueError(f"load_heterophilous: {path!r} lacks {missing}")
        x = np.asarray(npz["node_features"], dtype=np.float32)
        y = np.asarray(npz["node_labels"]).astype(np.int64)
        edges = np.asarray(npz["edges"])
        masks = [np.asarray(npz[k]) for k in _KEYS[3:]]
    n = x.shape[0]
    if y.shape != (n,):
        raise ValueError(f"load_heterophilous: node_labels has shape {y.shape}, expected ({n},)")
    if edges.ndim != 2 or edges.shape[1] != 2:
        raise ValueError(f"load_heterophilous: 'edges' must be [E, 2], got {edges.shape}")
    masks = [m[None] if m.ndim == 1 else m for m in masks]
    num_splits = masks[0].shape[0]
    if any(m.shape != (num_splits, n) for m in masks):
        raise ValueError(f"load_heterophilous: masks must all be [S, {n}], got {[m.shape for m in masks]}")
    if not 0 <= split < num_splits:
        raise ValueError(f"load_heterophilous: 'split' must lie in [0, {num_splits}), got {split}")
    graph = undirected_graph(edges[:, 0], edges[:, 1], n)
    train, val, test = (torch.from_numpy(m[split].astype(bool)) for m in masks)
    name = name or os.path.splitext(os.path.basename(path))[0].replace("_", "-")
    return NodeDataset(name, torch.from_numpy(x), torch.from_numpy(y), graph, train, val, test)
