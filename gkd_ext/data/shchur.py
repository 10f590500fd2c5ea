"""Loader for the Shchur et al. ("Pitfalls of GNN evaluation") npz format, and its split."""
from __future__ import annotations

import io
import os
import zipfile
from typing import Optional, Tuple, Union

import numpy as np
import torch

from .dataset import NodeDataset, undirected_graph

BUNDLED_CORA = os.path.join(os.path.dirname(__file__), "cora.npz")


def _csr_to_coo(npz, prefix: str) -> Tuple[np.ndarray, np.ndarray, np.ndarray, Tuple[int, int]]:
    data, indices, indptr = (np.asarray(npz[f"{prefix}_{k}"]) for k in ("data", "indices", "indptr"))
    shape = tuple(int(s) for s in npz[f"{prefix}_shape"])
    if indptr.ndim != 1 or indptr.size != shape[0] + 1 or indices.size != data.size:
        raise ValueError(f"load_shchur_npz: inconsistent CSR arrays for '{prefix}'")
    if indices.size and (indices.min() < 0 or indices.max() >= shape[1]):
        raise ValueError(f"load_shchur_npz: '{prefix}_indices' out of range for shape {shape}")
    rows = np.repeat(np.arange(shape[0]), np.diff(indptr))
    return rows, indices.astype(np.int64), data, shape


def load_shchur_npz(path: Union[str, os.PathLike], name: Optional[str] = None,
                    member: Optional[str] = None) -> NodeDataset:
    """Read a Shchur-format ``.npz`` (or the single npz, or ``member``, inside a ``.zip``)
    without unpickling (``allow_pickle=False``; the object-array ``class_names`` key of the
    ms_academic files is never read).

    The adjacency is symmetrised (A + Aᵀ > 0) and self-loops are removed, as PyG does; features
    are densified to float32.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"load_shchur_npz: no file at {path!r}")
    if path.endswith(".zip"):
        with zipfile.ZipFile(path) as zf:
            names = [n for n in zf.namelist() if n.endswith(".npz")]
            if member is not None:
                # Match by base name: some archives keep the npz inside a folder.
                names = [n for n in names if os.path.basename(n) == os.path.basename(member)]
                if not names:
                    raise ValueError(f"load_shchur_npz: {path!r} holds no member named {member!r}")
            if len(names) != 1:
                raise ValueError(f"load_shchur_npz: {path!r} holds {len(names)} npz files; pass member=")
            member = names[0]
            buf = io.BytesIO(zf.read(member))
        npz = np.load(buf, allow_pickle=False)
    else:
        npz = np.load(path, allow_pickle=False)
    with npz:
        for key in ("adj_data", "adj_indices", "adj_indptr", "adj_shape", "labels"):
            if key not in npz.files:
                raise ValueError(f"load_shchur_npz: {path!r} is not a Shchur npz (missing '{key}')")
        r, c, _, shape = _csr_to_coo(npz, "adj")
        n = shape[0]
        if "attr_data" in npz.files:
            fr, fc, fv, fshape = _csr_to_coo(npz, "attr")
            x = torch.zeros(fshape, dtype=torch.float32)
            x[torch.from_numpy(fr), torch.from_numpy(fc)] = torch.from_numpy(fv.astype(np.float32))
        else:
            x = torch.from_numpy(np.asarray(npz["attr_matrix"], dtype=np.float32))
        y = torch.from_numpy(np.asarray(npz["labels"]).astype(np.int64))
    if shape[0] != shape[1] or y.numel() != n or x.size(0) != n:
        raise ValueError(f"load_shchur_npz: {path!r}: adjacency {shape}, {x.size(0)} feature rows "
                         f"and {y.numel()} labels do not describe one square graph")
    graph = undirected_graph(r, c, n)
    return NodeDataset(name or os.path.splitext(os.path.basename(path))[0], x, y, graph)


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
