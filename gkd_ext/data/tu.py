"""Loader for the TU Dortmund graph-classification raw text format."""
from __future__ import annotations

import os
from typing import Optional, Union

import numpy as np
import torch

from .dataset import GraphDataset, undirected_graph


def _read_table(path: str, dtype) -> np.ndarray:
    """A comma/whitespace separated text table as a 2-D array ``[rows, cols]``."""
    with open(path) as f:
        text = f.read()
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        return np.zeros((0, 1), dtype=dtype)
    cols = len(lines[0].replace(",", " ").split())
    # np.fromstring's text mode parses in C; much faster than splitting in Python.
    flat = np.fromstring(text.replace(",", " "), dtype=dtype, sep=" ")
    if flat.size != cols * len(lines):
        raise ValueError(f"load_tu: {path!r} has rows of different lengths or non-numeric entries")
    return flat.reshape(len(lines), cols)


def load_tu(root: Union[str, os.PathLike], name: str) -> GraphDataset:
    """Read ``<root>/<name>_*.txt`` (also found in ``<root>/raw/``) into a :class:`GraphDataset`.

    Files: ``_A.txt`` (one "row, col" line per directed entry, 1-based node ids),
    ``_graph_indicator.txt`` (1-based graph id per node), ``_graph_labels.txt``; optional
    ``_node_attributes.txt`` (continuous) and ``_node_labels.txt`` (categorical, one-hot
    encoded after subtracting the minimum). Features are ``[attributes, one-hot labels]``;
    datasets with neither (IMDB, COLLAB) get one constant feature. Graph labels are mapped
    to ``0..C-1`` in sorted order (MUTAG's -1/1 become 0/1). Edges are symmetrised, duplicates
    merged and self-loops dropped.
    """
    root = os.fspath(root)
    if not os.path.exists(os.path.join(root, f"{name}_A.txt")) and \
            os.path.exists(os.path.join(root, "raw", f"{name}_A.txt")):
        root = os.path.join(root, "raw")

    def path(suffix: str, required: bool = True) -> Optional[str]:
        p = os.path.join(root, f"{name}_{suffix}.txt")
        if not os.path.exists(p):
            if required:
                raise FileNotFoundError(f"load_tu: missing {p!r}")
            return None
        return p

    a = _read_table(path("A"), np.int64)
    indicator = _read_table(path("graph_indicator"), np.int64)[:, 0] - 1
    graph_labels = _read_table(path("graph_labels"), np.int64)[:, 0]
    n = indicator.size
    num_graphs = graph_labels.size
    if a.shape[1] != 2:
        raise ValueError(f"load_tu: {name}_A.txt must hold 'row, col' pairs")
    a = a - 1
    if a.size and (a.min() < 0 or a.max() >= n):
        raise ValueError(f"load_tu: node ids in {name}_A.txt must lie in [1, {n}]")
    if n and (indicator.min() < 0 or indicator.max() >= num_graphs):
        raise ValueError(f"load_tu: graph ids in {name}_graph_indicator.txt must lie in [1, {num_graphs}]")
    if np.any(np.diff(indicator) < 0):
        raise ValueError(f"load_tu: {name}_graph_indicator.txt must list nodes graph by graph")
    feats = []
    attr_path = path("node_attributes", required=False)
    if attr_path:
        feats.append(_read_table(attr_path, np.float32))
    label_path = path("node_labels", required=False)
    if label_path:
        lab = _read_table(label_path, np.int64)
        lab = lab - lab.min(axis=0, keepdims=True)
        # One one-hot block per label column (some TU sets have several).
        feats.extend(np.eye(int(lab[:, j].max()) + 1, dtype=np.float32)[lab[:, j]]
                     for j in range(lab.shape[1]))
    if not feats:
        feats.append(np.ones((n, 1), dtype=np.float32))
    if any(f.shape[0] != n for f in feats):
        raise ValueError(f"load_tu: node files of {name} disagree on the number of nodes ({n})")
    x = torch.from_numpy(np.concatenate(feats, axis=1))
    _, y = np.unique(graph_labels, return_inverse=True)
    graph = undirected_graph(a[:, 0], a[:, 1], n)
    return GraphDataset(name, x, graph, torch.from_numpy(indicator),
                        torch.from_numpy(y.reshape(-1).astype(np.int64)))
