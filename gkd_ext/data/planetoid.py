"""Loader for the Planetoid ``ind.<name>.*`` files (Yang et al. 2016; the GCN public split).

The binary files are Python-2 pickles. They are read with :class:`RestrictedUnpickler`, which
resolves only the handful of scipy/numpy/builtin names such files contain, and resolves them
to inert stand-ins: no constructor of numpy or scipy runs while the stream is parsed, so a
tampered file can neither run code nor make numpy allocate what it declares. Before that, the
opcode stream is scanned (:func:`pickletools.genops`) so that every length, memo index and
frame size it declares is checked against the bytes really in the file. The stand-ins become
real arrays and CSR matrices only after their shapes, dtypes and byte counts agree.
"""
from __future__ import annotations

import collections
import io
import math
import os
import pickle
import pickletools
import re
from typing import Any, Dict, List, Union

import numpy as np
import torch

from .dataset import NodeDataset, csr_features, select_rows, undirected_graph
from .safe_io import DataFormatError, Where, check_csr, read_ascii

_LOADER = "load_planetoid"
_MAX_NESTING = 100


class UnsafePickleError(DataFormatError, pickle.UnpicklingError):
    """A pickle refers to a global outside :class:`RestrictedUnpickler`'s list (both a
    ``ValueError`` and a :class:`pickle.UnpicklingError`)."""


# Stand-ins the unpickler builds instead of numpy/scipy objects: they only record what the
# stream says, and :func:`_materialise` turns them into real objects after checking it.
class _NDArrayClass:
    """Stands for ``numpy.ndarray`` as the first argument of ``_reconstruct``."""


class _Array:
    def __setstate__(self, state):
        self.state = state


class _DType:
    def __init__(self, spec=None, align=False, copy=False):
        self.spec, self.state = spec, None

    def __setstate__(self, state):
        self.state = state


class _CSR:
    def __setstate__(self, state):
        self.state = state


def _reconstruct(subtype, shape, typecode):
    if subtype is not _NDArrayClass:
        raise UnsafePickleError("numpy _reconstruct may only build numpy.ndarray")
    return _Array()


def _latin1_bytes(text, encoding="latin1"):
    """``_codecs.encode``, as Python 3 writes bytes into protocol-2 pickles, for latin-1 only."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise UnsafePickleError("_codecs.encode is allowed only as (str, 'latin1')")
    return text.encode("latin1")


_ALLOWED = {
    ("scipy.sparse.csr", "csr_matrix"): _CSR,
    ("scipy.sparse._csr", "csr_matrix"): _CSR,
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): _NDArrayClass,
    ("numpy", "dtype"): _DType,
    ("collections", "defaultdict"): collections.defaultdict,
    ("__builtin__", "list"): list,
    ("builtins", "list"): list,
    ("_codecs", "encode"): _latin1_bytes,
}
# Opcodes that would reach outside the stream: persistent ids, the copyreg extension registry,
# out-of-band buffers.
_REFUSED_OPS = {"PERSID", "BINPERSID", "EXT1", "EXT2", "EXT4", "NEXT_BUFFER", "READONLY_BUFFER"}
_MEMO_OPS = {"PUT", "BINPUT", "LONG_BINPUT"}


def _refuse(module: str, name: str):
    raise UnsafePickleError(
        f"refusing to load global '{module}.{name}': Planetoid files may only reference "
        "scipy.sparse csr_matrix, numpy _reconstruct/ndarray/dtype, collections.defaultdict, "
        "list and _codecs.encode (latin-1)")


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that can only build what Planetoid files hold: scipy CSR matrices, numpy
    arrays and dtypes, ``collections.defaultdict`` and ``list`` (and latin-1 bytes, which is
    how Python 3 writes ``bytes`` into protocol-2 pickles). Any other global
    (``os.system``, ``builtins.eval``, ...) raises :class:`UnsafePickleError` before it is
    resolved. The allowed numpy/scipy names resolve to inert stand-ins (see the module doc);
    :func:`restricted_load` turns them into real objects after checking them."""

    def find_class(self, module: str, name: str):
        obj = _ALLOWED.get((module, name))
        return _refuse(module, name) if obj is None else obj


def _scan(data: bytes, where: Where) -> None:
    """Check the opcode stream before unpickling: every declared length fits in the bytes
    left (pickletools reads them from memory, so a huge one fails instead of allocating),
    memo indices and frame sizes are bounded by the file size, globals are on the list and
    nothing refers outside the stream."""
    try:
        for op, arg, pos in pickletools.genops(data):
            if op.name in _REFUSED_OPS:
                raise where.error(None, f"uses pickle opcode {op.name} at byte {pos}; expected "
                                        "a self-contained data pickle")
            if op.name in _MEMO_OPS and not 0 <= int(arg) < len(data):
                raise where.error(None, f"stores memo slot {arg} at byte {pos}; expected a slot "
                                        f"below the file size ({len(data)} bytes)")
            if op.name == "FRAME" and arg > len(data) - pos:
                raise where.error(None, f"declares a {arg}-byte frame at byte {pos}, past the end "
                                        "of the file")
            if op.name in ("GLOBAL", "INST"):
                module, _, name = str(arg).partition(" ")
                if (module, name) not in _ALLOWED:
                    _refuse(module, name)
    except DataFormatError as exc:
        if isinstance(exc, UnsafePickleError) and not str(exc).startswith(where.loader):
            raise UnsafePickleError(f"{where.loader}: {where}: {exc}") from None
        raise
    except Exception as exc:  # pickletools: truncated data, unknown opcode, bad length
        raise where.error(None, f"is not a readable pickle: {exc}") from None


_DTYPE_SPEC = re.compile(r"[biuf]\d{1,2}")


def _dtype(obj, where: Where, field: str) -> np.dtype:
    spec = getattr(obj, "spec", None)
    if isinstance(spec, bytes):
        spec = spec.decode("latin1")
    if not isinstance(spec, str) or not _DTYPE_SPEC.fullmatch(spec):
        raise where.error(field, f"holds an array of dtype {spec!r}; expected a numeric dtype "
                                 "(b1, i4, i8, u1, f4, f8, ...)")
    try:
        dtype = np.dtype(spec)
    except TypeError:
        raise where.error(field, f"holds an array of unknown dtype {spec!r}") from None
    state = getattr(obj, "state", None)
    if state is not None:
        if not isinstance(state, tuple) or len(state) < 8 or any(s is not None for s in state[2:5]):
            raise where.error(field, f"holds a dtype state {state!r}; expected a plain numeric dtype")
        order = state[1].decode("latin1") if isinstance(state[1], bytes) else state[1]
        if order not in ("<", ">", "=", "|"):
            raise where.error(field, f"holds a dtype byte order {order!r}; expected <, >, = or |")
        if order != "|":
            dtype = dtype.newbyteorder(order)
    return dtype


def _ndarray(obj: _Array, where: Where, field: str) -> np.ndarray:
    state = getattr(obj, "state", None)
    if isinstance(state, tuple) and len(state) == 5:
        state = state[1:]
    if not isinstance(state, tuple) or len(state) != 4:
        raise where.error(field, "holds a numpy array without its (shape, dtype, order, data) state")
    shape, dtype, fortran, raw = state
    if not isinstance(shape, tuple) or not all(type(s) is int and s >= 0 for s in shape):
        raise where.error(field, f"holds an array of shape {shape!r}; expected non-negative ints")
    if not isinstance(dtype, _DType):
        raise where.error(field, "holds an array whose dtype is not a numpy dtype")
    dtype = _dtype(dtype, where, field)
    if isinstance(raw, str):  # a Python-2 str, decoded as latin1 by the unpickler
        raw = raw.encode("latin1")
    if not isinstance(raw, bytes):
        raise where.error(field, f"holds array data of type {type(raw).__name__}; expected raw bytes "
                                 "(object arrays are refused)")
    nbytes = math.prod(shape) * dtype.itemsize
    if len(raw) != nbytes:
        raise where.error(field, f"holds an array of shape {shape} {dtype} ({nbytes} bytes) with "
                                 f"{len(raw)} bytes of data")
    arr = np.frombuffer(raw, dtype=dtype).reshape(shape, order="F" if fortran else "C")
    return arr.astype(dtype.newbyteorder("="), copy=True)


def _csr(obj: _CSR, where: Where, field: str, memo, depth):
    import scipy.sparse as sp
    state = getattr(obj, "state", None)
    if not isinstance(state, dict):
        raise where.error(field, "holds a csr_matrix without its attribute dict")
    shape = state.get("_shape", state.get("shape"))
    parts = {}
    for key in ("data", "indices", "indptr"):
        arr = state.get(key)
        if not isinstance(arr, _Array):
            raise where.error(field, f"holds a csr_matrix whose {key!r} is not a numpy array")
        parts[key] = _materialise(arr, where, field, memo, depth + 1)
    if not isinstance(shape, tuple) or len(shape) != 2 or \
            not all(type(s) is int and 0 <= s < 2 ** 62 for s in shape):
        raise where.error(field, f"holds a csr_matrix of shape {shape!r}; expected two "
                                 "non-negative ints (rows, cols)")
    check_csr(parts["data"], parts["indices"], parts["indptr"], np.asarray(shape), where,
              f"{field}: csr")
    return sp.csr_matrix((parts["data"], parts["indices"], parts["indptr"]), shape=shape)


def _materialise(obj, where: Where, field: str, memo: Dict[int, Any], depth: int = 0):
    """The real object for what :class:`RestrictedUnpickler` built (checked stand-ins become
    numpy arrays and scipy CSR matrices; containers are rebuilt). Shared and cyclic
    references stay shared (``memo``), so this is linear in what the stream holds."""
    if depth > _MAX_NESTING:
        raise where.error(field, f"nests containers more than {_MAX_NESTING} levels deep")
    if obj is None or type(obj) in (bool, int, float, str, bytes):
        return obj
    key = id(obj)
    if key in memo:
        return memo[key]
    if isinstance(obj, _Array):
        out = memo[key] = _ndarray(obj, where, field)
    elif isinstance(obj, _DType):
        out = memo[key] = _dtype(obj, where, field)
    elif isinstance(obj, _CSR):
        out = memo[key] = _csr(obj, where, field, memo, depth)
    elif type(obj) is list:
        out = memo[key] = []
        out.extend(_materialise(v, where, field, memo, depth + 1) for v in obj)
    elif type(obj) is tuple:
        out = memo[key] = tuple(_materialise(v, where, field, memo, depth + 1) for v in obj)
    elif type(obj) in (dict, collections.defaultdict):
        if type(obj) is dict:
            out = {}
        elif obj.default_factory in (None, list):
            out = collections.defaultdict(obj.default_factory)
        else:
            raise where.error(field, "holds a defaultdict whose default is not list")
        memo[key] = out
        for k, v in obj.items():
            if type(k) not in (bool, int, float, str, bytes, type(None)):
                raise where.error(field, f"holds a dict key of type {type(k).__name__}; expected "
                                         "numbers or strings")
            out[k] = _materialise(v, where, field, memo, depth + 1)
    else:
        raise where.error(field, f"holds an object of type {type(obj).__name__}; expected arrays, "
                                 "CSR matrices, lists and dicts")
    return out


def restricted_load(path: Union[str, os.PathLike], loader: str = "restricted_load"):
    """Unpickle one Planetoid-style file without running code from it: scan the opcode stream
    (:func:`_scan`), unpickle with :class:`RestrictedUnpickler` (``encoding='latin1'``, which
    the Python-2 numpy pickles need), then build the numpy arrays and scipy CSR matrices it
    describes once their shapes, dtypes and byte counts agree.

    Raises:
        FileNotFoundError: no file at ``path``.
        UnsafePickleError: a global outside the allowed list (a ``ValueError``).
        DataFormatError: anything else wrong with the file; the message names it.
    """
    path = os.fspath(path)
    where = Where(loader, path)
    field = os.path.basename(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"{loader}: missing {path!r}") from None
    except IsADirectoryError:
        raise where.error(None, "is a directory; expected a pickle file") from None
    _scan(data, where)
    try:
        raw = RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()
    except UnsafePickleError as exc:
        raise UnsafePickleError(f"{loader}: {where}: {exc}") from None
    except DataFormatError:
        raise
    except Exception as exc:  # a corrupt stream: UnpicklingError, EOFError, TypeError, ...
        raise where.error(None, f"is not a readable pickle ({type(exc).__name__}: {exc})") from None
    return _materialise(raw, where, field, {})


def _features(obj, where: Where, field: str):
    """``(data, indices, indptr, (rows, cols))`` CSR arrays of a features file, which holds a
    scipy CSR matrix (as published) or a dense 2-D numeric array."""
    import scipy.sparse as sp
    if isinstance(obj, np.ndarray):
        if obj.ndim != 2 or obj.dtype.kind not in "biuf":
            raise where.error(field, f"holds an array of shape {obj.shape} {obj.dtype}; expected a "
                                     "2-D numeric feature matrix")
        obj = sp.csr_matrix(obj)
    if not isinstance(obj, sp.csr_matrix):
        raise where.error(field, f"holds a {type(obj).__name__}; expected a scipy csr_matrix")
    return obj.data, obj.indices, obj.indptr, obj.shape


def _labels(obj, where: Where, field: str) -> np.ndarray:
    if not isinstance(obj, np.ndarray) or obj.ndim != 2 or obj.dtype.kind not in "biuf":
        got = f"an array of shape {obj.shape} {obj.dtype}" if isinstance(obj, np.ndarray) \
            else f"a {type(obj).__name__}"
        raise where.error(field, f"holds {got}; expected a 2-D one-hot label array [rows, classes]")
    return obj


def _test_index(path: str, where: Where) -> List[int]:
    field = os.path.basename(path)
    text = read_ascii(path, where, "one node id per line")
    ids = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                ids.append(int(line))
            except ValueError:
                raise where.error(field, f"line {number} is {line[:40]!r}; expected one integer "
                                         "node id per line") from None
    return ids


def _adjacency(graph, num_nodes: int, file_bytes: int, where: Where, field: str):
    if not isinstance(graph, dict):
        raise where.error(field, f"holds a {type(graph).__name__}; expected a dict mapping each "
                                 "node id to a list of neighbour ids")
    total = 0
    for nbrs in graph.values():
        if not isinstance(nbrs, list):
            raise where.error(field, f"maps a node to a {type(nbrs).__name__}; expected a list of "
                                     "neighbour ids")
        total += len(nbrs)
    if total > file_bytes:
        # Each listed neighbour takes at least one byte unless lists are shared by reference.
        raise where.error(field, f"lists {total} neighbour entries in a {file_bytes}-byte file; "
                                 "expected at most one per byte (no shared lists)")
    src = np.empty(total, dtype=np.int64)
    dst = np.empty(total, dtype=np.int64)
    pos = 0
    for u, nbrs in graph.items():
        if type(u) is not int or not 0 <= u < num_nodes or \
                not all(type(v) is int and 0 <= v < num_nodes for v in nbrs):
            bad = u if type(u) is not int or not 0 <= u < num_nodes else \
                next(v for v in nbrs if type(v) is not int or not 0 <= v < num_nodes)
            raise where.error(field, f"refers to node {bad!r}; expected integer ids in "
                                     f"[0, {num_nodes})")
        src[pos:pos + len(nbrs)] = u
        dst[pos:pos + len(nbrs)] = nbrs
        pos += len(nbrs)
    return src, dst


def load_planetoid(root: Union[str, os.PathLike], name: str) -> NodeDataset:
    """Read ``root/ind.<name>.{x,y,tx,ty,allx,ally,graph,test.index}`` into a
    :class:`NodeDataset` with the public split, following the GCN/PyG conventions:

    - nodes are ``allx`` then the test rows, with test rows moved to the ids in ``test.index``
      (the i-th row of ``tx`` belongs to the i-th id listed there);
    - test ids missing from ``test.index`` inside its range (CiteSeer's 15 isolated nodes)
      get empty feature rows and label 0 and are in no mask;
    - train = the first ``len(y)`` nodes, val = the next 500 (within ``allx``), test = the ids
      in ``test.index``;
    - the adjacency dict is symmetrised, duplicates merged and self-loops dropped.

    Features are a float32 ``torch.sparse_csr`` ``x`` built from the stored CSR rows, never
    densified. Every count is checked before it sizes anything: ``test.index`` must hold
    ``len(tx)`` distinct ids starting at ``len(allx)`` and ending below the node count that
    ``allx``, ``tx`` and ``graph`` describe.

    Raises:
        FileNotFoundError: a missing file (named).
        DataFormatError (a ValueError): a malformed or inconsistent file (named, with the
            field and what was expected); :class:`UnsafePickleError` for a forbidden global.
    """
    root = os.fspath(root)
    files = {}
    for key in ("x", "y", "tx", "ty", "allx", "ally", "graph", "test.index"):
        path = os.path.join(root, f"ind.{name}.{key}")
        if not os.path.exists(path):
            raise FileNotFoundError(f"{_LOADER}: missing {path!r}")
        files[key] = path
    objs = {k: restricted_load(files[k], _LOADER) for k in ("x", "y", "tx", "ty", "allx", "ally", "graph")}
    at = {k: Where(_LOADER, files[k]) for k in files}
    fname = {k: os.path.basename(files[k]) for k in files}
    x = _features(objs["x"], at["x"], fname["x"])
    tx = _features(objs["tx"], at["tx"], fname["tx"])
    allx = _features(objs["allx"], at["allx"], fname["allx"])
    y, ty, ally = (_labels(objs[k], at[k], fname[k]) for k in ("y", "ty", "ally"))
    for feats, labels, fk, lk in ((x, y, "x", "y"), (tx, ty, "tx", "ty"), (allx, ally, "allx", "ally")):
        if feats[3][0] != labels.shape[0]:
            raise at[lk].error(fname[lk], f"has {labels.shape[0]} rows; expected one per row of "
                                          f"{fname[fk]} ({feats[3][0]})")
    num_features, num_classes = allx[3][1], ally.shape[1]
    if num_classes == 0:
        raise at["ally"].error(fname["ally"], "has 0 label columns; expected one-hot labels")
    for k, feats in (("x", x), ("tx", tx)):
        if feats[3][1] != num_features:
            raise at[k].error(fname[k], f"has {feats[3][1]} feature columns; expected "
                                        f"{num_features} as in {fname['allx']}")
    for k, labels in (("y", y), ("ty", ty)):
        if labels.shape[1] != num_classes:
            raise at[k].error(fname[k], f"has {labels.shape[1]} classes; expected {num_classes} "
                                        f"as in {fname['ally']}")
    n_train, n_allx, n_test = y.shape[0], ally.shape[0], ty.shape[0]
    if n_train > n_allx:
        raise at["y"].error(fname["y"], f"has {n_train} training rows; expected at most the "
                                        f"{n_allx} rows of {fname['allx']}")
    graph = objs["graph"]
    if not isinstance(graph, dict):
        raise at["graph"].error(fname["graph"], f"holds a {type(graph).__name__}; expected a dict "
                                                "mapping node ids to neighbour lists")

    # test.index, checked against the rows it places before it sizes anything.
    ids = _test_index(files["test.index"], at["test.index"])
    ti, tname = at["test.index"], fname["test.index"]
    if len(ids) != n_test:
        raise ti.error(tname, f"lists {len(ids)} ids; expected one per row of "
                              f"{fname['tx']} ({n_test})")
    # Ids run from len(allx) on; ids of the range missing from test.index (CiteSeer's isolated
    # nodes) become empty rows, at most as many as the nodes ind.<name>.graph lists.
    if n_test and (min(ids) != n_allx or max(ids) - n_allx + 1 - n_test > len(graph)):
        lo, hi = (str(v) if len(str(v)) < 24 else f"a {len(str(v))}-digit number"
                  for v in (min(ids), max(ids)))
        raise ti.error(tname, f"ids lie in [{lo}, {hi}]; expected the smallest to be "
                              f"{n_allx} (right after the {n_allx} rows of {fname['allx']}) and "
                              f"the largest below {n_allx + n_test + len(graph)} (ids missing from "
                              f"the list may not outnumber the {len(graph)} nodes of "
                              f"{fname['graph']})")
    test_index = np.array(ids, dtype=np.int64)
    if np.unique(test_index).size != n_test:
        raise ti.error(tname, "lists an id more than once; expected distinct test node ids")
    n = max(ids) + 1 if n_test else n_allx

    # Features: row v of x is allx row v, or tx row j for v = test_index[j], or empty.
    # Stack allx, tx and one empty row as one CSR and pick rows from it.
    stacked_ptr = np.concatenate([allx[2].astype(np.int64),
                                  tx[2][1:].astype(np.int64) + len(allx[1]),
                                  [len(allx[1]) + len(tx[1])]])
    stacked = csr_features(np.concatenate([allx[0], tx[0]]),
                           np.concatenate([allx[1].astype(np.int64), tx[1].astype(np.int64)]),
                           stacked_ptr, (n_allx + n_test + 1, num_features))
    source = np.full(n, n_allx + n_test, dtype=np.int64)
    source[:n_allx] = np.arange(n_allx)
    source[test_index] = n_allx + np.arange(n_test)
    features = select_rows(stacked, torch.from_numpy(source))
    labels = np.zeros(n, dtype=np.int64)
    labels[:n_allx] = ally.argmax(1)
    labels[test_index] = ty.argmax(1)

    src, dst = _adjacency(graph, n, os.path.getsize(files["graph"]), at["graph"], fname["graph"])
    graph = undirected_graph(src, dst, n)
    train = torch.zeros(n, dtype=torch.bool)
    val = torch.zeros(n, dtype=torch.bool)
    test = torch.zeros(n, dtype=torch.bool)
    train[:n_train] = True
    # Validation nodes come from allx; the clip only matters for files smaller than 500 + len(y).
    val[n_train:min(n_train + 500, n_allx)] = True
    test[torch.from_numpy(test_index)] = True
    return NodeDataset(f"planetoid-{name}", features, torch.from_numpy(labels), graph,
                       train, val, test)
