"""Bounded readers for untrusted data files: ``.npy`` arrays, npz and zip members, CSR arrays.

Every size a file declares (an npy header's shape, a zip member's uncompressed size) is checked
against the bytes that are really there *before* anything is allocated, archive members are
read in chunks and never past what their header and the expansion cap allow, and nothing is
ever unpickled. Failures raise :class:`DataFormatError`, whose message names the file, the
field and what was expected.

The expansion cap: a compressed archive member may declare at most
``max(EXPANSION_ALLOWANCE, ratio * compressed_size)`` uncompressed bytes, where ``ratio`` is
the environment variable ``GKD_DATA_MAX_EXPANSION`` (default :data:`DEFAULT_MAX_EXPANSION`).
The most compressible real file in ``../shared/data`` is chameleon_filtered's
``node_features.npy`` at 248:1; deflate itself tops out near 1032:1, so the default halves
what a deflate bomb can reach, and other methods (bzip2, lzma: 10^6:1 and more) are refused.
"""
from __future__ import annotations

import ast
import math
import os
import struct
import zipfile
import zlib
from typing import BinaryIO, Dict, Optional, Sequence, Tuple, Union

import numpy as np

MAX_EXPANSION_ENV = "GKD_DATA_MAX_EXPANSION"
DEFAULT_MAX_EXPANSION = 500.0
# Any member may expand to this many bytes whatever its ratio: small files stay loadable.
EXPANSION_ALLOWANCE = 64 << 20
# numpy's own default limit on an npy header (np.load's max_header_size).
MAX_NPY_HEADER = 10_000
READ_CHUNK = 1 << 20
_ZIP_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate"}
_NPY_MAGIC = b"\x93NUMPY"
# What can go wrong inside zipfile/zlib while reading a corrupt member.
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError,
               RuntimeError, struct.error, ValueError, OverflowError)

KIND_NAMES = {"b": "bool", "i": "signed integer", "u": "unsigned integer", "f": "floating point"}
NUMERIC = "biuf"
INTEGER = "iu"


class DataFormatError(ValueError):
    """A data file is malformed, inconsistent with itself, or declares more than it holds.
    The message names the file, the field and what was expected."""


class Where:
    """Names a place in a file for error messages: the loader, the path, an archive member."""

    def __init__(self, loader: str, path: Union[str, os.PathLike], member: Optional[str] = None):
        self.loader, self.path, self.member = loader, os.fspath(path), member

    def inside(self, member: str) -> "Where":
        return Where(self.loader, self.path, member)

    def __str__(self) -> str:
        return f"{self.path!r}" + (f" (member {self.member!r})" if self.member else "")

    def error(self, field: Optional[str], message: str) -> DataFormatError:
        """The error for ``field`` (an array, a key; None or the file's own name for the whole
        file): "<loader>: '<path>': '<field>': <message>"."""
        where = f"{self.loader}: {self}"
        if field is None or (self.member is None and field == os.path.basename(self.path)):
            return DataFormatError(f"{where}: {message}")
        return DataFormatError(f"{where}: {field!r}: {message}")


def max_expansion() -> float:
    """The expansion ratio in force: ``GKD_DATA_MAX_EXPANSION`` or :data:`DEFAULT_MAX_EXPANSION`."""
    raw = os.environ.get(MAX_EXPANSION_ENV)
    if raw is None or raw == "":
        return DEFAULT_MAX_EXPANSION
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value > 0 or math.isinf(value):
        raise ValueError(f"{MAX_EXPANSION_ENV} must be a positive finite number, got {raw!r}")
    return value


def expansion_limit(stored_bytes: int) -> int:
    """The most bytes ``stored_bytes`` of compressed data may expand to (see the module doc)."""
    return max(EXPANSION_ALLOWANCE, int(max_expansion() * stored_bytes))


def read_ascii(path: Union[str, os.PathLike], where: Where, expected: str) -> str:
    """A text file's contents, or an error naming the file when it is not ASCII text;
    ``expected`` says what its lines should hold."""
    field = os.path.basename(path)
    try:
        with open(path, "rb") as f:
            return f.read().decode("ascii")
    except UnicodeDecodeError as exc:
        raise where.error(field, f"is not ASCII text (byte {exc.start}); expected "
                                 f"{expected}") from None


def _kinds_text(kinds: str) -> str:
    return " or ".join(KIND_NAMES[k] for k in kinds)


# ------------------------------------------------------------------ npy
def _read_small(f: BinaryIO, n: int, where: Where, field: str, what: str) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise where.error(field, f"truncated {what}: expected {n} bytes, found {len(data)}")
    return data


def read_npy_header(f: BinaryIO, where: Where, field: str) -> Tuple[np.dtype, Tuple[int, ...], bool, int]:
    """Parse an npy header from ``f`` without trusting it: ``(dtype, shape, fortran_order,
    header_bytes)``. The header length is bounded (:data:`MAX_NPY_HEADER`) before it is read,
    the dictionary is parsed as a literal, and object dtypes are refused."""
    magic = _read_small(f, 8, where, field, ".npy header")
    if magic[:6] != _NPY_MAGIC:
        raise where.error(field, "is not a .npy array (bad magic bytes); expected numpy's "
                                 "\\x93NUMPY format")
    major = magic[6]
    if major == 1:
        length_format, encoding = "<H", "latin1"
    elif major in (2, 3):
        length_format, encoding = "<I", "latin1" if major == 2 else "utf8"
    else:
        raise where.error(field, f"has .npy format version {major}.{magic[7]}; expected 1.0, "
                                 "2.0 or 3.0")
    size = struct.calcsize(length_format)
    header_len = struct.unpack(length_format, _read_small(f, size, where, field, ".npy header"))[0]
    if header_len > MAX_NPY_HEADER:
        raise where.error(field, f"declares a {header_len}-byte .npy header; expected at most "
                                 f"{MAX_NPY_HEADER}")
    raw = _read_small(f, header_len, where, field, ".npy header")
    try:
        d = ast.literal_eval(raw.decode(encoding))
    except Exception as exc:  # SyntaxError, ValueError, UnicodeDecodeError, RecursionError, ...
        raise where.error(field, f"has an unreadable .npy header ({type(exc).__name__}); expected "
                                 "a dict with 'descr', 'fortran_order' and 'shape'") from None
    if not isinstance(d, dict) or set(d) != {"descr", "fortran_order", "shape"}:
        raise where.error(field, "has a .npy header that is not a dict with exactly 'descr', "
                                 "'fortran_order' and 'shape'")
    shape = d["shape"]
    if not isinstance(shape, tuple) or not all(type(s) is int and s >= 0 for s in shape):
        raise where.error(field, f"has .npy shape {shape!r}; expected a tuple of non-negative ints")
    if not isinstance(d["fortran_order"], bool):
        raise where.error(field, f"has .npy fortran_order {d['fortran_order']!r}; expected a bool")
    try:
        dtype = np.lib.format.descr_to_dtype(d["descr"])
    except Exception:
        raise where.error(field, f"has .npy dtype {d['descr']!r}, which numpy cannot read") from None
    if dtype.hasobject:
        raise where.error(field, f"is an object array (dtype {dtype}); reading it would unpickle "
                                 "code, so it is refused")
    return dtype, shape, d["fortran_order"], 6 + 2 + size + header_len


def read_npy_stream(f: BinaryIO, available: int, where: Where, field: str, kinds: str = NUMERIC,
                    ndim: Union[int, Sequence[int], None] = None) -> np.ndarray:
    """Read one npy array from ``f``, which holds exactly ``available`` bytes (the file or
    member size). The header's shape times the item size must account for exactly the bytes
    after the header before a buffer of that size is allocated; data is read in chunks.
    ``kinds`` are the allowed dtype kinds (numpy's ``dtype.kind`` letters), ``ndim`` the allowed
    numbers of dimensions. Returns a native-byte-order array."""
    dtype, shape, fortran, header = read_npy_header(f, where, field)
    if dtype.kind not in kinds or dtype.itemsize == 0:
        raise where.error(field, f"has dtype {dtype}; expected {_kinds_text(kinds)}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if len(shape) not in allowed:
            raise where.error(field, f"has shape {shape}; expected "
                                     f"{' or '.join(str(a) for a in allowed)} dimension(s)")
    nbytes = math.prod(shape) * dtype.itemsize
    if header + nbytes != available:
        raise where.error(field, f"declares shape {shape} of {dtype} ({nbytes} bytes of data) but "
                                 f"holds {available - header} bytes after its header")
    buf = np.empty(nbytes, dtype=np.uint8)
    done = 0
    while done < nbytes:
        chunk = f.read(min(READ_CHUNK, nbytes - done))
        if not chunk:
            raise where.error(field, f"ends after {done} of {nbytes} data bytes")
        if len(chunk) > nbytes - done:
            raise where.error(field, f"holds more than the {nbytes} data bytes its header declares")
        buf[done:done + len(chunk)] = np.frombuffer(chunk, dtype=np.uint8)
        done += len(chunk)
    if f.read(1):
        raise where.error(field, f"holds more than the {nbytes} data bytes its header declares")
    arr = buf.view(dtype).reshape(shape, order="F" if fortran else "C")
    if not dtype.isnative:
        arr = arr.astype(dtype.newbyteorder("="))
    return arr


def read_npy(path: Union[str, os.PathLike], loader: str, field: Optional[str] = None,
             kinds: str = NUMERIC, ndim: Union[int, Sequence[int], None] = None) -> np.ndarray:
    """Read a ``.npy`` file with the checks of :func:`read_npy_stream` (never unpickles)."""
    path = os.fspath(path)
    where = Where(loader, path)
    field = field or os.path.basename(path)
    try:
        with open(path, "rb") as f:
            return read_npy_stream(f, os.fstat(f.fileno()).st_size, where, field, kinds, ndim)
    except FileNotFoundError:
        raise FileNotFoundError(f"{loader}: no file at {path!r}") from None
    except IsADirectoryError:
        raise where.error(field, "is a directory; expected a .npy file") from None


# ------------------------------------------------------------------ zip and npz
def open_zip(file: Union[str, os.PathLike, BinaryIO], where: Where) -> zipfile.ZipFile:
    """A :class:`zipfile.ZipFile` over ``file``, or a :class:`DataFormatError` naming it."""
    try:
        return zipfile.ZipFile(file)
    except FileNotFoundError:
        raise FileNotFoundError(f"{where.loader}: no file at {where.path!r}") from None
    except _ZIP_ERRORS as exc:
        raise where.error(None, f"is not a readable zip archive (npz files are zip archives): "
                                f"{exc}") from None


def check_member(info: zipfile.ZipInfo, archive_bytes: int, where: Where, field: str) -> None:
    """Refuse a zip member before reading it: encrypted, an unsupported method, a compressed
    size larger than the archive, or an uncompressed size over :func:`expansion_limit`."""
    if info.flag_bits & 0x1:
        raise where.error(field, "is encrypted; expected a plain zip member")
    if info.compress_type not in _ZIP_METHODS:
        raise where.error(field, f"is compressed with zip method {info.compress_type}; expected "
                                 "stored (0) or deflate (8), as numpy and zip tools write")
    if info.compress_size > archive_bytes:
        raise where.error(field, f"declares {info.compress_size} compressed bytes, more than the "
                                 f"{archive_bytes} bytes of the whole archive")
    limit = expansion_limit(info.compress_size)
    if info.file_size > limit:
        raise where.error(field, f"declares {info.file_size} uncompressed bytes from "
                                 f"{info.compress_size} compressed ones; expected at most {limit} "
                                 f"(at most {max_expansion():g} times the compressed size, see "
                                 f"{MAX_EXPANSION_ENV}, or {EXPANSION_ALLOWANCE} bytes)")


def read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, archive_bytes: int, where: Where) -> bytes:
    """All bytes of one zip member, after :func:`check_member`, read in chunks and never past
    the declared size (nor the expansion cap); the CRC is verified."""
    field = info.filename
    check_member(info, archive_bytes, where, field)
    out = bytearray()
    try:
        with zf.open(info) as f:
            while True:
                chunk = f.read(READ_CHUNK)
                if not chunk:
                    break
                out += chunk
                if len(out) > info.file_size:
                    raise where.error(field, f"decompresses past its declared {info.file_size} bytes")
    except DataFormatError:
        raise
    except _ZIP_ERRORS as exc:
        raise where.error(field, f"is a corrupt zip member: {exc}") from None
    if len(out) != info.file_size:
        raise where.error(field, f"holds {len(out)} bytes; its header declares {info.file_size}")
    return bytes(out)


class NpzArchive:
    """An ``.npz`` file (a path or a file object holding ``archive_bytes`` bytes) read member by
    member with :func:`check_member` and :func:`read_npy_stream`: nothing is unpickled,
    nothing is allocated before its declared size has been checked against the data."""

    def __init__(self, file: Union[str, os.PathLike, BinaryIO], where: Where,
                 archive_bytes: Optional[int] = None):
        self.where = where
        if archive_bytes is None:
            try:
                archive_bytes = os.path.getsize(file)
            except FileNotFoundError:
                raise FileNotFoundError(f"{where.loader}: no file at {where.path!r}") from None
        self.archive_bytes = archive_bytes
        self._zf = open_zip(file, where)
        self._members: Dict[str, zipfile.ZipInfo] = {}
        for info in self._zf.infolist():
            if info.filename.endswith(".npy"):
                key = info.filename[:-4]
                if key in self._members:
                    self.close()
                    raise where.error(key, "appears twice in the archive")
                self._members[key] = info

    @property
    def files(self):
        return list(self._members)

    def __contains__(self, key: str) -> bool:
        return key in self._members

    def array(self, key: str, kinds: str = NUMERIC,
              ndim: Union[int, Sequence[int], None] = None) -> np.ndarray:
        """The array stored under ``key`` (see :func:`read_npy_stream` for ``kinds``/``ndim``)."""
        info = self._members.get(key)
        if info is None:
            raise self.where.error(key, f"is missing; the archive holds {sorted(self._members)}")
        check_member(info, self.archive_bytes, self.where, key)
        try:
            with self._zf.open(info) as f:
                return read_npy_stream(f, info.file_size, self.where, key, kinds, ndim)
        except DataFormatError:
            raise
        except _ZIP_ERRORS as exc:
            raise self.where.error(key, f"is a corrupt npz member: {exc}") from None

    def close(self) -> None:
        self._zf.close()

    def __enter__(self) -> "NpzArchive":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ------------------------------------------------------------------ CSR arrays
def check_csr(data: np.ndarray, indices: np.ndarray, indptr: np.ndarray, shape, where: Where,
              prefix: str) -> Tuple[int, int]:
    """Check CSR arrays against each other and against ``shape`` (``prefix`` names them in
    messages, e.g. ``attr`` for ``attr_data``/``attr_indices``/``attr_indptr``/``attr_shape``):
    ``indptr`` has ``rows + 1`` non-decreasing entries from 0 to ``nnz``, ``indices`` lie in
    ``[0, cols)``. Returns ``(rows, cols)``; never allocates anything of the declared shape."""
    shape = np.asarray(shape)
    if shape.shape != (2,) or shape.dtype.kind not in INTEGER or \
            not all(0 <= s < 2 ** 62 for s in shape.tolist()):
        raise where.error(f"{prefix}_shape", f"is {shape.tolist()!r}; expected two non-negative "
                                             "integers (rows, columns)")
    rows, cols = (int(s) for s in shape.tolist())
    for name, arr in (("data", data), ("indices", indices), ("indptr", indptr)):
        if arr.ndim != 1:
            raise where.error(f"{prefix}_{name}", f"has shape {arr.shape}; expected one dimension")
    if indptr.size != rows + 1:
        raise where.error(f"{prefix}_shape", f"declares {rows} rows but '{prefix}_indptr' has "
                                             f"{indptr.size} entries; expected rows + 1")
    if cols >= 2 ** 31:
        raise where.error(f"{prefix}_shape", f"declares {cols} columns; expected fewer than 2**31")
    nnz = indices.size
    if data.size != nnz:
        raise where.error(f"{prefix}_data", f"has {data.size} entries but '{prefix}_indices' has "
                                            f"{nnz}; expected one value per index")
    if indptr.dtype.kind not in INTEGER or indices.dtype.kind not in INTEGER:
        raise where.error(f"{prefix}_indptr", f"'{prefix}_indptr'/'{prefix}_indices' have dtypes "
                                              f"{indptr.dtype}/{indices.dtype}; expected integers")
    if int(indptr[0]) != 0 or int(indptr[-1]) != nnz or \
            (rows and bool((np.diff(indptr.astype(np.int64)) < 0).any())):
        raise where.error(f"{prefix}_indptr", f"must rise from 0 to {nnz} (the number of stored "
                                              "entries) without decreasing")
    if nnz and (int(indices.min()) < 0 or int(indices.max()) >= cols):
        raise where.error(f"{prefix}_indices", f"lie in [{int(indices.min())}, "
                                               f"{int(indices.max())}]; expected [0, {cols}) "
                                               f"for '{prefix}_shape' {[rows, cols]}")
    return rows, cols
