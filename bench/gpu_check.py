#!/usr/bin/env python3
"""The whole GPU verification of gkd_ext in one command (``make gpu-check``), in stages:

  probe              versions, the GPU and its compute capability, nvidia-smi (no build)
  build              ``python setup.py build_ext --inplace`` with FORCE_CUDA=1, for this GPU
                     only (TORCH_CUDA_ARCH_LIST from its compute capability) and MAX_JOBS = the
                     CPU count; no network; prints how long it took
  verify             ``python -m gkd_ext.info``: the build has CUDA kernels and sees the GPU
  tests              every CUDA case of the suite (``pytest -m cuda``): float32/64, and
                     float16/bfloat16 where the ops take them. A per-test limit
                     (tests/run_control.py) fails a test that overruns; a test that hangs in
                     native code ends its process and the rest run in a new one. On a GPU, a
                     CUDA case that skips counts as a failure
  bench_spmm         SpMM on arxiv, reddit, products at D = 64, 128, 256 vs cuSPARSE and PyG
  bench_lsp          LSP fused vs unfused at arxiv size; fused alone at products size
  bench_train        GCN, GAT and GCN + LSP training steps vs the same models in PyG (arxiv size)
  bench_contrastive  InfoNCE and GSP vs dense at n = 16,384; InfoNCE tiled at n = 1,000,000
                     (forward, then forward + backward)

Every benchmark row is checked for correctness before it is timed (bench/common.py). Each stage
runs in its own process group under its own time limit, capped so the whole run stays within
--budget: a stage that overruns is killed and reported, and the later stages still run. What
was written stays: the benchmarks rewrite their JSON after every row, this script rewrites its
own after every stage. Files, under --out (at most 8): gpu_check.json (commit, source digest,
device, versions, every stage with its status, time and limit, the test outcomes and each
benchmark's summary), gpu_check.log (everything printed), bench_<name>.json (the rows).

--dry-run runs the same stages on a CPU machine at tiny sizes: the build is skipped when a
compiled extension is present (--build makes a CPU-only one in place), the CUDA test cases must
all skip, the benchmarks run on the CPU; each skip says why. The suite runs it
(tests/test_gpu_check.py), so this script cannot rot between GPU sessions.

    make gpu-check OUT=/some/dir              # on a GPU machine: python3 bench/gpu_check.py --out DIR
    make gpu-check DRY_RUN=1                  # anywhere
    python3 bench/gpu_check.py --digest       # the source digest, to compare with a run's JSON

Exit status 0 when every stage passed (or was skipped for the reason the mode expects).
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, List, Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_FILES = 8

# name: (nominal limit s, reserve s). A stage's limit is its nominal limit, capped at what the
# budget leaves once the reserves of the stages after it are set aside.
GPU_LIMITS = {"probe": (60, 10), "build": (300, 0), "verify": (60, 10), "tests": (180, 60),
              "bench_spmm": (90, 30), "bench_lsp": (60, 20), "bench_train": (60, 20),
              "bench_contrastive": (150, 30), "bench_sample": (45, 10)}
DRY_LIMITS = {"probe": (60, 10), "build": (900, 0), "verify": (60, 10), "tests": (120, 30),
              "bench_spmm": (90, 20), "bench_lsp": (90, 20), "bench_train": (90, 20),
              "bench_contrastive": (90, 20), "bench_sample": (60, 10)}
GPU_TEST_TIMEOUT, DRY_TEST_TIMEOUT = 60, 30
MAX_TEST_RESTARTS = 3

# The benchmark commands: GPU sizes (PERF.md), and tiny CPU sizes for the dry run.
GPU_BENCH = {
    "bench_spmm": ["--workloads", "arxiv", "reddit", "products", "--dims", "64", "128", "256"],
    "bench_lsp": ["--workloads", "arxiv", "products", "--fused-only", "products", "--dims", "128"],
    "bench_train": ["--preset", "arxiv"],
    "bench_contrastive": ["--n", "16384", "--dim", "256", "--big-n", "1000000", "--big-dim", "128",
                          "--big-losses", "infonce", "--big-fwd"],
    "bench_sample": ["--workloads", "arxiv", "products"],
}
DRY_BENCH = {
    "bench_spmm": ["--workloads", "arxiv", "--scale", "0.002", "--dims", "16", "--copy-mb", "8"],
    "bench_lsp": ["--workloads", "arxiv", "products", "--fused-only", "products", "--scale",
                  "0.0005", "--dims", "16", "--check-nodes", "200", "--copy-mb", "8"],
    "bench_train": ["--preset", "tiny"],
    "bench_contrastive": ["--n", "256", "--dim", "32", "--big-n", "2048", "--big-dim", "16",
                          "--big-losses", "infonce", "--big-fwd", "--check-rows", "64"],
    "bench_sample": ["--workloads", "arxiv", "--scale", "0.002", "--copy-mb", "8"],
}
DRY_REPEAT = ["--repeat", "1", "--warmup", "0"]

DIGEST_PARTS = [("csrc", (".cpp", ".h", ".cu", ".cuh")), ("gkd_ext", (".py",)),
                ("bench", (".py",)), ("tests", (".py",)), (".ci", ("",))]
DIGEST_FILES = ["setup.py", "CMakeLists.txt", "pyproject.toml", "Makefile"]


# ------------------------------------------------------------------ provenance
def source_digest(root: str = ROOT) -> str:
    """sha256 over the sources that decide what runs (paths and contents), the same with or
    without git metadata: compare a run's digest with ``--digest`` in a checkout."""
    h = hashlib.sha256()
    files = [os.path.join(root, f) for f in DIGEST_FILES]
    for folder, exts in DIGEST_PARTS:
        for base, dirs, names in os.walk(os.path.join(root, folder)):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            files += [os.path.join(base, n) for n in names if n.endswith(exts)]
    for path in sorted(files):
        if os.path.isfile(path):
            h.update(os.path.relpath(path, root).encode() + b"\0")
            with open(path, "rb") as f:
                h.update(f.read())
            h.update(b"\0")
    return h.hexdigest()[:16]


def git_commit() -> Dict[str, Optional[str]]:
    """The checkout's commit (``+dirty`` when tracked files differ), else GKD_COMMIT, else
    'unknown': the copy on a device machine may carry no git metadata."""
    def git(*args):
        return subprocess.run(["git", "-C", ROOT, *args], capture_output=True, text=True,
                              timeout=20).stdout.strip()
    try:
        commit = git("rev-parse", "HEAD")
        if commit:
            dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
            return {"commit": commit + ("+dirty" if dirty else ""), "commit_source": "git"}
    except (OSError, subprocess.SubprocessError):
        pass
    if os.environ.get("GKD_COMMIT"):
        return {"commit": os.environ["GKD_COMMIT"], "commit_source": "GKD_COMMIT"}
    return {"commit": "unknown", "commit_source": None}


# ------------------------------------------------------------------ probe (child process)
def probe() -> dict:
    """Versions and the GPU, printed as one JSON line by ``--probe`` (run as a child process,
    so a CUDA initialisation that hangs is ended by the stage limit)."""
    info = {"python": platform.python_version(), "executable": sys.executable,
            "platform": platform.platform(), "cpu_count": os.cpu_count()}
    import torch
    info.update(torch=torch.__version__, torch_cuda=torch.version.cuda,
                cuda_available=torch.cuda.is_available())
    if info["cuda_available"]:
        props = torch.cuda.get_device_properties(0)
        info.update(device_count=torch.cuda.device_count(), device_name=props.name,
                    capability=f"{props.major}.{props.minor}",
                    gpu_memory_gib=round(props.total_memory / 2**30, 1),
                    multiprocessors=props.multi_processor_count)
    from importlib import metadata
    for dist in ("torch-geometric", "torch-scatter", "triton", "numpy", "scipy", "pytest",
                 "pytest-timeout"):
        try:
            info[dist.replace("-", "_")] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            info[dist.replace("-", "_")] = None
    from torch.utils.cpp_extension import CUDA_HOME
    info["cuda_home"] = CUDA_HOME or find_cuda_home()
    info["cuda_home_from"] = "torch" if CUDA_HOME else ("search" if info["cuda_home"] else None)
    for key, cmd in (("nvcc", [os.path.join(info["cuda_home"] or "", "bin", "nvcc"), "--version"]),
                     ("nvidia_smi", ["nvidia-smi", "--query-gpu=name,driver_version,memory.total,"
                                     "compute_cap,clocks.max.sm", "--format=csv,noheader"])):
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
            info[key] = out.splitlines()[-1] if key == "nvcc" and out else out or None
        except (OSError, subprocess.SubprocessError):
            info[key] = None
    return info


def find_cuda_home() -> Optional[str]:
    """A CUDA toolkit torch did not find (no CUDA_HOME, no nvcc on PATH): the usual places."""
    import glob
    for base in ["/usr/local/cuda"] + sorted(glob.glob("/usr/local/cuda-*"), reverse=True) + \
            ["/opt/cuda", "/usr"]:
        if os.path.isfile(os.path.join(base, "bin", "nvcc")):
            return base
    return None


# ------------------------------------------------------------------ running stages
class Log:
    """Everything printed goes to stdout (flushed at once) and to the log file."""

    def __init__(self, path: Optional[str]):
        self.file = open(path, "a", buffering=1, encoding="utf-8", errors="replace") if path else None
        self.lock = threading.Lock()

    def __call__(self, text: str = "") -> None:
        with self.lock:
            sys.stdout.write(text + "\n")
            sys.stdout.flush()
            if self.file:
                self.file.write(text + "\n")


@dataclass
class Stage:
    name: str
    status: str = "pending"          # ok | failed | timeout | skipped
    seconds: float = 0.0
    cpu_s: float = 0.0               # CPU time of the stage's processes (user + system)
    limit_s: Optional[float] = None
    returncode: Optional[int] = None
    reason: str = ""
    summary: dict = field(default_factory=dict)


class Run:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.dry = args.dry_run
        self.out = os.path.abspath(args.out)
        os.makedirs(self.out, exist_ok=True)
        for name in ("gpu_check.json", "gpu_check.log"):
            if os.path.exists(os.path.join(self.out, name)):
                os.remove(os.path.join(self.out, name))
        self.log = Log(os.path.join(self.out, "gpu_check.log"))
        self.t0 = time.monotonic()
        self.limits = DRY_LIMITS if self.dry else GPU_LIMITS
        self.order = list(self.limits)
        self.stages: Dict[str, Stage] = {n: Stage(n) for n in self.order}
        self.env_info: dict = {}
        self.child: Optional[subprocess.Popen] = None
        # What the tests stage runs (tests/test_gpu_check.py points it at its own test files).
        self.test_args = ["-m", "cuda", "tests"]
        self.record = {"schema": 1, "mode": "dry-run" if self.dry else "gpu",
                       "started": datetime.datetime.now().isoformat(timespec="seconds"),
                       "budget_s": args.budget, **git_commit(), "source_digest": source_digest()}
        commit = self.record["commit"]
        short = "" if commit == "unknown" else commit[:12] + ("+dirty" if "+dirty" in commit else "")
        # Children (the benchmarks' metadata) record the same commit, git metadata or not.
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("GKD_TEST_")}
        self.env.update(PYTHONUNBUFFERED="1", GKD_COMMIT=short)
        # Tools installed beside this Python (ninja, pytest) are found even when its folder is
        # not on PATH.
        self.env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + self.env.get("PATH", "")

    # -------------------------------------------------------------- budget
    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def limit_for(self, name: str) -> float:
        nominal, _ = self.limits[name]
        later = self.order[self.order.index(name) + 1:]
        reserve = sum(self.limits[n][1] for n in later if self.stages[n].status == "pending")
        return max(0.0, min(nominal, self.args.budget - self.elapsed() - reserve))

    # -------------------------------------------------------------- processes
    def run_cmd(self, cmd: List[str], limit: float, env: Optional[dict] = None,
                on_line: Optional[Callable[[str], None]] = None):
        """cmd in its own process group, its output streamed to the log; killed (the whole
        group) at ``limit`` seconds. Returns (returncode, timed_out, seconds)."""
        t = time.monotonic()
        self.log("$ " + " ".join(cmd))
        # A process group of its own (not a session: whoever runs gpu-check can still end it
        # all), so the limit ends the stage's grandchildren too (nvcc, compile workers).
        group = {"process_group": 0} if sys.version_info >= (3, 11) else {"preexec_fn": os.setpgrp}
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env or self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
                                errors="replace", bufsize=1, **group)
        self.child = proc

        def pump():   # must never stop reading, or a full pipe would block the stage
            for line in proc.stdout:
                line = line.rstrip("\n")
                try:
                    self.log(line)
                    if on_line:
                        on_line(line)
                except Exception as exc:  # noqa: BLE001
                    sys.stderr.write(f"gpu_check: output line not handled: {exc}\n")
        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        timed_out = False
        try:
            proc.wait(timeout=max(limit, 0.1))
            try:   # stragglers the stage left behind must not hold the GPU for the next one
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        except subprocess.TimeoutExpired:
            timed_out = True
            self.log(f"!! time limit of {limit:.0f} s reached: stopping the process group")
            self.kill(proc)
        reader.join(timeout=10)
        self.child = None
        return proc.returncode, timed_out, time.monotonic() - t

    @staticmethod
    def kill(proc: subprocess.Popen) -> None:
        for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 10)):
            try:
                os.killpg(proc.pid, sig)
            except (ProcessLookupError, PermissionError):
                return
            try:
                proc.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                continue

    # -------------------------------------------------------------- bookkeeping
    def write_record(self) -> None:
        self.record.update(wall_s=round(self.elapsed(), 1), env=self.env_info,
                           stages=[asdict(self.stages[n]) for n in self.order])
        path = os.path.join(self.out, "gpu_check.json")
        with open(path + ".tmp", "w") as f:
            json.dump(self.record, f, indent=1, default=str)
        os.replace(path + ".tmp", path)

    def stage(self, name: str, body: Callable[[Stage, float], None],
              skip: Optional[str] = None) -> Stage:
        st = self.stages[name]
        i = self.order.index(name) + 1
        if skip is None and self.args.only and name not in self.args.only:
            skip = f"not selected (--only {','.join(self.args.only)})"
            st.summary["deselected"] = True
        if skip is None:
            limit = self.limit_for(name)
            if limit < 5:
                skip = f"no time left in the {self.args.budget:.0f} s budget"
        if skip is not None:
            st.status, st.reason = "skipped", skip
            self.log(f"\n=== [{i}/{len(self.order)}] {name}: SKIPPED ({skip})")
            self.write_record()
            return st
        st.limit_s = round(limit, 1)
        self.log(f"\n=== [{i}/{len(self.order)}] {name} (limit {limit:.0f} s, "
                 f"{self.elapsed():.0f} s elapsed) ===")
        t, cpu = time.monotonic(), _children_cpu()
        try:
            body(st, limit)
        except Exception as exc:  # noqa: BLE001  (a broken stage is reported; the rest run)
            st.status, st.reason = "failed", f"{type(exc).__name__}: {exc}"
        st.seconds = round(time.monotonic() - t, 1)
        st.cpu_s = round(_children_cpu() - cpu, 1)
        if st.status == "pending":
            st.status = "ok"
        self.log(f"--- {name}: {st.status.upper()} in {st.seconds:.1f} s"
                 + (f" ({st.reason})" if st.reason else ""))
        self.write_record()
        return st

    # -------------------------------------------------------------- the stages
    def do_probe(self, st: Stage, limit: float) -> None:
        found = {}

        def grab(line):
            if line.startswith("GKD_PROBE "):
                found.update(json.loads(line[len("GKD_PROBE "):]))
        rc, timed_out, _ = self.run_cmd([sys.executable, os.path.abspath(__file__), "--probe"],
                                        limit, on_line=grab)
        st.returncode = rc
        self.env_info = found
        if timed_out:
            st.status, st.reason = "timeout", "the probe did not finish"
        elif rc != 0 or not found:
            st.status, st.reason = "failed", f"exit status {rc}"
        elif not self.dry and not found.get("cuda_available"):
            st.status = "failed"
            st.reason = ("no CUDA device visible to torch "
                         f"{found.get('torch')} (CUDA {found.get('torch_cuda')}); "
                         "run with DRY_RUN=1 / --dry-run on a machine without a GPU")
        st.summary = {k: found.get(k) for k in ("device_name", "capability", "torch", "torch_cuda",
                                                "python", "cpu_count", "torch_geometric")}

    def extension_path(self) -> Optional[str]:
        folder = os.path.join(ROOT, "gkd_ext")
        built = sorted(n for n in os.listdir(folder) if n.startswith("_C.") and n.endswith(".so"))
        return os.path.join(folder, built[0]) if built else None

    def do_build(self, st: Stage, limit: float) -> None:
        jobs = str(os.cpu_count() or 1)
        env = dict(self.env, MAX_JOBS=jobs)
        if self.dry:
            env.update(FORCE_CPU="1")
            env.pop("FORCE_CUDA", None)
            arch = "-"
        else:
            arch = self.env_info["capability"]
            env.update(FORCE_CUDA="1", TORCH_CUDA_ARCH_LIST=arch)
            env.pop("FORCE_CPU", None)
            if self.env_info.get("cuda_home_from") == "search" and not env.get("CUDA_HOME"):
                env["CUDA_HOME"] = self.env_info["cuda_home"]   # torch's own search missed it
        self.log(f"building in place: {'CPU only' if self.dry else 'CUDA for sm_' + arch.replace('.', '')}"
                 f", MAX_JOBS={jobs}")
        rc, timed_out, secs = self.run_cmd([sys.executable, "setup.py", "build_ext", "--inplace"],
                                           limit, env=env)
        st.returncode = rc
        st.summary = {"seconds": round(secs, 1), "arch_list": arch, "max_jobs": int(jobs),
                      "cuda": not self.dry, "extension": self.extension_path()}
        self.log(f"build took {secs:.1f} s (TORCH_CUDA_ARCH_LIST={arch}, MAX_JOBS={jobs})")
        if timed_out:
            st.status = "timeout"
            st.reason = "the build overran; rerunning resumes it (ninja keeps what was compiled)"
        elif rc != 0:
            st.status, st.reason = "failed", f"setup.py exit status {rc}"

    def do_verify(self, st: Stage, limit: float) -> None:
        lines: List[str] = []
        rc, timed_out, _ = self.run_cmd([sys.executable, "-m", "gkd_ext.info"], limit,
                                        on_line=lines.append)
        st.returncode = rc
        text = "\n".join(lines)
        kernels = "CUDA kernels built: yes" in text
        visible = "CUDA device visible: True" in text
        st.summary = {"cuda_kernels": kernels, "cuda_visible": visible,
                      "ops": [ln.split()[0] for ln in lines if ln.strip().startswith("gkd::")]}
        if timed_out:
            st.status, st.reason = "timeout", "gkd_ext.info did not finish"
        elif rc != 0:
            st.status, st.reason = "failed", "gkd_ext does not import (see the log)"
        elif not self.dry and not (kernels and visible):
            st.status = "failed"
            st.reason = ("the extension has no CUDA kernels" if not kernels
                         else "torch sees no CUDA device")

    def do_tests(self, st: Stage, limit: float) -> None:
        per_test = DRY_TEST_TIMEOUT if self.dry else GPU_TEST_TIMEOUT
        deadline = time.monotonic() + limit
        results: Dict[str, dict] = {}
        tmp = tempfile.mkdtemp(prefix="gkd_gpu_check_")
        attempt, rc, timed_out = 0, None, False
        while True:
            attempt += 1
            progress = os.path.join(tmp, f"progress{attempt}.jsonl")
            env = dict(self.env, GKD_TEST_TIMEOUT=str(per_test), GKD_TEST_PROGRESS=progress)
            cmd = [sys.executable, "-m", "pytest", "-v", "-rfEs", "--tb=short", "-p",
                   "no:cacheprovider"] + self.test_args + [f"--deselect={n}" for n in results]
            rc, timed_out, _ = self.run_cmd(cmd, deadline - time.monotonic(), env=env)
            running = None
            if os.path.exists(progress):
                with open(progress) as f:
                    for line in f:
                        try:
                            e = json.loads(line)
                        except ValueError:
                            continue
                        if e["event"] == "start":
                            running = e["nodeid"]
                        else:
                            results[e["nodeid"]] = {k: e[k] for k in ("outcome", "seconds", "reason")}
                            running = None
            stacks = progress + ".stacks"
            if os.path.exists(stacks) and os.path.getsize(stacks):
                with open(stacks) as f:
                    self.log("stacks written when the process was ended:\n" + f.read()[-8000:])
            if running is None or timed_out:
                if running is not None:
                    results[running] = {"outcome": "timeout", "seconds": None,
                                        "reason": "still running when the stage limit was reached"}
                break
            # The process died inside a test (hung past the hard limit, or crashed): record it
            # and run the tests not yet run in a new process.
            why = (f"the process ended inside this test (exit status {rc}): hung past "
                   f"{per_test} s + grace, or crashed")
            results[running] = {"outcome": "crashed", "seconds": None, "reason": why}
            self.log(f"!! {running}: {why}")
            if attempt > MAX_TEST_RESTARTS or deadline - time.monotonic() < 10:
                break
            self.log(f"!! restarting pytest without the {len(results)} tests already run")
        shutil.rmtree(tmp, ignore_errors=True)
        st.returncode = rc
        counts: Dict[str, int] = {}
        for r in results.values():
            counts[r["outcome"]] = counts.get(r["outcome"], 0) + 1
        bad = {n: r for n, r in results.items() if r["outcome"] in ("failed", "error", "timeout", "crashed")}
        skipped = {n: r["reason"] for n, r in results.items() if r["outcome"] == "skipped"}
        st.summary = {"counts": counts, "per_test_timeout_s": per_test, "pytest_runs": attempt,
                      "problems": bad, "skipped": skipped,
                      "slowest": sorted(((r["seconds"] or 0, n) for n, r in results.items()),
                                        reverse=True)[:10],
                      "results": results}
        self.log(f"tests: {counts}")
        if timed_out:
            st.status = "timeout"
            st.reason = f"stage limit reached after {len(results)} tests"
        elif not results:
            st.status, st.reason = "failed", f"no test ran (pytest exit status {rc})"
        elif bad:
            st.status, st.reason = "failed", f"{len(bad)} CUDA test(s) did not pass"
        elif rc != 0:
            st.status, st.reason = "failed", f"pytest exit status {rc}"
        elif self.dry:
            passed = counts.get("passed", 0)
            st.reason = (f"{counts.get('skipped', 0)} CUDA cases skipped: no GPU here"
                         + (f"; {passed} ran on the CPU" if passed else ""))
        elif skipped:
            st.status = "failed"
            st.reason = f"{len(skipped)} CUDA case(s) skipped on a GPU machine (they must run)"
        else:
            st.reason = f"{counts.get('passed', 0)} CUDA cases passed"

    def do_bench(self, name: str, st: Stage, limit: float) -> None:
        path = os.path.join(self.out, f"{name}.json")
        if os.path.exists(path):
            os.remove(path)
        extra = (DRY_BENCH[name] + DRY_REPEAT) if self.dry else GPU_BENCH[name]
        cmd = [sys.executable, os.path.join("bench", f"{name}.py"),
               "--device", "cpu" if self.dry else "cuda", "--json", path] + extra
        rc, timed_out, _ = self.run_cmd(cmd, limit)
        st.returncode = rc
        st.summary = summarize_bench(path)
        problems = st.summary.get("problems", [])
        if timed_out:
            st.status = "timeout"
            st.reason = (f"stopped after {st.summary.get('rows', 0)} rows; the rows so far are "
                         f"in {name}.json")
        elif rc != 0:
            st.status, st.reason = "failed", f"exit status {rc}"
        elif not st.summary.get("rows"):
            st.status, st.reason = "failed", f"no rows in {name}.json"
        elif problems:
            st.status, st.reason = "failed", f"{len(problems)} row(s) wrong or not measured"

    # -------------------------------------------------------------- all of it
    def main(self) -> int:
        mode = "DRY RUN on the CPU, tiny sizes" if self.dry else "GPU"
        self.log(f"gkd_ext gpu-check ({mode}) | commit {self.record['commit']} | source digest "
                 f"{self.record['source_digest']} | budget {self.args.budget:.0f} s | out {self.out}")
        self.write_record()
        self.stage("probe", self.do_probe)
        env_ok = self.stages["probe"].status == "ok"
        no_env = "the probe failed: " + (self.stages["probe"].reason or "see the log")

        if not env_ok:
            build_skip = no_env
        elif self.dry and not self.args.build:
            ext = self.extension_path()
            build_skip = (f"dry run: no CUDA build here; using the existing build "
                          f"{os.path.relpath(ext, ROOT)} (--build rebuilds it CPU-only)" if ext
                          else "dry run: no compiled extension and --build not given")
        else:
            build_skip = None
        self.stage("build", self.do_build, skip=build_skip)
        if self.stages["build"].status in ("failed", "timeout"):
            self.log("!! the build did not complete: later stages use whatever extension is present")
        have_ext = self.extension_path() is not None
        self.stage("verify", self.do_verify,
                   skip=None if env_ok and have_ext else (no_env if not env_ok else
                                                          "no compiled extension (gkd_ext/_C*.so)"))
        usable = self.stages["verify"].status == "ok"
        later_skip = None if usable else \
            f"the verify stage did not pass ({self.stages['verify'].reason or 'see the log'})"
        self.stage("tests", self.do_tests, skip=later_skip)
        for name in ("bench_spmm", "bench_lsp", "bench_train", "bench_contrastive", "bench_sample"):
            self.stage(name, lambda st, lim, name=name: self.do_bench(name, st, lim), skip=later_skip)
        return self.finish()

    def finish(self) -> int:
        # Passed: every stage ok or left out by --only; in a dry run the build may have been
        # skipped (no CUDA here).
        self.record["passed"] = all(
            s.status == "ok" or s.summary.get("deselected")
            or (s.status == "skipped" and s.name == "build" and self.dry)
            for s in self.stages.values())
        self.write_record()
        files = sorted(os.listdir(self.out))
        self.log(f"\n== gpu-check summary ({self.record['mode']}; commit {self.record['commit']}; "
                 f"{self.env_info.get('device_name') or 'no GPU'}; torch {self.env_info.get('torch')}, "
                 f"CUDA {self.env_info.get('torch_cuda')}) ==")
        self.log(f"{'stage':<18} {'status':<8} {'time':>8} {'CPU':>7} {'limit':>7}  note")
        for n in self.order:
            s = self.stages[n]
            lim = f"{s.limit_s:.0f} s" if s.limit_s is not None else "-"
            self.log(f"{n:<18} {s.status.upper():<8} {s.seconds:7.1f}s {s.cpu_s:6.1f}s {lim:>7}  "
                     f"{s.reason}")
            for line in s.summary.get("headline", []):
                self.log(f"{'':<18} {line}")
        self.log(f"wall time {self.elapsed():.1f} s; {len(files)} file(s) in {self.out}: "
                 f"{', '.join(files)}" + ("" if len(files) <= MAX_FILES else
                                          f"  (more than {MAX_FILES}: not all will come back)"))
        self.log("gpu-check " + ("PASSED" if self.record["passed"] else "FAILED"))
        return 0 if self.record["passed"] else 1

    def terminate(self, signum, frame) -> None:
        """Stopped from outside (the caller's own time limit): end the running stage, keep
        what was written, record how far it got."""
        self.log(f"!! signal {signum}: stopping")
        if self.child is not None:
            self.kill(self.child)
        for s in self.stages.values():
            if s.status == "pending":
                s.status, s.reason = "skipped", f"gpu-check was stopped by signal {signum}"
        self.record["passed"] = False
        self.write_record()
        sys.exit(128 + signum)


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def summarize_bench(path: str) -> dict:
    """Counts of row statuses, the rows that are wrong or failed (a baseline that runs out of
    memory or errors is reported, not a problem), and one headline per gkd_ext row."""
    if not os.path.exists(path):
        return {"rows": 0, "json": None}
    with open(path) as f:
        data = json.load(f)
    rows = data.get("rows", [])
    counts: Dict[str, int] = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    problems = [f"{r['case']} | {r['impl']}: {r['status']} {r['note']}".strip() for r in rows
                if r["status"] == "wrong" or (not r["baseline"] and r["status"] in ("error", "oom"))]
    headline = []
    for r in rows:
        if r["baseline"] or r["status"] != "ok":
            continue
        extra = [f"{v:.2f}x vs {k}" for k, v in (r.get("speedup") or {}).items()]
        if r.get("gbps"):
            extra.append("GB/s " + "/".join(f"{v:.0f}" for v in r["gbps"].values()))
        if r.get("tflops"):
            extra.append(f"{r['tflops']:.1f} TFLOP/s")
        headline.append(f"{r['case']} | {r['impl']}: {r['ms']:.2f} ms; " + "; ".join(extra))
    return {"json": os.path.basename(path), "complete": data.get("complete"), "rows": len(rows),
            "counts": counts, "problems": problems, "headline": headline,
            "meta": {k: v for k, v in data.get("meta", {}).items()
                     if k in ("copy_gbs", "kd_step_over_plain_step", "torch_geometric")}}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n".join(__doc__.split("\n")[1:]))
    p.add_argument("--out", default=os.path.join(ROOT, "build", "gpu-check"),
                   help="folder for the result files (default: build/gpu-check)")
    p.add_argument("--dry-run", action="store_true",
                   help="CPU machine, tiny sizes; CUDA-only parts skipped, saying why")
    p.add_argument("--build", action="store_true",
                   help="with --dry-run: rebuild the extension CPU-only in place")
    p.add_argument("--budget", type=float, default=None,
                   help="seconds for the whole run (default: 470 on a GPU, 600 for a dry run)")
    p.add_argument("--only", default="", help="comma-separated stages to run (the others are "
                   "skipped, saying so; probe and verify always run), e.g. tests,bench_spmm to "
                   "repeat them on a machine that has the build")
    p.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--digest", action="store_true", help="print the source digest and exit")
    args = p.parse_args()
    if args.probe:
        print("GKD_PROBE " + json.dumps(probe()), flush=True)
        return 0
    if args.digest:
        print(source_digest())
        return 0
    if args.budget is None:
        args.budget = 600.0 if args.dry_run else 470.0
    stages = list(DRY_LIMITS)
    args.only = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in args.only if n not in stages]
    if unknown:
        p.error(f"--only: unknown stage(s) {unknown}; stages: {', '.join(stages)}")
    for always in ("verify", "probe"):   # the later stages need both
        if args.only and always not in args.only:
            args.only.insert(0, always)
    for stream in (sys.stdout, sys.stderr):   # never fail on a character the terminal lacks
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="replace", line_buffering=True)
    run = Run(args)
    signal.signal(signal.SIGTERM, run.terminate)
    signal.signal(signal.SIGINT, run.terminate)
    return run.main()


if __name__ == "__main__":
    sys.exit(main())
