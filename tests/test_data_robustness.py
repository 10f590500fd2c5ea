"""Hostile and corrupt files for every loader format: each must give a clear error (a
ValueError or FileNotFoundError naming the file and the field) or load correctly, without
allocating what the file merely declares and without running code from it.

The corpus is written by the test, then loaded in one child process that caps its address
space (so a lazily-touched multi-GB allocation fails loudly instead of passing unnoticed),
times every case out, and records each case's peak-RSS growth (VmHWM reset per case). Every case is counted in one of
three classes: clear error, correct load, anything else (crash, hang, unclear error, silently
wrong, too much memory); the last must be empty.
"""
from __future__ import annotations

import bz2
import collections
import io
import json
import os
import pickle
import re
import struct
import subprocess
import sys
import textwrap
import zipfile
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import pytest
import scipy.sparse as sp

REPO = Path(__file__).resolve().parents[1]
MiB = 1 << 20
PEAK_GROWTH_LIMIT = 64 * MiB   # per case; the largest read below is a 10 MiB member (~22 MiB peak)
CASE_TIMEOUT_S = 20


@dataclass
class Case:
    name: str
    fmt: str
    loader: str
    args: Sequence[str]
    expect: str                       # "error" or "load"
    match: Sequence[str] = ()         # regexes the error message must contain
    check: Dict[str, object] = field(default_factory=dict)   # properties of a correct load
    kwargs: Dict[str, object] = field(default_factory=dict)


# ------------------------------------------------------------------ raw file builders
def npy_bytes(arr: np.ndarray, version=None) -> bytes:
    buf = io.BytesIO()
    if version is None:
        np.save(buf, arr, allow_pickle=True)
    else:
        np.lib.format.write_array(buf, arr, version=version, allow_pickle=True)
    return buf.getvalue()


def npy_raw(header: str, data: bytes = b"", version=1, header_len: Optional[int] = None) -> bytes:
    """An npy file from a literal header text (any content, any declared length)."""
    h = header.encode("latin1")
    h += b" " * (-(len(h) + 11) % 64) + b"\n"
    if version == 1:
        length = struct.pack("<H", len(h) if header_len is None else header_len)
    else:
        length = struct.pack("<I", len(h) if header_len is None else header_len)
    return b"\x93NUMPY" + bytes([version, 0]) + length + h + data


def deflate(raw: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    return c.compress(raw) + c.flush()


def deflate_zeros(mib: int) -> bytes:
    """A valid raw deflate stream of ``mib`` MiB of zeros, ~1 KB per MiB (built in ms)."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = c.compress(b"\0" * MiB) + c.flush(zlib.Z_FULL_FLUSH)
    return block * mib + zlib.compressobj(9, zlib.DEFLATED, -15).flush()


def member(name: str, raw: bytes, method: int = zipfile.ZIP_STORED, **lie) -> dict:
    """A zip member; ``lie`` overrides what the headers declare (size, csize, crc, flags)."""
    if method == zipfile.ZIP_DEFLATED:
        data = deflate(raw)
    elif method == zipfile.ZIP_BZIP2:
        data = bz2.compress(raw)
    else:
        data = raw
    m = dict(name=name, data=data, method=method, crc=zlib.crc32(raw), size=len(raw),
             csize=len(data), flags=0)
    m.update(lie)
    return m


def zip_bytes(members: List[dict]) -> bytes:
    """A zip archive written field by field, so that headers can say anything."""
    out, central = bytearray(), bytearray()
    for m in members:
        name = m["name"].encode()
        offset = len(out)
        out += struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, m["flags"], m["method"], 0, 0x21,
                           m["crc"], m["csize"], m["size"], len(name), 0) + name + m["data"]
        central += struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, m["flags"], m["method"], 0,
                               0x21, m["crc"], m["csize"], m["size"], len(name), 0, 0, 0, 0, 0,
                               offset) + name
    cd = len(out)
    out += central
    out += struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(members), len(members), len(central),
                       cd, 0)
    return bytes(out)


def npz_members(arrays: Dict[str, object], method=zipfile.ZIP_STORED) -> List[dict]:
    return [member(f"{k}.npy", v if isinstance(v, bytes) else npy_bytes(np.asarray(v)), method)
            for k, v in arrays.items()]


# ------------------------------------------------------------------ Shchur
def shchur_arrays() -> Dict[str, np.ndarray]:
    adj = sp.csr_matrix((np.ones(6, np.float32), ([0, 1, 2, 3, 3, 4], [1, 2, 0, 3, 4, 3])),
                        shape=(5, 5))
    attr = sp.csr_matrix(np.array([[1, 0, 2], [0, 0, 1], [3, 0, 0], [0, 1, 0], [1, 1, 1]],
                                  np.float32))
    return dict(adj_data=adj.data, adj_indices=adj.indices.astype(np.int32), adj_indptr=adj.indptr,
                adj_shape=np.array(adj.shape), attr_data=attr.data, attr_indices=attr.indices,
                attr_indptr=attr.indptr, attr_shape=np.array(attr.shape),
                labels=np.array([0, 1, 2, 1, 0], np.int8))


SHCHUR_LOAD = dict(num_nodes=5, num_features=3, layout="torch.sparse_csr", x_sum=11.0,
                   y=[0, 1, 2, 1, 0], num_edges=8)


def shchur_cases(d: Path) -> List[Case]:
    cases = []

    def npz(name, members, expect="error", match=(), check=None, raw=None):
        p = d / f"{name}.npz"
        p.write_bytes(raw if raw is not None else zip_bytes(members))
        cases.append(Case(f"shchur-npz/{name}", "shchur-npz", "load_shchur_npz", [str(p)], expect,
                          (re.escape(p.name),) + tuple(match), check or {}))

    def with_array(name, key, value, match, method=zipfile.ZIP_STORED, expect="error", check=None):
        arrays = shchur_arrays()
        arrays[key] = value
        npz(name, npz_members(arrays, method), expect, match, check)

    good = zip_bytes(npz_members(shchur_arrays()))
    npz("valid", npz_members(shchur_arrays()), "load", check=SHCHUR_LOAD)
    npz("valid-deflated", npz_members(shchur_arrays(), zipfile.ZIP_DEFLATED), "load",
        check=SHCHUR_LOAD)
    # object class_names as in ms_academic: present, never read
    with_array("object-class-names", "class_names", npy_bytes(np.array(["a", 1, None], object)),
               (), expect="load", check=SHCHUR_LOAD)
    # unsorted and duplicate CSR column indices: canonicalised (sorted, summed)
    a = shchur_arrays()
    a["attr_indices"] = np.array([2, 0, 2, 0, 1, 2, 1, 2], np.int32)
    a["attr_data"] = np.array([2, 1, 1, 3, 1, 1, 0.5, 1], np.float32)
    a["attr_indptr"] = np.array([0, 2, 3, 4, 5, 8])
    npz("unsorted-duplicate-indices", npz_members(a), "load",
        check=dict(SHCHUR_LOAD, x_sum=10.5, x_nnz=7))
    a = shchur_arrays()
    a["attr_data"] = a["attr_data"].astype(">f8")
    a["labels"] = np.asfortranarray(a["labels"].astype(">i4"))
    npz("big-endian", npz_members(a), "load", check=SHCHUR_LOAD)
    a = {k: npy_bytes(np.asarray(v), version=(2, 0)) for k, v in shchur_arrays().items()}
    npz("npy-version-2", npz_members(a), "load", check=SHCHUR_LOAD)

    npz("truncated", None, match=("zip",), raw=good[:len(good) // 2])
    npz("random-bytes", None, match=("zip",), raw=np.random.default_rng(0).bytes(3000))
    npz("empty-file", None, match=("zip",), raw=b"")
    npz("npy-not-npz", None, match=("zip",), raw=npy_bytes(np.arange(10)))
    npz("pickle-not-npz", None, match=("zip",), raw=pickle.dumps({"adj_data": 1}))
    with_array("huge-npy-shape", "attr_indptr",
               npy_raw("{'descr': '<i8', 'fortran_order': False, 'shape': (1000000000000,), }",
                       b"\0" * 48), ("'attr_indptr'", "declares shape"))
    with_array("npy-shape-short-data", "adj_indptr",
               npy_raw("{'descr': '<i8', 'fortran_order': False, 'shape': (6,), }", b"\0" * 40),
               ("'adj_indptr'", "declares shape"))
    with_array("npy-trailing-bytes", "labels",
               npy_raw("{'descr': '|i1', 'fortran_order': False, 'shape': (5,), }", b"\0" * 9),
               ("'labels'", "declares shape"))
    with_array("huge-npy-header-length", "adj_data",
               npy_raw("{'descr': '<f4', 'fortran_order': False, 'shape': (6,), }", b"\0" * 24,
                       version=2, header_len=4_000_000_000), ("'adj_data'", "header"))
    with_array("npy-bad-magic", "adj_indices", b"NOTNUMPY" + b"\0" * 100, ("'adj_indices'", "magic"))
    with_array("npy-version-9", "adj_indices", b"\x93NUMPY\x09\x00" + b"\0" * 100,
               ("'adj_indices'", "version"))
    with_array("npy-header-garbage", "adj_indices", npy_raw("{'descr': <i4, shape: ((("),
               ("'adj_indices'", "header"))
    with_array("npy-header-code", "adj_indices",
               npy_raw("__import__('os').system('echo pwned')"), ("'adj_indices'", "header"))
    with_array("npy-header-not-dict", "adj_indices", npy_raw("[1, 2, 3]"),
               ("'adj_indices'", "header"))
    with_array("npy-header-negative-shape", "adj_indices",
               npy_raw("{'descr': '<i4', 'fortran_order': False, 'shape': (-6,), }"),
               ("'adj_indices'", "shape"))
    with_array("npy-header-bad-descr", "adj_indices",
               npy_raw("{'descr': 'nonsense', 'fortran_order': False, 'shape': (6,), }"),
               ("'adj_indices'", "dtype"))
    with_array("npy-truncated-header", "adj_indices", b"\x93NUMPY\x01\x00\x40", ("'adj_indices'", "truncated"))
    with_array("object-array-labels", "labels", npy_bytes(np.array([0, 1, 2, 1, 0], object)),
               ("'labels'", "object array"))
    with_array("structured-object-dtype", "labels",
               npy_raw("{'descr': [('a', '|O')], 'fortran_order': False, 'shape': (5,), }",
                       b"\0" * 40), ("'labels'", "object"))
    with_array("float-indices", "attr_indices", np.array([0, 2, 2, 0, 1, 0, 1, 2], np.float32),
               ("'attr_indices'", "dtype"))
    with_array("string-labels", "labels", np.array(["a", "b", "c", "d", "e"]), ("'labels'", "dtype"))
    with_array("labels-2d", "labels", np.zeros((5, 2), np.int64), ("'labels'", "dimension"))
    with_array("huge-attr-rows", "attr_shape", np.array([10 ** 12, 3]), ("'attr_shape'", "rows"))
    with_array("huge-attr-cols", "attr_shape", np.array([5, 2 ** 40]), ("'attr_shape'", "columns"))
    with_array("negative-attr-shape", "attr_shape", np.array([-5, 3]), ("'attr_shape'",))
    with_array("attr-shape-3-values", "attr_shape", np.array([5, 3, 1]), ("'attr_shape'",))
    with_array("attr-rows-not-nodes", "attr_shape", np.array([4, 3]), ("'attr_shape'",))
    with_array("negative-index", "attr_indices", np.array([0, 2, -2, 0, 1, 0, 1, 2], np.int32),
               ("'attr_indices'", r"\[0, 3\)"))
    with_array("index-past-cols", "adj_indices", np.array([1, 2, 0, 3, 4, 9], np.int32),
               ("'adj_indices'", r"\[0, 5\)"))
    with_array("indptr-decreasing", "attr_indptr", np.array([0, 5, 3, 6, 7, 8]), ("'attr_indptr'",))
    with_array("indptr-past-nnz", "adj_indptr", np.array([0, 1, 2, 3, 5, 9]), ("'adj_indptr'",))
    with_array("data-length", "attr_data", np.ones(3, np.float32), ("'attr_data'",))
    with_array("non-square-adj", "adj_shape", np.array([5, 6]), ("'adj_shape'", "square"))
    with_array("labels-count", "labels", np.array([0, 1, 2], np.int8), ("'labels'", "one per node"))
    with_array("labels-negative", "labels", np.array([0, -1, 2, 1, 0], np.int8), ("'labels'",))
    with_array("labels-huge", "labels", np.array([0, 1, 10 ** 12, 1, 0]), ("'labels'",))
    a = shchur_arrays()
    del a["adj_indptr"]
    npz("missing-adj-indptr", npz_members(a), match=("'adj_indptr'", "missing"))
    a = shchur_arrays()
    for k in ("attr_data", "attr_indices", "attr_indptr", "attr_shape"):
        del a[k]
    npz("missing-features", npz_members(a), match=("'attr_data'", "attr_matrix"))
    a = shchur_arrays()
    del a["attr_shape"]
    npz("missing-attr-shape", npz_members(a), match=("'attr_shape'", "missing"))
    ms = npz_members(shchur_arrays(), zipfile.ZIP_DEFLATED)
    target = next(m for m in ms if m["name"] == "attr_indices.npy")
    target["data"] = target["data"][:-3] + bytes(b ^ 0x55 for b in target["data"][-3:])
    npz("corrupt-deflate-stream", ms, match=("'attr_indices'", "corrupt|ends after"))
    ms = npz_members(shchur_arrays())
    target = next(m for m in ms if m["name"] == "labels.npy")
    target["crc"] ^= 1
    npz("bad-crc", ms, match=("'labels'", "corrupt"))
    ms = npz_members(shchur_arrays())
    ms[0] = member("adj_data.npy", npy_bytes(shchur_arrays()["adj_data"]), zipfile.ZIP_BZIP2)
    npz("bzip2-member", ms, match=("'adj_data'", "method 12"))
    ms = npz_members(shchur_arrays())
    ms[1]["flags"] = 1
    npz("encrypted-member", ms, match=("'adj_indices'", "encrypted"))
    ms = npz_members(shchur_arrays())
    ms[4]["csize"] = ms[4]["size"] = 10 ** 9
    npz("csize-past-archive", ms, match=("'attr_data'", "compressed bytes"))
    ms = npz_members(shchur_arrays())
    ms[2] = member("adj_indptr.npy", b"", zipfile.ZIP_DEFLATED)
    ms[2]["data"] = deflate_zeros(2)
    ms[2]["csize"] = len(ms[2]["data"])
    ms[2]["size"] = 0xFFFFFFF0   # a 2 KB member declared as 4 GiB
    npz("member-declared-4GiB", ms, match=("'adj_indptr'", "uncompressed bytes"))
    ms = npz_members(shchur_arrays())
    ms.append(dict(ms[-1]))
    npz("duplicate-member", ms, match=("'labels'", "twice"))
    return cases


def shchur_zip_cases(d: Path) -> List[Case]:
    cases = []
    inner = zip_bytes(npz_members(shchur_arrays()))

    def zp(name, members, expect="error", match=(), check=None, raw=None, kwargs=None):
        p = d / f"{name}.zip"
        p.write_bytes(raw if raw is not None else zip_bytes(members))
        cases.append(Case(f"shchur-zip/{name}", "shchur-zip", "load_shchur_npz", [str(p)], expect,
                          (re.escape(p.name),) + tuple(match), check or {}, kwargs or {}))

    zp("valid", [member("inner/ms_academic_cs.npz", inner, zipfile.ZIP_DEFLATED)], "load",
       check=SHCHUR_LOAD)
    zp("valid-member-kwarg", [member("a.npz", inner), member("ms_academic_cs.npz", inner)], "load",
       check=SHCHUR_LOAD, kwargs=dict(member="ms_academic_cs.npz"))
    zp("no-npz", [member("readme.txt", b"hello")], match=("0 npz files",))
    zp("two-npz", [member("a.npz", inner), member("b.npz", inner)], match=("2 npz files",))
    zp("missing-member", [member("a.npz", inner)], match=("no member named 'other.npz'",),
       kwargs=dict(member="other.npz"))
    zp("inner-not-zip", [member("x.npz", b"\0" * 5000, zipfile.ZIP_DEFLATED)],
       match=("x.npz", "zip"))
    good = zip_bytes([member("x.npz", inner, zipfile.ZIP_DEFLATED)])
    zp("truncated", None, match=("zip",), raw=good[: len(good) - 30])
    # 2 MB on disk that really inflates to 2 GiB, declared as such: refused before reading.
    bomb = deflate_zeros(2048)
    zp("bomb-2GiB-declared", [dict(name="bomb.npz", data=bomb, method=zipfile.ZIP_DEFLATED,
                                   crc=0, size=2 << 30, csize=len(bomb), flags=0)],
       match=("'bomb.npz'", "uncompressed bytes"))
    # The same stream declared as 10 MiB (under the cap): reading stops at 10 MiB.
    zp("bomb-2GiB-declared-10MiB", [dict(name="bomb.npz", data=bomb, method=zipfile.ZIP_DEFLATED,
                                         crc=zlib.crc32(b"\0" * (10 * MiB)), size=10 * MiB,
                                         csize=len(bomb), flags=0)],
       match=("bomb.npz", "zip"))
    # A nested bomb: the npz inside holds a member declared as 4 GiB.
    ms = [m for m in npz_members(shchur_arrays()) if m["name"] != "labels.npy"]
    nested = zip_bytes(ms + [dict(name="labels.npy", data=deflate_zeros(4),
                                  method=zipfile.ZIP_DEFLATED, crc=0, size=0xFFFFFFF0,
                                  csize=len(deflate_zeros(4)), flags=0)])
    zp("nested-bomb", [member("n.npz", nested)], match=("n.npz", "'labels'", "uncompressed"))
    return cases


# ------------------------------------------------------------------ Planetoid
def _reduce_array(shape, dtype: str, raw, fortran=False):
    """An object that pickles like a numpy array with any (shape, dtype, data) state."""
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct

    class FakeArray:
        def __reduce__(self):
            return (_reconstruct, (np.ndarray, (0,), b"b"),
                    (1, shape, np.dtype(dtype), fortran, raw))
    return FakeArray()


def _reduce_csr(state):
    """A scipy csr_matrix whose pickled attribute dict is ``state`` (any shape, any arrays)."""
    m = sp.csr_matrix((1, 1), dtype=np.float32)
    m.__dict__.clear()
    m.__dict__.update(state)
    return m


class _Evil:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def planetoid_objects():
    F, C = 4, 3
    allx = np.arange(6 * F, dtype=np.float32).reshape(6, F) % 3
    ally = np.eye(C)[[0, 1, 2, 0, 1, 2]]
    tx = (np.arange(3 * F, dtype=np.float32).reshape(3, F) + 1) % 2
    ty = np.eye(C)[[2, 1, 0]]
    graph = collections.defaultdict(list)
    for u, v in [(0, 1), (1, 0), (1, 2), (2, 2), (3, 9), (6, 8), (6, 8), (4, 5)]:
        graph[u].append(v)
    objs = {"x": sp.csr_matrix(allx[:3]), "y": ally[:3], "tx": sp.csr_matrix(tx), "ty": ty,
            "allx": sp.csr_matrix(allx), "ally": ally, "graph": graph}
    return {k: pickle.dumps(v, protocol=2) for k, v in objs.items()}, allx, tx


PLANETOID_LOAD = dict(num_nodes=10, num_features=4, layout="torch.sparse_csr", num_edges=10,
                      y=[0, 1, 2, 0, 1, 2, 1, 0, 0, 2])


def planetoid_cases(d: Path) -> List[Case]:
    cases = []
    base, allx, tx = planetoid_objects()
    x_sum = float(allx.sum() + tx.sum())

    def folder(name, expect="error", match=(), file_key=None, check=None, test_index=b"9\n6\n8\n",
               **files):
        root = d / name
        root.mkdir()
        for key, data in {**base, **files}.items():
            (root / f"ind.tiny.{key}").write_bytes(data)
        (root / "ind.tiny.test.index").write_bytes(test_index)
        m = (re.escape(f"ind.tiny.{file_key}"),) if file_key else ()
        cases.append(Case(f"planetoid/{name}", "planetoid", "load_planetoid", [str(root), "tiny"],
                          expect, m + tuple(match), check or {}))
        return root

    folder("valid", "load", check=dict(PLANETOID_LOAD, x_sum=x_sum))
    folder("protocol-4", "load", check=dict(PLANETOID_LOAD, x_sum=x_sum),
           **{k: pickle.dumps(pickle.loads(v), protocol=4) for k, v in base.items()})
    folder("dense-features", "load", check=dict(PLANETOID_LOAD, x_sum=x_sum),
           allx=pickle.dumps(allx, protocol=2))
    folder("test-index-negative", match=("ids lie in",), file_key="test.index",
           test_index=b"9\n-6\n8\n")
    folder("test-index-huge", match=("ids lie in",), file_key="test.index",
           test_index=b"9\n6\n800000000000000\n")
    folder("test-index-enormous", match=("ids lie in",), file_key="test.index",
           test_index=b"6\n7\n" + b"9" * 4000 + b"\n")
    folder("test-index-too-many-digits", match=("line 2",), file_key="test.index",
           test_index=b"6\n" + b"9" * 5000 + b"\n8\n")
    folder("test-index-starts-late", match=("smallest to be 6",), file_key="test.index",
           test_index=b"9\n7\n8\n")
    folder("test-index-duplicate", match=("more than once",), file_key="test.index",
           test_index=b"6\n6\n8\n")
    folder("test-index-count", match=("one per row",), file_key="test.index",
           test_index=b"6\n7\n8\n9\n")
    folder("test-index-not-int", match=("line 2",), file_key="test.index",
           test_index=b"9\n6.5\n8\n")
    folder("test-index-binary", match=("ASCII",), file_key="test.index",
           test_index=b"9\n\xff\xfe\n8\n")
    marker = d / "pwned-marker"
    folder("os-system-graph", match=("refusing to load global",), file_key="graph",
           graph=pickle.dumps({0: [_Evil(f"touch {marker}")]}, protocol=2))
    folder("os-system-protocol-4", match=("refusing to load global",), file_key="y",
           y=pickle.dumps(_Evil(f"touch {marker}"), protocol=4))
    folder("eval-protocol-0", match=("refusing to load global 'builtins.eval'",), file_key="allx",
           allx=b"cbuiltins\neval\n(S'1+1'\ntR.")
    folder("numpy-scalar-global", match=("refusing to load global",), file_key="ty",
           ty=pickle.dumps(np.float64(1.5), protocol=2))
    folder("binbytes8-2TiB", match=("readable pickle",), file_key="tx",
           tx=b"\x80\x04\x8e" + struct.pack("<Q", 2 ** 41) + b"abc.")
    folder("binunicode8-huge", match=("readable pickle",), file_key="tx",
           tx=b"\x80\x04\x8d" + struct.pack("<Q", 2 ** 60) + b"abc.")
    folder("memo-index-2G", match=("memo slot",), file_key="graph",
           graph=b"\x80\x02}r" + struct.pack("<I", 2 ** 31) + b".")
    folder("frame-2PiB", match=("frame",), file_key="x",
           x=b"\x80\x04\x95" + struct.pack("<Q", 2 ** 51) + b"N.")
    folder("persistent-id", match=("PERSID",), file_key="x", x=b"\x80\x02Pabc\n.")
    folder("truncated-pickle", match=("readable pickle",), file_key="allx",
           allx=base["allx"][: len(base["allx"]) // 2])
    folder("random-bytes", match=("pickle",), file_key="ally",
           ally=np.random.default_rng(1).bytes(500))
    folder("empty-file", match=("pickle",), file_key="graph", graph=b"")
    folder("object-array-labels", match=("dtype",), file_key="ty",
           ty=pickle.dumps(np.array([[0, 1], [1, None], [0, 0]], object), protocol=2))
    folder("array-shape-lie", match=("bytes of data",), file_key="ally",
           ally=pickle.dumps(_reduce_array((10 ** 9, 3), "f8", b"\0" * 48), protocol=2))
    folder("array-dtype-lie", match=("dtype",), file_key="ally",
           ally=pickle.dumps(_reduce_array((6, 3), "V8", b"\0" * 144), protocol=2))
    folder("array-data-is-list", match=("object arrays",), file_key="ally",
           ally=pickle.dumps(_reduce_array((2,), "f8", [1.0, 2.0]), protocol=2))
    ind = np.arange(4, dtype=np.int32)
    folder("csr-shape-huge", match=("csr",), file_key="tx",
           tx=pickle.dumps(_reduce_csr({"_shape": (10 ** 12, 4), "data": np.ones(4, np.float32),
                                        "indices": ind, "indptr": np.array([0, 4], np.int32)}),
                           protocol=2))
    folder("csr-index-out-of-range", match=("csr_indices",), file_key="tx",
           tx=pickle.dumps(_reduce_csr({"_shape": (3, 4), "data": np.ones(4, np.float32),
                                        "indices": np.array([0, 9, 1, 2], np.int32),
                                        "indptr": np.array([0, 2, 3, 4], np.int32)}), protocol=2))
    folder("csr-missing-indptr", match=("indptr",), file_key="tx",
           tx=pickle.dumps(_reduce_csr({"_shape": (3, 4), "data": np.ones(4, np.float32),
                                        "indices": ind}), protocol=2))
    folder("csr-new-with-args", match=("pickle",), file_key="tx",
           tx=b"\x80\x02cscipy.sparse.csr\ncsr_matrix\nK\x01\x85\x81.")
    folder("features-not-csr", match=("csr_matrix",), file_key="x",
           x=pickle.dumps("features", protocol=2))
    folder("features-columns", match=("feature columns",), file_key="tx",
           tx=pickle.dumps(sp.csr_matrix(np.ones((3, 7), np.float32)), protocol=2))
    folder("labels-1d", match=("2-D one-hot",), file_key="ty",
           ty=pickle.dumps(np.array([2, 1, 0]), protocol=2))
    folder("labels-rows", match=("one per row",), file_key="ally",
           ally=pickle.dumps(np.eye(3)[[0, 1, 2, 0]], protocol=2))
    folder("labels-classes", match=("classes",), file_key="ty",
           ty=pickle.dumps(np.eye(5)[[2, 1, 0]], protocol=2))
    folder("graph-not-dict", match=("dict",), file_key="graph",
           graph=pickle.dumps([[1], [0]], protocol=2))
    folder("graph-neighbour-negative", match=("refers to node -3",), file_key="graph",
           graph=pickle.dumps({0: [1, -3]}, protocol=2))
    folder("graph-neighbour-huge", match=("refers to node",), file_key="graph",
           graph=pickle.dumps({0: [10 ** 15]}, protocol=2))
    folder("graph-key-string", match=("refers to node 'a'",), file_key="graph",
           graph=pickle.dumps({"a": [1]}, protocol=2))
    folder("graph-value-not-list", match=("list of neighbour ids",), file_key="graph",
           graph=pickle.dumps({0: 5}, protocol=2))
    shared = list(range(3000))
    folder("graph-shared-lists", match=("neighbour entries",), file_key="graph",
           graph=pickle.dumps({i: shared for i in range(3000)}, protocol=2))
    depth = 100_000
    folder("graph-nested-100k", match=("levels deep",), file_key="graph",
           graph=b"\x80\x02}K\x00" + b"]" * depth + b"a" * (depth - 1) + b"s.")
    cases.append(Case("planetoid/missing-file", "planetoid", "load_planetoid",
                      [str(d / "nowhere"), "tiny"], "error", (r"ind\.tiny\.x",)))
    return cases


# ------------------------------------------------------------------ heterophilous
def hetero_arrays(n=6):
    rng = np.random.default_rng(0)
    train = np.zeros((10, n), bool)
    train[:, :3] = True
    val = np.zeros((10, n), bool)
    val[:, 3:5] = True
    return dict(node_features=rng.random((n, 3)).astype(np.float32),
                node_labels=np.array([0, 1, 0, 1, 2, 2]),
                edges=np.array([[0, 1], [1, 2], [2, 3], [4, 5], [5, 0]], np.int64),
                train_masks=train, val_masks=val, test_masks=~(train | val))


HETERO_LOAD = dict(num_nodes=6, num_features=3, layout="torch.strided", num_edges=10,
                   y=[0, 1, 0, 1, 2, 2])


def hetero_cases(d: Path) -> List[Case]:
    cases = []

    def npz(name, arrays=None, expect="error", match=(), raw=None, method=zipfile.ZIP_DEFLATED):
        p = d / f"{name}.npz"
        p.write_bytes(raw if raw is not None else zip_bytes(npz_members(arrays, method)))
        cases.append(Case(f"heterophilous/{name}", "heterophilous", "load_heterophilous", [str(p)],
                          expect, (re.escape(p.name),) + tuple(match),
                          HETERO_LOAD if expect == "load" else {}))

    def with_array(name, key, value, match):
        a = hetero_arrays()
        a[key] = value
        npz(name, a, match=match)

    npz("valid", hetero_arrays(), "load")
    a = hetero_arrays()
    a["train_masks"] = a["train_masks"].astype(np.uint8)
    npz("int-masks", a, "load")
    with_array("edges-out-of-range", "edges", np.array([[0, 1], [1, 60]]), ("'edges'", r"\[0, 6\)"))
    with_array("edges-negative", "edges", np.array([[0, -1]]), ("'edges'",))
    with_array("edges-3-columns", "edges", np.zeros((4, 3), np.int64), ("'edges'", r"\[E, 2\]"))
    with_array("edges-float", "edges", np.zeros((4, 2), np.float64), ("'edges'", "dtype"))
    with_array("labels-huge", "node_labels", np.array([0, 1, 0, 1, 2, 10 ** 12]), ("'node_labels'",))
    with_array("labels-count", "node_labels", np.array([0, 1]), ("'node_labels'",))
    with_array("features-3d", "node_features", np.zeros((6, 3, 2), np.float32),
               ("'node_features'", "dimension"))
    with_array("features-object", "node_features", npy_bytes(np.zeros((6, 3), object)),
               ("'node_features'", "object"))
    with_array("masks-shape", "val_masks", np.zeros((10, 7), bool), ("'val_masks'", r"\[10, 6\]"))
    with_array("masks-values", "test_masks", np.full((10, 6), 2, np.int64), ("'test_masks'", "0 and 1"))
    a = hetero_arrays()
    del a["edges"]
    npz("missing-edges", a, match=("'edges'", "missing"))
    ms = npz_members(hetero_arrays(), zipfile.ZIP_DEFLATED)
    bomb = deflate_zeros(4)
    ms[0] = dict(name="node_features.npy", data=bomb, method=zipfile.ZIP_DEFLATED, crc=0,
                 size=0xFFFFFFF0, csize=len(bomb), flags=0)
    npz("features-declared-4GiB", match=("'node_features'", "uncompressed bytes"),
        raw=zip_bytes(ms))
    good = zip_bytes(npz_members(hetero_arrays()))
    npz("truncated", match=("zip",), raw=good[: len(good) - 200])
    return cases


# ------------------------------------------------------------------ PPI
def write_ppi(root: Path):
    root.mkdir(parents=True)
    spec = {"train": (5, [1, 1, 1, 2, 2], [(0, 1), (1, 2), (3, 4)]),
            "valid": (3, [3, 3, 3], [(0, 1), (0, 2)]), "test": (2, [4, 4], [(0, 1)])}
    for split, (n, gid, links) in spec.items():
        data = {"directed": False, "nodes": [{"id": i} for i in range(n)],
                "links": [{"source": a, "target": b} for a, b in links]}
        (root / f"{split}_graph.json").write_text(json.dumps(data))
        np.save(root / f"{split}_feats.npy", np.ones((n, 4), np.float32))
        np.save(root / f"{split}_labels.npy", np.eye(6, dtype=np.int64)[np.arange(n) % 6])
        np.save(root / f"{split}_graph_id.npy", np.array(gid))


PPI_LOAD = dict(num_nodes=10, num_features=4, layout="torch.strided", num_edges=12, x_sum=40.0)


def ppi_cases(d: Path) -> List[Case]:
    cases = []

    def folder(name, file, data, match=(), expect="error"):
        root = d / name
        write_ppi(root)
        if file:
            (root / file).write_bytes(data)
        m = (re.escape(file),) if file else ()
        cases.append(Case(f"ppi/{name}", "ppi", "load_ppi", [str(root)], expect, m + tuple(match),
                          PPI_LOAD if expect == "load" else {}))

    folder("valid", None, None, expect="load")
    folder("feats-huge-shape", "train_feats.npy",
           npy_raw("{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000, 50), }",
                   b"\0" * 80), ("declares shape",))
    folder("feats-truncated", "valid_feats.npy", npy_bytes(np.ones((3, 4), np.float32))[:-5],
           ("declares shape",))
    folder("feats-trailing", "valid_feats.npy", npy_bytes(np.ones((3, 4), np.float32)) + b"xx",
           ("declares shape",))
    folder("feats-pickle", "test_feats.npy", pickle.dumps(np.ones((2, 4))), ("magic",))
    folder("labels-object", "train_labels.npy", npy_bytes(np.zeros((5, 6), object)), ("object",))
    folder("labels-rows", "train_labels.npy", npy_bytes(np.zeros((4, 6))), ("one per row",))
    folder("labels-values", "train_labels.npy", npy_bytes(np.full((5, 6), 7)), ("0/1",))
    folder("labels-nan", "valid_labels.npy", npy_bytes(np.full((3, 6), np.nan)), ("0/1",))
    folder("graph-id-float", "test_graph_id.npy", npy_bytes(np.array([4.0, 4.0])), ("dtype",))
    folder("graph-id-count", "test_graph_id.npy", npy_bytes(np.array([4, 4, 4])), ("one per row",))
    folder("json-invalid", "valid_graph.json", b'{"nodes": [', ("JSON",))
    folder("json-binary", "valid_graph.json", b"\xff\xfe\x00", ("UTF-8",))
    folder("json-deep", "valid_graph.json", b"[" * 200_000 + b"]" * 200_000, ("JSON",))
    folder("json-huge-int", "valid_graph.json", b'{"nodes": [{"id": 1' + b"0" * 5000 + b'}], "links": []}',
           ("JSON",))
    folder("json-list", "valid_graph.json", b"[1, 2]", ("'nodes' and 'links'",))
    folder("json-node-id-string", "valid_graph.json",
           json.dumps({"nodes": [{"id": "a"}, {"id": 1}, {"id": 2}], "links": []}).encode(),
           ("'nodes'", "integer 'id'"))
    folder("json-node-count", "valid_graph.json",
           json.dumps({"nodes": [{"id": 0}, {"id": 1}], "links": []}).encode(),
           ("'nodes'", "3 consecutive"))
    folder("json-link-out-of-range", "train_graph.json",
           json.dumps({"nodes": [{"id": i} for i in range(5)],
                       "links": [{"source": 0, "target": 10 ** 30}]}).encode(), ("'links'",))
    folder("json-link-missing-target", "train_graph.json",
           json.dumps({"nodes": [{"id": i} for i in range(5)],
                       "links": [{"source": 0}]}).encode(), ("'links'",))
    folder("json-link-across-graphs", "train_graph.json",
           json.dumps({"nodes": [{"id": i} for i in range(5)],
                       "links": [{"source": 0, "target": 4}]}).encode(), ("different graphs",))
    return cases


# ------------------------------------------------------------------ TU
def write_tu(root: Path, name="TINY"):
    root.mkdir(parents=True)
    und = [(1, 2), (2, 3), (3, 1), (4, 5), (6, 7), (7, 8)]
    lines = [f"{a}, {b}" for a, b in und] + [f"{b}, {a}" for a, b in und]
    (root / f"{name}_A.txt").write_text("\n".join(lines) + "\n")
    (root / f"{name}_graph_indicator.txt").write_text("1\n1\n1\n2\n2\n3\n3\n3\n")
    (root / f"{name}_graph_labels.txt").write_text("1\n-1\n1\n")
    (root / f"{name}_node_labels.txt").write_text("1\n2\n1\n3\n1\n2\n2\n1\n")
    (root / f"{name}_node_attributes.txt").write_text(
        "\n".join(f" {i}.5, {-i}.0" for i in range(8)) + "\n")


TU_LOAD = dict(num_nodes=8, num_features=5, layout="torch.strided", num_edges=12, num_graphs=3)


def tu_cases(d: Path) -> List[Case]:
    cases = []

    def folder(name, suffix, text, match=(), expect="error"):
        root = d / name
        write_tu(root)
        if suffix:
            (root / f"TINY_{suffix}.txt").write_bytes(text)
        m = (re.escape(f"TINY_{suffix}.txt"),) if suffix else ()
        cases.append(Case(f"tu/{name}", "tu", "load_tu", [str(root), "TINY"], expect,
                          m + tuple(match), TU_LOAD if expect == "load" else {}))

    folder("valid", None, None, expect="load")
    folder("node-label-huge", "node_labels", b"1\n2\n1\n3\n1\n2\n2\n1000000000000\n", ("labels span",))
    folder("node-label-overflow", "node_labels", b"1\n2\n1\n3\n1\n2\n-99999999999999999999\n"
           b"99999999999999999999\n", ("labels span",))
    n = 60_000   # 60k distinct labels on 60k nodes: a 14 GB one-hot from a 400 KB file
    root = d / "one-hot-quadratic"
    root.mkdir()
    (root / "BIG_A.txt").write_text("1, 2\n2, 1\n")
    (root / "BIG_graph_indicator.txt").write_text("1\n" * n)
    (root / "BIG_graph_labels.txt").write_text("0\n")
    (root / "BIG_node_labels.txt").write_text("\n".join(map(str, range(n))) + "\n")
    cases.append(Case("tu/one-hot-quadratic", "tu", "load_tu", [str(root), "BIG"], "error",
                      (re.escape("BIG_node_labels.txt"), "one-hot")))
    folder("node-labels-count", "node_labels", b"1\n2\n", ("one per node",))
    folder("a-id-zero", "A", b"0, 1\n1, 2\n", ("node ids lie in",))
    folder("a-id-past-n", "A", b"1, 2\n2, 9\n", ("node ids lie in",))
    folder("a-id-overflow", "A", b"1, 2\n2, 99999999999999999999\n", ("node ids lie in",))
    folder("a-three-columns", "A", b"1, 2, 3\n2, 1, 3\n", ("3 columns",))
    folder("a-ragged", "A", b"1, 2\n2\n", ("line 2",))
    folder("a-not-numbers", "A", b"1, 2\nx, y\n", ("not an integer",))
    folder("a-float", "A", b"1, 2\n2.5, 1\n", ("not an integer",))
    folder("a-binary", "A", b"\x00\xff\x10\x80", ("ASCII",))
    folder("indicator-past-graphs", "graph_indicator", b"1\n1\n1\n2\n2\n3\n3\n7\n", ("graph ids",))
    folder("indicator-zero", "graph_indicator", b"0\n1\n1\n2\n2\n3\n3\n3\n", ("graph ids",))
    folder("indicator-unsorted", "graph_indicator", b"1\n2\n1\n2\n2\n3\n3\n3\n", ("not sorted",))
    folder("attributes-rows", "node_attributes", b"1.0, 2.0\n3.0, 4.0\n", ("one per node",))
    folder("attributes-text", "node_attributes", b"1.0, 2.0\nnope, 4.0\n" * 4, ("not a number",))
    cases.append(Case("tu/missing-file", "tu", "load_tu", [str(d / "nowhere"), "TINY"], "error",
                      (re.escape("TINY_A.txt"),)))
    return cases


# ------------------------------------------------------------------ the child process
RUNNER = textwrap.dedent("""
    import json, os, resource, signal, sys, time
    sys.path.insert(0, sys.argv[3])
    import torch
    import gkd_ext.data as D

    def props(ds):
        x = ds.x
        out = dict(num_nodes=ds.num_nodes, num_features=ds.num_features, layout=str(x.layout),
                   num_edges=ds.graph.num_edges, x_dtype=str(x.dtype))
        values = x.values() if x.layout == torch.sparse_csr else x
        out["x_sum"] = float(values.sum())
        if x.layout == torch.sparse_csr:
            out["x_nnz"] = int(x._nnz())
        if hasattr(ds, "num_graphs"):
            out["num_graphs"] = ds.num_graphs
        else:
            out["y"] = ds.y.tolist() if not ds.multilabel else None
        return out

    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024

    def reset_peak():
        # Linux resets VmHWM (the peak RSS) on "5" > clear_refs; else fall back to ru_maxrss,
        # a process-wide high-water mark that hides peaks below an earlier one.
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            return status("VmRSS"), lambda: status("VmHWM")
        except OSError:
            rss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            return rss(), rss

    def on_alarm(*_):
        raise TimeoutError("case ran over its time limit")

    cases = json.load(open(sys.argv[1]))
    page = os.sysconf("SC_PAGE_SIZE")
    vm = int(open("/proc/self/statm").read().split()[0]) * page
    cap = vm + (2 << 30)   # 2 GiB of address space above what the imports took
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    signal.signal(signal.SIGALRM, on_alarm)
    results = []
    for case in cases:
        before, peak = reset_peak()
        t0 = time.time()
        signal.alarm(int(sys.argv[4]))
        try:
            ds = getattr(D, case["loader"])(*case["args"], **case["kwargs"])
            res = dict(status="ok", props=props(ds))
        except BaseException as exc:
            res = dict(status="raised", type=type(exc).__name__,
                       mro=[k.__name__ for k in type(exc).__mro__], message=str(exc))
        finally:
            signal.alarm(0)
        res["peak_growth"] = peak() - before
        res["seconds"] = time.time() - t0
        results.append(res)
    json.dump(dict(results=results), open(sys.argv[2], "w"))
""")


def classify(case: Case, res: dict):
    """'clear error', 'correct load', or 'other: <why>'."""
    if res.get("peak_growth", 0) > PEAK_GROWTH_LIMIT:
        return f"other: peak RSS grew by {res['peak_growth'] / MiB:.0f} MiB"
    if res["status"] == "raised":
        if case.expect != "error":
            return f"other: raised {res['type']}: {res['message'][:300]}"
        if not ({"ValueError", "FileNotFoundError"} & set(res["mro"])):
            return f"other: unclear exception type {res['type']}: {res['message'][:300]}"
        missing = [m for m in case.match if not re.search(m, res["message"])]
        if missing:
            return f"other: message lacks {missing}: {res['type']}: {res['message'][:300]}"
        return "clear error"
    if case.expect != "load":
        return f"other: loaded silently ({res['props']})"
    wrong = {k: (v, res["props"].get(k)) for k, v in case.check.items() if res["props"].get(k) != v}
    return f"other: loaded wrongly {wrong}" if wrong else "correct load"


def build_corpus(root: Path) -> List[Case]:
    cases = []
    for fmt, builder in (("shchur-npz", shchur_cases), ("shchur-zip", shchur_zip_cases),
                         ("planetoid", planetoid_cases), ("heterophilous", hetero_cases),
                         ("ppi", ppi_cases), ("tu", tu_cases)):
        folder = root / fmt
        folder.mkdir(parents=True)
        cases += builder(folder)
    return cases


def test_hostile_files_give_clear_errors_without_large_allocations(tmp_path):
    cases = build_corpus(tmp_path / "corpus")
    assert len({c.name for c in cases}) == len(cases)
    (tmp_path / "cases.json").write_text(json.dumps([asdict(c) for c in cases]))
    env = {k: v for k, v in os.environ.items() if k != "GKD_DATA_MAX_EXPANSION"}
    env["OMP_NUM_THREADS"] = "1"
    proc = subprocess.run([sys.executable, "-c", RUNNER, str(tmp_path / "cases.json"),
                           str(tmp_path / "results.json"), str(REPO), str(CASE_TIMEOUT_S)],
                          capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, f"the loader process died ({proc.returncode}):\n{proc.stderr[-3000:]}"
    results = json.loads((tmp_path / "results.json").read_text())["results"]
    assert len(results) == len(cases)
    counts = collections.Counter()
    by_format = collections.defaultdict(collections.Counter)
    failures = []
    for case, res in zip(cases, results):
        verdict = classify(case, res)
        kind = verdict if not verdict.startswith("other") else "other"
        counts[kind] += 1
        by_format[case.fmt][kind] += 1
        if kind == "other":
            failures.append(f"{case.name}: {verdict}")
    peak = max(r["peak_growth"] for r in results)
    print(f"\n{len(cases)} hostile/corrupt/valid files: " +
          ", ".join(f"{k} {counts[k]}" for k in ("clear error", "correct load", "other")) +
          f"; largest per-case peak RSS growth {peak / MiB:.1f} MiB")
    for fmt, c in by_format.items():
        print(f"  {fmt:<14} " + ", ".join(f"{k} {c[k]}" for k in ("clear error", "correct load", "other")))
    assert not failures, "\n".join(failures)
    assert not (tmp_path / "corpus" / "planetoid" / "pwned-marker").exists(), \
        "a pickle ran code while loading"


# ------------------------------------------------------------------ the expansion cap itself
def test_expansion_cap_is_configurable(monkeypatch, tmp_path):
    from gkd_ext.data import load_heterophilous
    from gkd_ext.data.safe_io import (DEFAULT_MAX_EXPANSION, EXPANSION_ALLOWANCE,
                                      MAX_EXPANSION_ENV, expansion_limit, max_expansion)
    monkeypatch.delenv(MAX_EXPANSION_ENV, raising=False)
    assert max_expansion() == DEFAULT_MAX_EXPANSION
    assert expansion_limit(10) == EXPANSION_ALLOWANCE
    assert expansion_limit(1 << 20) == max(EXPANSION_ALLOWANCE, int(DEFAULT_MAX_EXPANSION) << 20)
    monkeypatch.setenv(MAX_EXPANSION_ENV, "2000")
    assert expansion_limit(1 << 20) == 2000 << 20
    for bad in ("0", "-3", "nan", "inf", "lots"):
        monkeypatch.setenv(MAX_EXPANSION_ENV, bad)
        with pytest.raises(ValueError, match=MAX_EXPANSION_ENV):
            max_expansion()
    # 100 MiB of zeros in ~100 KB: over the default cap, under a raised one (read bounded).
    monkeypatch.delenv(MAX_EXPANSION_ENV)
    arrays = hetero_arrays()
    ms = npz_members(arrays, zipfile.ZIP_DEFLATED)
    ms.append(dict(name="padding.npy", data=deflate_zeros(100), method=zipfile.ZIP_DEFLATED,
                   crc=zlib.crc32(b"\0" * (100 * MiB)), size=100 * MiB,
                   csize=len(deflate_zeros(100)), flags=0))
    path = tmp_path / "padded.npz"
    path.write_bytes(zip_bytes(ms))
    from gkd_ext.data.safe_io import NpzArchive, Where
    with NpzArchive(path, Where("t", path)) as npz:
        with pytest.raises(ValueError, match=r"'padding'.*uncompressed bytes"):
            npz.array("padding")
    assert load_heterophilous(path).num_nodes == 6   # unread members do not matter


@pytest.mark.skipif(not (REPO.parent / "shared" / "data").is_dir(), reason="no shared data")
def test_every_real_archive_member_passes_the_default_cap():
    from gkd_ext.data.safe_io import check_member, Where, expansion_limit
    data = REPO.parent / "shared" / "data"
    worst = 0.0
    for path in sorted(list(data.rglob("*.npz")) + list(data.rglob("*.zip"))):
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                check_member(info, path.stat().st_size, Where("t", path), info.filename)
                worst = max(worst, info.file_size / max(info.compress_size, 1))
    assert worst < 300   # chameleon_filtered node_features.npy: 248:1
    assert expansion_limit(1) >= 64 << 20
