"""Loader for the heterophilous-graph npz files of Platonov et al. (2023)."""
from __future__ import annotations

import os
from typing import Optional, Union

import numpy as np
import torch

from .dataset import NodeDataset, undirected_graph
from .safe_io import INTEGER, NUMERIC, NpzArchive, Where

_KEYS = ("node_features", "node_labels", "edges", "train_masks", "val_masks", "test_masks")
_LOADER = "load_heterophilous"


def load_heterophilous(path: Union[str, os.PathLike], split: Optional[int] = 0,
                       name: Optional[str] = None, seed: int = 0) -> NodeDataset:
    """Read a Platonov et al. npz (``node_features [N, F]``, ``node_labels [N]``,
    ``edges [E, 2]`` listing each undirected edge once, ``{train,val,test}_masks [S, N]``)
    without unpickling, through :class:`gkd_ext.data.safe_io.NpzArchive` (declared sizes are
    checked against the stored bytes before anything is allocated). Edges are symmetrised;
    ``split`` (0..S-1, S = 10 in the published files) picks the row of the given masks;
    ``split=None`` takes row ``seed % S`` (runs with seeds 0..S-1 cover every given split).
    Features stay dense (the format stores them dense).

    Raises:
        FileNotFoundError: no file at ``path``.
        DataFormatError (a ValueError): a malformed or inconsistent file; the message names
            the file, the array and what was expected.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{_LOADER}: no file at {path!r}")
    where = Where(_LOADER, path)
    with NpzArchive(path, where) as npz:
        missing = [k for k in _KEYS if k not in npz]
        if missing:
            raise where.error(missing[0], f"is missing (lacks {missing}); expected the arrays {list(_KEYS)}")
        x = npz.array("node_features", NUMERIC, ndim=2)
        n = x.shape[0]
        y = npz.array("node_labels", INTEGER, ndim=1)
        edges = npz.array("edges", INTEGER, ndim=2)
        masks = [npz.array(k, "b" + INTEGER, ndim=(1, 2)) for k in _KEYS[3:]]
    x = x.astype(np.float32, copy=False)
    if y.shape != (n,):
        raise where.error("node_labels", f"has shape {y.shape}; expected ({n},), one per row of "
                                         "'node_features'")
    if n and (int(y.min()) < 0 or int(y.max()) >= n):
        raise where.error("node_labels", f"lie in [{int(y.min())}, {int(y.max())}]; expected class "
                                         f"ids in [0, {n})")
    if edges.shape[1] != 2:
        raise where.error("edges", f"has shape {edges.shape}; expected [E, 2]")
    if edges.size and (int(edges.min()) < 0 or int(edges.max()) >= n):
        raise where.error("edges", f"endpoints lie in [{int(edges.min())}, {int(edges.max())}]; "
                                   f"expected node ids in [0, {n})")
    masks = [m[None] if m.ndim == 1 else m for m in masks]
    num_splits = masks[0].shape[0]
    for key, m in zip(_KEYS[3:], masks):
        if m.shape != (num_splits, n):
            raise where.error(key, f"has shape {m.shape}; expected [{num_splits}, {n}] like "
                                   "'train_masks' (one row per split, one column per node)")
        if m.dtype != np.bool_ and m.size and (int(m.min()) < 0 or int(m.max()) > 1):
            raise where.error(key, "holds values other than 0 and 1; expected a boolean mask")
    if split is None:
        split = seed % num_splits
    if not 0 <= split < num_splits:
        raise ValueError(f"{_LOADER}: 'split' must lie in [0, {num_splits}), got {split} "
                         f"({path!r} holds {num_splits} splits)")
    graph = undirected_graph(edges[:, 0], edges[:, 1], n)
    train, val, test = (torch.from_numpy(m[split].astype(bool)) for m in masks)
    name = name or os.path.splitext(os.path.basename(path))[0].replace("_", "-")
    return NodeDataset(name, torch.from_numpy(x), torch.from_numpy(y.astype(np.int64)), graph,
                       train, val, test)
