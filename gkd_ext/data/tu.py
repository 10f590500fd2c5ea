"""Loader for the TU Dortmund graph-classification raw text format."""
from __future__ import annotations

import os
from typing import Optional, Union

import numpy as np
import torch

from .dataset import GraphDataset, undirected_graph
from .safe_io import Where, expansion_limit, read_ascii

_LOADER = "load_tu"


def _read_table(path: str, dtype, where: Where) -> np.ndarray:
    """A comma/whitespace separated text table as a 2-D array ``[rows, cols]``. Integers out
    of the int64 range saturate, which every range check downstream then rejects."""
    field = os.path.basename(path)
    text = read_ascii(path, where, "comma or space separated numbers")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        return np.zeros((0, 1), dtype=dtype)
    cols = len(lines[0].replace(",", " ").split())
    # np.fromstring's text mode parses in C; much faster than splitting in Python.
    try:
        flat = np.fromstring(text.replace(",", " "), dtype=dtype, sep=" ")
    except ValueError:
        flat = None
    if flat is None or flat.size != cols * len(lines):
        integer = np.dtype(dtype).kind == "i"
        kind = "integers" if integer else "numbers"
        bad = next((i for i, ln in enumerate(lines, 1)
                    if len(ln.replace(",", " ").split()) != cols), None)
        detail = f"line {bad} has a different number of columns than line 1 ({cols})" if bad \
            else f"holds an entry that is not {'an integer' if integer else 'a number'}"
        raise where.error(field, f"{detail}; expected {cols} {kind} per line")
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

    Every id is range-checked against the files it refers to, and a one-hot block is sized
    only after its width has been checked: at most one column per node, and no larger than
    the expansion cap of :mod:`gkd_ext.data.safe_io` allows for the labels file.

    Raises:
        FileNotFoundError: a missing required file (named).
        DataFormatError (a ValueError): a malformed or inconsistent file; the message names
            the file, what is wrong and what was expected.
    """
    root = os.fspath(root)
    if not os.path.exists(os.path.join(root, f"{name}_A.txt")) and \
            os.path.exists(os.path.join(root, "raw", f"{name}_A.txt")):
        root = os.path.join(root, "raw")

    def path(suffix: str, required: bool = True) -> Optional[str]:
        p = os.path.join(root, f"{name}_{suffix}.txt")
        if not os.path.exists(p):
            if required:
                raise FileNotFoundError(f"{_LOADER}: missing {p!r}")
            return None
        return p

    def table(p: str, dtype, columns: Optional[int] = None) -> np.ndarray:
        where = Where(_LOADER, p)
        t = _read_table(p, dtype, where)
        if columns is not None and t.size and t.shape[1] != columns:
            raise where.error(os.path.basename(p), f"has {t.shape[1]} columns; expected {columns}")
        return t

    a_path, ind_path, gl_path = path("A"), path("graph_indicator"), path("graph_labels")
    a = table(a_path, np.int64, 2)
    if a.size == 0:
        a = np.zeros((0, 2), dtype=np.int64)
    indicator = table(ind_path, np.int64, 1)[:, 0]
    graph_labels = table(gl_path, np.int64, 1)[:, 0]
    n = indicator.size
    num_graphs = graph_labels.size
    if a.size and (int(a.min()) < 1 or int(a.max()) > n):
        raise Where(_LOADER, a_path).error(
            f"{name}_A.txt", f"node ids lie in [{int(a.min())}, {int(a.max())}]; expected [1, {n}] "
                             f"({n} nodes in {name}_graph_indicator.txt)")
    if n and (int(indicator.min()) < 1 or int(indicator.max()) > num_graphs):
        raise Where(_LOADER, ind_path).error(
            f"{name}_graph_indicator.txt", f"graph ids lie in [{int(indicator.min())}, "
                                           f"{int(indicator.max())}]; expected [1, {num_graphs}] "
                                           f"({num_graphs} lines in {name}_graph_labels.txt)")
    indicator = indicator - 1
    a = a - 1
    if np.any(np.diff(indicator) < 0):
        raise Where(_LOADER, ind_path).error(
            f"{name}_graph_indicator.txt", "is not sorted; expected the nodes listed graph by graph")
    feats = []
    attr_path = path("node_attributes", required=False)
    if attr_path:
        feats.append((attr_path, table(attr_path, np.float32)))
    label_path = path("node_labels", required=False)
    if label_path:
        lab = table(label_path, np.int64)
        where = Where(_LOADER, label_path)
        if lab.shape[0] != n:
            raise where.error(f"{name}_node_labels.txt", f"has {lab.shape[0]} lines; expected one "
                                                         f"per node ({n})")
        # One one-hot block per label column (some TU sets have several), each as wide as the
        # label range: checked before allocating N x width.
        lo = lab.min(axis=0) if n else np.zeros(lab.shape[1], dtype=np.int64)
        hi = lab.max(axis=0) if n else lo - 1
        widths = [int(hi[j]) - int(lo[j]) + 1 for j in range(lab.shape[1])]
        cap = expansion_limit(os.path.getsize(label_path))
        if any(w > n for w in widths) or 4 * n * sum(widths) > cap:
            raise where.error(f"{name}_node_labels.txt",
                              f"labels span {widths} values per column; expected at most one "
                              f"value per node ({n}) and a one-hot encoding of at most {cap} bytes")
        lab = lab - lo
        for j, w in enumerate(widths):
            onehot = np.zeros((n, w), dtype=np.float32)
            onehot[np.arange(n), lab[:, j]] = 1.0
            feats.append((label_path, onehot))
    if not feats:
        feats.append((None, np.ones((n, 1), dtype=np.float32)))
    for p, f in feats:
        if f.shape[0] != n:
            raise Where(_LOADER, p).error(os.path.basename(p), f"has {f.shape[0]} lines; expected "
                                                               f"one per node ({n})")
    x = torch.from_numpy(np.concatenate([f for _, f in feats], axis=1))
    _, y = np.unique(graph_labels, return_inverse=True)
    graph = undirected_graph(a[:, 0], a[:, 1], n)
    return GraphDataset(name, x, graph, torch.from_numpy(indicator),
                        torch.from_numpy(y.reshape(-1).astype(np.int64)))
