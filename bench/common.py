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
if __name__ != "__main__" and os.environ.get("MALLOC_MMAP_THRESHOLD_") is None and \
        sys.argv and sys.argv[0].endswith(".py"):
    os.environ["MALLOC_MMAP_THRESHOLD_"] = "65536"
    os.execv(sys.executable, [sys.executable] + sys.argv)


# ------------------------------------------------------------------ arguments
def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                   help="cpu or cuda (default: cuda when available)")
    p.add_argument("--repeat", type=int, default=5, help="timed repeats; the median is reported")
    p.add_argument("--warmup", type=int, default=1, help="untimed calls before timing")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all)")
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


def peak_extra_memory(fn: Callable[[], object], device: torch.device) -> Optional[int]:
    """Bytes the call needs above what is held before it (None where it cannot be measured)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        out = fn()
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device) - base
        del out
        return peak
    if not _reset_cpu_peak():
        return None
    base = _rss_kb("VmRSS")
    out = fn()
    peak = _rss_kb("VmHWM") - base
    del out
    gc.collect()
    return max(peak, 0) * 1024


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
        print(f"# {name} on {self.meta['device_name']} | torch {torch.__version__} | "
              f"{torch.get_num_threads()} CPU threads | commit {self.meta['commit']}", flush=True)

    def add(self, case: str, impl: str, fn: Callable[[], object], *,
            check: Optional[Callable[[], tuple]] = None, tol: float = 1e-3,
            bytes: Optional[Dict[str, float]] = None, flops: Optional[float] = None,
            baseline: bool = False, memory: bool = True, note: str = "") -> Row:
        """Measure fn. ``check`` returns (out, ref) compared by max abs error <= tol·max|ref|
        (a mismatch marks the row 'wrong' and skips timing). ``bytes`` maps a byte-model name
        to the bytes one call moves, reported as GB/s; ``flops`` gives TFLOP/s."""
        row = Row(case, impl, baseline=baseline, note=note)
        try:
            if check is not None:
                out, ref = check()
                row.max_err = max_abs_error(out, ref)
                scale = max(1.0, float(ref.detach().abs().max())) if not isinstance(ref, (tuple, list)) \
                    else max(1.0, max(float(r.detach().abs().max()) for r in ref if r.numel()))
                del out, ref
                if row.max_err > tol * scale:
                    row.status = "wrong"
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
            row.note = (row.note + " " if row.note else "") + f"{type(exc).__name__}: {str(exc)[:160]}"
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        self._push(row)
        return row

    def _push(self, row: Row) -> None:
        self.rows.append(row)
        print("  " + _fmt(row), flush=True)

    def finish(self) -> List[Row]:
        for row in self.rows:
            if row.status != "ok" or row.baseline:
                continue
            for base in self.rows:
                if base.case == row.case and base.baseline and base.status == "ok":
                    row.speedup[base.impl] = base.ms / row.ms
        self.print_table()
        if self.args.json:
            os.makedirs(os.path.dirname(os.path.abspath(self.args.json)), exist_ok=True)
            with open(self.args.json, "w") as f:
                json.dump({"bench": self.name, "meta": self.meta,
                           "args": {k: v for k, v in vars(self.args).items()},
                           "rows": [asdict(r) for r in self.rows]}, f, indent=1, default=str)
            print(f"wrote {self.args.json}")
        return self.rows

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
    commit = git_commit()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"CPU {platform.processor() or platform.machine()} x{os.cpu_count()}"
    return {"device": str(device), "device_name": name, "torch": torch.__version__,
            "cuda": torch.version.cuda, "threads": torch.get_num_threads(), "commit": commit,
            "python": platform.python_version(), "date": datetime.datetime.now().isoformat(timespec="seconds")}


def try_import_torch_scatter():
    """torch_scatter, or None when it is not installed (the GPU machine has none)."""
    try:
        import torch_scatter
        return torch_scatter
    except ImportError:
        return None
