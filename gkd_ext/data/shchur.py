"""Loader for the Shchur et al. ("Pitfalls of GNN evaluation") npz format, and its split."""
from __future__ import annotations

import io
import os
from typing import Optional, Tuple, Union

import numpy as np
import torch

from .dataset import NodeDataset, csr_features, undirected_graph
from .safe_io import INTEGER, NUMERIC, NpzArchive, Where, check_csr, open_zip, read_member

BUNDLED_CORA = os.path.join(os.path.dirname(__file__), "cora.npz")
_LOADER = "load_shchur_npz"


def _csr_arrays(npz: NpzArchive, prefix: str):
    """``(data, indices, indptr, (rows, cols))`` of the CSR matrix stored under ``prefix``,
    checked against each other before anything of the declared shape exists."""
    for key in ("data", "indices", "indptr", "shape"):
        if f"{prefix}_{key}" not in npz:
            raise npz.where.error(f"{prefix}_{key}", f"is missing; expected the four arrays "
                                                     f"{prefix}_data/indices/indptr/shape")
    shape = npz.array(f"{prefix}_shape", INTEGER, ndim=1)
    indptr = npz.array(f"{prefix}_indptr", INTEGER, ndim=1)
    indices = npz.array(f"{prefix}_indices", INTEGER, ndim=1)
    data = npz.array(f"{prefix}_data", NUMERIC, ndim=1)
    return data, indices, indptr, check_csr(data, indices, indptr, shape, npz.where, prefix)


def _open(path: str, member: Optional[str]) -> NpzArchive:
    where = Where(_LOADER, path)
    if not path.endswith(".zip"):
        return NpzArchive(path, where)
    with open_zip(path, where) as zf:
        infos = [i for i in zf.infolist() if i.filename.endswith(".npz")]
        if member is not None:
            # Match by base name: some archives keep the npz inside a folder.
            infos = [i for i in infos if os.path.basename(i.filename) == os.path.basename(member)]
            if not infos:
                raise where.error(None, f"holds no member named {member!r}")
        if len(infos) != 1:
            raise where.error(None, f"holds {len(infos)} npz files; expected one (pass member=)")
        data = read_member(zf, infos[0], os.path.getsize(path), where)
    return NpzArchive(io.BytesIO(data), where.inside(infos[0].filename), len(data))


def load_shchur_npz(path: Union[str, os.PathLike], name: Optional[str] = None,
                    member: Optional[str] = None) -> NodeDataset:
    """Read a Shchur-format ``.npz`` (or the single npz, or ``member``, inside a ``.zip``).

    Nothing is unpickled (the object-array ``class_names`` of the ms_academic files is never
    read) and every array is read through :mod:`gkd_ext.data.safe_io`: sizes declared by the
    files are checked against the stored bytes, and each CSR's ``*_shape`` against its
    ``*_indptr``/``*_indices``/``*_data``, before anything is allocated.

    The adjacency is symmetrised (A + Aᵀ > 0) and self-loops are removed, as PyG does. The
    ``attr_*`` bag-of-words features become a float32 ``torch.sparse_csr`` ``x`` built from the
    stored arrays (Coauthor-CS: 1.09M non-zeros instead of a 476 MiB dense matrix); a dense
    ``attr_matrix`` stays dense.

    Raises:
        FileNotFoundError: no file at ``path``, or no such ``member`` in the zip.
        DataFormatError (a ValueError): a malformed or inconsistent file; the message names
            the file, the array and what was expected.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{_LOADER}: no file at {path!r}")
    with _open(path, member) as npz:
        where = npz.where
        for key in ("adj_data", "adj_indices", "adj_indptr", "adj_shape", "labels"):
            if key not in npz:
                raise where.error(key, "is missing; expected a Shchur npz (adj_data, adj_indices, "
                                       "adj_indptr, adj_shape, labels, attr_* or attr_matrix)")
        _, indices, indptr, (n, cols) = _csr_arrays(npz, "adj")
        if n != cols:
            raise where.error("adj_shape", f"is {[n, cols]}; expected a square adjacency")
        if "attr_data" in npz:
            data, fidx, fptr, fshape = _csr_arrays(npz, "attr")
            x = csr_features(data, fidx, fptr, fshape)
        elif "attr_matrix" in npz:
            x = torch.from_numpy(npz.array("attr_matrix", NUMERIC, ndim=2).astype(np.float32, copy=False))
        else:
            raise where.error("attr_data", "is missing, and so is 'attr_matrix'; expected node "
                                           "features in one of the two forms")
        y = npz.array("labels", INTEGER + "b", ndim=1).astype(np.int64)
    if x.size(0) != n:
        raise where.error("attr_shape", f"declares {x.size(0)} feature rows; expected one per "
                                        f"node ({n}, from 'adj_shape')")
    if y.size != n:
        raise where.error("labels", f"has {y.size} entries; expected one per node ({n})")
    if n and (int(y.min()) < 0 or int(y.max()) >= n):
        raise where.error("labels", f"lie in [{int(y.min())}, {int(y.max())}]; expected class ids "
                                    f"in [0, {n}) (at most one class per node)")
    rows = np.repeat(np.arange(n, dtype=np.int64), np.diff(indptr.astype(np.int64)))
    graph = undirected_graph(rows, indices.astype(np.int64), n)
    return NodeDataset(name or os.path.splitext(os.path.basename(path))[0], x,
                       torch.from_numpy(y), graph)


def bundled_cora() -> NodeDataset:
    """Cora (Shchur et al. npz, MIT licence), shipped inside the package."""
    return load_shchur_npz(BUNDLED_CORA, name="cora")


def per_class_split(y: torch.Tensor, train_per_class: int = 20, val_per_class: int = 30,
                    seed: int = 0) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Shchur et al. split: per class ``train_per_class`` train and ``val_per_class`` validation
    nodes drawn at random (seeded), all other nodes test. Returns boolean masks."""
    gen = torch.Generator().manual_seed(seed)
    n = y.numel()
    train, val = torch.zeros(n, dtype=torch.bool), torch.zeros(n, dtype=torch.bool)
    for c in torch.unique(y).tolist():
        idx = (y == c).nonzero().view(-1)
        idx = idx[torch.randperm(idx.numel(), generator=gen)]
        train[idx[:train_per_class]] = True
        val[idx[train_per_class:train_per_class + val_per_class]] = True
    return train, val, ~(train | val)
