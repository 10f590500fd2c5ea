"""Benchmark harness shared by every bench/bench_<op>.py script.

Each measurement: a correctness check against a reference first (a wrong kernel is never
timed), warm-up calls, then the median of timed repeats, and the op's peak *extra* memory
(CUDA: the caching allocator's peak above what was allocated before the call; CPU: the
process's peak resident set above its level before the call, after resetting the kernel's
high-water mark through /proc/self/clear_refs). Out-of-memory is reported as a row status,
not a crash. Results print as a table and, with --json PATH, as JSON with the run's metadata.

Use:
    bench = Bench("spmm", args)
    bench.add("arxiv D=128 fwd", "gkd_ext", fn, check=lambda: (out, ref), bytes={...}, flops=...)
    bench.add("arxiv D=128 fwd", "torch.sparse", fn2, baseline=True)
    bench.finish()   # prints, computes ratios vs every baseline of the same case, writes JSON
"""
from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, List, Optional

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

# CPU peak memory is read from the process's resident set. glibc keeps freed blocks below its
# (adaptive, up to 32 MB) mmap threshold for reuse, which would hide a call's allocations from
# the RSS; with a fixed 64 KB threshold every large tensor is its own mapping, returned on free.
# The threshold is set in-process through mallopt (what the MALLOC_MMAP_THRESHOLD_ variable does
# at start-up; both also switch off glibc's adaptive raising of it), so importing this module
# never re-executes the process. It governs allocations made from here on, which is all that the
# measurements see. The cost is the one the variable always had: blocks of 64 KB to 32 MB are
# mapped afresh (page faults) instead of recycled, so CPU times stay comparable with earlier runs.
_M_MMAP_THRESHOLD = -3   # glibc's malloc.h
MMAP_THRESHOLD = 65536


def fix_mmap_threshold(threshold: int = MMAP_THRESHOLD) -> str:
    """Set glibc's mmap threshold for this process; returns how (for the run's metadata)."""
    if os.environ.get("MALLOC_MMAP_THRESHOLD_"):
        return f"MALLOC_MMAP_THRESHOLD_={os.environ['MALLOC_MMAP_THRESHOLD_']} (environment)"
    if not sys.platform.startswith("linux"):
        return "not set (not Linux): CPU peak memory may be under-reported"
    try:
        import ctypes
        libc = ctypes.CDLL(None)
        if libc.mallopt(_M_MMAP_THRESHOLD, threshold) == 1:
            return f"mallopt(M_MMAP_THRESHOLD, {threshold})"
    except (OSError, AttributeError):
        pass
    return "not set (no glibc mallopt): CPU peak memory may be under-reported"


MMAP_SETTING = fix_mmap_threshold()


# ------------------------------------------------------------------ arguments
def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                   help="cpu or cuda (default: cuda when available)")
    p.add_argument("--repeat", type=int, default=5, help="timed repeats; the median is reported")
    p.add_argument("--warmup", type=int, default=1, help="untimed calls before timing")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH "
                   "(rewritten after every row, so a run stopped part-way keeps its rows)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all)")
    p.add_argument("--copy-mb", type=int, default=512,
                   help="size of the tensor whose clone() measures the copy bandwidth")
    return p


def graph_parser(description: str, dims_help: str = "feature widths") -> argparse.ArgumentParser:
    """:func:`parser` plus the sizes of the graph benchmarks: --workloads, --dims, --scale."""
    p = parser(description)
    p.add_argument("--workloads", nargs="+", default=None,
                   help="arxiv, reddit, products (default: arxiv on CPU, all three on CUDA)")
    p.add_argument("--dims", nargs="+", type=int, default=None,
                   help=f"{dims_help} (default: 128 on CPU; 64 128 256 on CUDA)")
    p.add_argument("--scale", type=float, default=1.0, help="shrink the workload graphs (say so)")
    return p


def graph_sizes(args: argparse.Namespace):
    """(device, workloads, dims) of a :func:`graph_parser` run, the defaults filled in."""
    dev = torch.device(args.device)
    workloads = args.workloads or (["arxiv"] if dev.type == "cpu" else ["arxiv", "reddit", "products"])
    dims = args.dims or ([128] if dev.type == "cpu" else [64, 128, 256])
    return dev, workloads, dims


# ------------------------------------------------------------------ measurement
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rss_kb(field_name: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    return 0


def _reset_cpu_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM to the current RSS (Linux >= 4.0)
        return True
    except OSError:
        return False


def measure_once(fn: Callable[[], object], device: torch.device):
    """One call of fn: ``(output, milliseconds, peak extra bytes or None)``. The peak is what the
    call needs above what is held before it (CUDA: caching-allocator peak; CPU: resident-set
    high-water mark, None where /proc cannot reset it)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        out = fn()
        end.record()
        torch.cuda.synchronize(device)
        return out, start.elapsed_time(end), torch.cuda.max_memory_allocated(device) - base
    can_peak = _reset_cpu_peak()
    base = _rss_kb("VmRSS")
    t0 = time.perf_counter()
    out = fn()
    ms = (time.perf_counter() - t0) * 1e3
    peak = max(_rss_kb("VmHWM") - base, 0) * 1024 if can_peak else None
    return out, ms, peak


def peak_extra_memory(fn: Callable[[], object], device: torch.device) -> Optional[int]:
    """Bytes the call needs above what is held before it (None where it cannot be measured)."""
    out, _, peak = measure_once(fn, device)
    del out
    return peak


def time_ms(fn: Callable[[], object], device: torch.device, warmup: int, repeat: int) -> List[float]:
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeat):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize(device)
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return times


def is_oom(exc: BaseException) -> bool:
    if isinstance(exc, torch.OutOfMemoryError) or isinstance(exc, MemoryError):
        return True
    msg = str(exc).lower()
    return any(s in msg for s in ("out of memory", "can't allocate memory", "not enough memory",
                                  "cannot allocate memory"))


def max_abs_error(out, ref) -> float:
    if isinstance(out, (tuple, list)):
        return max(max_abs_error(o, r) for o, r in zip(out, ref))
    return float((out.detach().double() - ref.detach().double()).abs().max()) if out.numel() else 0.0


def relative(out, ref):
    """(out, ref) each divided by max|ref|, so the harness's absolute tolerance becomes relative
    per tensor (gradients are often far smaller than 1)."""
    if isinstance(ref, (tuple, list)):
        pairs = [relative(o, r) for o, r in zip(out, ref)]
        return tuple(p[0] for p in pairs), tuple(p[1] for p in pairs)
    scale = float(ref.detach().abs().max()) if ref.numel() else 1.0
    scale = scale or 1.0
    return out.detach() / scale, ref.detach() / scale


def _ref_scale(ref) -> float:
    if isinstance(ref, (tuple, list)):
        return max([1.0] + [float(r.detach().abs().max()) for r in ref if r.numel()])
    return max(1.0, float(ref.detach().abs().max())) if ref.numel() else 1.0


def copy_bandwidth_gbs(device: torch.device, mb: int = 512) -> float:
    """The device's measured copy bandwidth: a large tensor clone(), bytes read + written."""
    x = torch.empty(mb * (1 << 20) // 4, device=device)
    times = time_ms(lambda: x.clone(), device, 1, 5)
    return 2 * x.numel() * 4 / (statistics.median(times) * 1e-3) / 1e9


# ------------------------------------------------------------------ results
@dataclass
class Row:
    case: str
    impl: str
    status: str = "ok"            # ok | oom | error | wrong | skipped
    ms: Optional[float] = None     # median
    ms_min: Optional[float] = None
    peak_mb: Optional[float] = None
    max_err: Optional[float] = None
    gbps: Dict[str, float] = field(default_factory=dict)
    tflops: Optional[float] = None
    baseline: bool = False
    speedup: Dict[str, float] = field(default_factory=dict)   # baseline time / this time
    note: str = ""


class Bench:
    def __init__(self, name: str, args: argparse.Namespace):
        self.name, self.args = name, args
        self.device = torch.device(args.device)
        if getattr(args, "threads", None):
            torch.set_num_threads(args.threads)
        self.rows: List[Row] = []
        self.meta = metadata(self.device)
        # What is alive now (imported modules: torch, PyG, ...) lives to the end; frozen, it is
        # not rescanned by the collection before every measurement (0.3 s each with PyG).
        gc.collect()
        gc.freeze()
        print(f"# {name} on {self.meta['device_name']} | torch {torch.__version__} | "
              f"{torch.get_num_threads()} CPU threads | commit {self.meta['commit']}", flush=True)

    def add(self, case: str, impl: str, fn: Callable[[], object], *,
            check: Optional[Callable[[], tuple]] = None, tol: float = 1e-3,
            bytes: Optional[Dict[str, float]] = None, flops: Optional[float] = None,
            baseline: bool = False, memory: bool = True, note: str = "",
            once: bool = False, verify: Optional[Callable[[object], tuple]] = None) -> Row:
        """Measure fn. ``check`` returns (out, ref) compared by max abs error <= tol·max|ref|
        (a mismatch marks the row 'wrong' and skips timing). ``bytes`` maps a byte-model name
        to the bytes one call moves, reported as GB/s; ``flops`` gives TFLOP/s.

        ``once=True`` is for cases too costly to run twice: a single call is timed with its
        peak memory, then ``verify(output)`` returns (out, ref) checked as above; a mismatch
        marks the row 'wrong' and its time is not reported."""
        row = Row(case, impl, baseline=baseline, note=note)
        try:
            if once:
                out, ms, peak = measure_once(fn, self.device)
                if verify is not None and not self._compare(row, *verify(out), tol):
                    del out
                    self._push(row)
                    return row
                del out
                row.peak_mb = None if peak is None or not memory else peak / 2**20
                row.ms = row.ms_min = ms
            else:
                if check is not None and not self._compare(row, *check(), tol):
                    self._push(row)
                    return row
                if memory:
                    peak = peak_extra_memory(fn, self.device)
                    row.peak_mb = None if peak is None else peak / 2**20
                times = time_ms(fn, self.device, self.args.warmup, self.args.repeat)
                row.ms, row.ms_min = statistics.median(times), min(times)
            for k, b in (bytes or {}).items():
                row.gbps[k] = b / (row.ms * 1e-3) / 1e9
            if flops:
                row.tflops = flops / (row.ms * 1e-3) / 1e12
        except Exception as exc:  # noqa: BLE001  (reported, never hidden)
            row.status = "oom" if is_oom(exc) else "error"
            row.ms = row.ms_min = None
            row.note = (row.note + " " if row.note else "") + f"{type(exc).__name__}: {str(exc)[:160]}"
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        self._push(row)
        return row

    def skip(self, case: str, impl: str, why: str, baseline: bool = False) -> Row:
        """A row that was not measured, with the reason shown in the table and the JSON."""
        row = Row(case, impl, status="skipped", baseline=baseline, note=why)
        self._push(row)
        return row

    @staticmethod
    def _compare(row: Row, out, ref, tol: float) -> bool:
        row.max_err = max_abs_error(out, ref)
        if row.max_err > tol * _ref_scale(ref):
            row.status = "wrong"
            return False
        return True

    def _push(self, row: Row) -> None:
        self.rows.append(row)
        print("  " + _fmt(row), flush=True)
        self._write_json(complete=False)

    def finish(self) -> List[Row]:
        for row in self.rows:
            if row.status != "ok" or row.baseline:
                continue
            for base in self.rows:
                if base.case == row.case and base.baseline and base.status == "ok":
                    row.speedup[base.impl] = base.ms / row.ms
        self.print_table()
        if self._write_json(complete=True):
            print(f"wrote {self.args.json}")
        return self.rows

    def _write_json(self, complete: bool) -> bool:
        path = getattr(self.args, "json", None)
        if not path:
            return False
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"bench": self.name, "complete": complete, "meta": self.meta,
                       "args": {k: v for k, v in vars(self.args).items()},
                       "rows": [asdict(r) for r in self.rows]}, f, indent=1, default=str)
        os.replace(tmp, path)
        return True

    def print_table(self) -> None:
        print(f"\n## {self.name}: speed-up = baseline time / this time (> 1 means faster)")
        print(f"{'case':<34} {'impl':<22} {'ms':>10} {'peak MB':>9} {'GB/s':>16} {'TFLOP/s':>8}  speed-up / status")
        for r in self.rows:
            print(_fmt(r))


def _fmt(r: Row) -> str:
    ms = f"{r.ms:10.2f}" if r.ms is not None else f"{'-':>10}"
    peak = f"{r.peak_mb:9.1f}" if r.peak_mb is not None else f"{'-':>9}"
    gb = "/".join(f"{v:.1f}" for v in r.gbps.values()) or "-"
    tf = f"{r.tflops:8.2f}" if r.tflops is not None else f"{'-':>8}"
    if r.status != "ok":
        tail = f"{r.status.upper()} {r.note}"
    elif r.baseline:
        tail = "(baseline)"
    else:
        tail = "  ".join(f"{v:.2f}x vs {k}" for k, v in r.speedup.items())
    return f"{r.case:<34} {r.impl:<22} {ms} {peak} {gb:>16} {tf}  {tail}"


def metadata(device: torch.device) -> dict:
    from gkd_ext.train.common import git_commit
    commit = os.environ.get("GKD_COMMIT") or git_commit()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"CPU {platform.processor() or platform.machine()} x{os.cpu_count()}"
    return {"device": str(device), "device_name": name, "torch": torch.__version__,
            "cuda": torch.version.cuda, "threads": torch.get_num_threads(), "commit": commit,
            "python": platform.python_version(), "cpu_peak_memory": MMAP_SETTING,
            "date": datetime.datetime.now().isoformat(timespec="seconds")}


def try_import_torch_scatter():
    """torch_scatter, or None when it is not installed (the GPU machine has none) or cannot load
    (a build for another torch fails with OSError, not ImportError)."""
    try:
        import torch_scatter
        return torch_scatter
    except (ImportError, OSError):
        return None


def try_import_pyg():
    """torch_geometric, or None when it is not installed or cannot load (imported lazily: only
    the benchmarks that compare against PyG need it)."""
    try:
        import torch_geometric
        import torch_geometric.nn  # noqa: F401
        return torch_geometric
    except (ImportError, OSError):
        return None
