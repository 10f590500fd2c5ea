"""Loader for the Planetoid ``ind.<name>.*`` files (Yang et al. 2016; the GCN public split).

The binary files are Python-2 pickles. They are read with :class:`RestrictedUnpickler`,
which resolves only the handful of scipy/numpy/builtin names such files contain, so a
tampered file cannot run code while it is being loaded.
"""
from __future__ import annotations

import collections
import os
import pickle
from typing import Union

import numpy as np
import torch

from .dataset import NodeDataset, undirected_graph


def _allowed_globals():
    import scipy.sparse
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct
    csr = scipy.sparse.csr_matrix
    return {
        ("scipy.sparse.csr", "csr_matrix"): csr,
        ("scipy.sparse._csr", "csr_matrix"): csr,
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("collections", "defaultdict"): collections.defaultdict,
        ("__builtin__", "list"): list,
        ("builtins", "list"): list,
    }


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that can only build the objects found in Planetoid files: scipy CSR
    matrices, numpy arrays and dtypes, ``collections.defaultdict`` and ``list``. Any other
    global (``os.system``, ``builtins.eval``, ...) raises :class:`pickle.UnpicklingError`
    before it is resolved, so nothing outside this list can be called."""

    _ALLOWED = None

    def find_class(self, module: str, name: str):
        if RestrictedUnpickler._ALLOWED is None:
            RestrictedUnpickler._ALLOWED = _allowed_globals()
        obj = RestrictedUnpickler._ALLOWED.get((module, name))
        if obj is None:
            raise pickle.UnpicklingError(
                f"refusing to load global '{module}.{name}': Planetoid files may only reference "
                "scipy.sparse csr_matrix, numpy _reconstruct/ndarray/dtype, "
                "collections.defaultdict and list")
        return obj


def restricted_load(path: Union[str, os.PathLike]):
    """Unpickle one file with :class:`RestrictedUnpickler` (``encoding='latin1'``, which the
    Python-2 numpy pickles need)."""
    with open(path, "rb") as f:
        return RestrictedUnpickler(f, encoding="latin1").load()


def _dense(m) -> np.ndarray:
    return np.asarray(m.todense() if hasattr(m, "todense") else m, dtype=np.float32)


def load_planetoid(root: Union[str, os.PathLike], name: str) -> NodeDataset:
    """Read ``root/ind.<name>.{x,y,tx,ty,allx,ally,graph,test.index}`` into a
    :class:`NodeDataset` with the public split, following the GCN/PyG conventions:

    - nodes are ``allx`` then the test rows, with test rows moved to the ids in ``test.index``;
    - test ids missing from ``tx`` (CiteSeer's 15 isolated nodes) get zero feature rows and
      label 0 and are in no mask;
    - train = the first ``len(y)`` nodes, val = the next 500 (within ``allx``), test = the ids
      in ``test.index``;
    - the adjacency dict is symmetrised, duplicates merged and self-loops dropped.
    """
    root = os.fspath(root)
    files = {}
    for key in ("x", "y", "tx", "ty", "allx", "ally", "graph", "test.index"):
        path = os.path.join(root, f"ind.{name}.{key}")
        if not os.path.exists(path):
            raise FileNotFoundError(f"load_planetoid: missing {path!r}")
        files[key] = path
    x, y, tx, ty, allx, ally, adj = (restricted_load(files[k]) for k in
                                     ("x", "y", "tx", "ty", "allx", "ally", "graph"))
    with open(files["test.index"]) as f:
        test_index = np.array([int(line) for line in f if line.strip()], dtype=np.int64)
    tx, ty, allx, ally = _dense(tx), np.asarray(ty), _dense(allx), np.asarray(ally)
    if tx.shape[0] != ty.shape[0] or allx.shape[0] != ally.shape[0]:
        raise ValueError(f"load_planetoid: features and labels disagree in {root!r} ({name})")
    n_train = np.asarray(y).shape[0]
    lo, hi = int(test_index.min()), int(test_index.max())
    sorted_test = np.sort(test_index)
    if len(sorted_test) != tx.shape[0]:
        raise ValueError(f"load_planetoid: {len(sorted_test)} test ids but {tx.shape[0]} test rows")
    # Pad the test block to the full id range lo..hi; rows of ids absent from test.index
    # (isolated nodes in CiteSeer) stay zero.
    tx_full = np.zeros((hi - lo + 1, tx.shape[1]), dtype=np.float32)
    ty_full = np.zeros((hi - lo + 1, ty.shape[1]), dtype=ty.dtype)
    tx_full[sorted_test - lo] = tx
    ty_full[sorted_test - lo] = ty
    feats = np.concatenate([allx, tx_full])
    labels = np.concatenate([ally, ty_full])
    # The i-th test row belongs to the i-th smallest test id (GCN's reordering).
    feats[test_index] = feats[sorted_test]
    labels[test_index] = labels[sorted_test]
    n = feats.shape[0]
    src, dst = [], []
    for u, nbrs in adj.items():
        src.extend([int(u)] * len(nbrs))
        dst.extend(int(v) for v in nbrs)
    graph = undirected_graph(src, dst, n)
    train = torch.zeros(n, dtype=torch.bool)
    val = torch.zeros(n, dtype=torch.bool)
    test = torch.zeros(n, dtype=torch.bool)
    train[:n_train] = True
    # Validation nodes come from allx; the clip only matters for files smaller than 500 + len(y).
    val[n_train:min(n_train + 500, allx.shape[0])] = True
    test[torch.from_numpy(test_index)] = True
    y_out = torch.from_numpy(labels.argmax(1).astype(np.int64))
    return NodeDataset(f"planetoid-{name}", torch.from_numpy(feats), y_out, graph,
                       train, val, test)
