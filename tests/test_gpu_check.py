"""``make gpu-check DRY_RUN=1`` end to end, so the GPU verification script (bench/gpu_check.py)
cannot rot between the sessions that have a GPU; and the pieces that keep its stages within
their limits: the process-group kill, later stages running after an overrun, per-test limits,
and the restart after a test that hangs in native code."""
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from types import SimpleNamespace

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))

import gpu_check  # noqa: E402

BENCHES = ["bench_spmm", "bench_lsp", "bench_train", "bench_contrastive", "bench_sample"]


def _run(tmp_path, budget=600.0):
    args = SimpleNamespace(out=str(tmp_path / "out"), dry_run=True, build=False, budget=budget,
                           only=[])
    return gpu_check.Run(args)


def test_dry_run_end_to_end(tmp_path):
    out = tmp_path / "out"
    if shutil.which("make"):
        cmd = ["make", "--no-print-directory", "gpu-check", "DRY_RUN=1", f"OUT={out}",
               f"PYTHON={sys.executable}"]
    else:
        cmd = [sys.executable, "bench/gpu_check.py", "--dry-run", "--out", str(out)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("GKD_TEST_")}
    t = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900, env=env)
    wall = time.monotonic() - t
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert "gpu-check PASSED" in proc.stdout

    record = json.loads((out / "gpu_check.json").read_text())
    stages = {s["name"]: s for s in record["stages"]}
    assert list(stages) == ["probe", "build", "verify", "tests"] + BENCHES
    assert record["passed"] and record["mode"] == "dry-run" and record["source_digest"]
    assert record["env"]["torch"] and record["env"]["cuda_available"] in (False, True)
    # The build is skipped, saying why, and nothing was rebuilt.
    assert stages["build"]["status"] == "skipped" and "dry run" in stages["build"]["reason"]
    assert stages["verify"]["status"] == "ok" and stages["verify"]["summary"]["ops"]
    # Every CUDA case is selected and skips visibly on a machine without a GPU.
    tests = stages["tests"]
    assert tests["status"] == "ok", tests["reason"]
    assert set(tests["summary"]["counts"]) == {"skipped"}, tests["summary"]["counts"]
    assert tests["summary"]["counts"]["skipped"] > 200
    assert all("CUDA" in why for why in tests["summary"]["skipped"].values())
    # Each benchmark ran, checked its rows, and left its JSON.
    for name in BENCHES:
        st = stages[name]
        assert st["status"] == "ok", (name, st["reason"], st["summary"].get("problems"))
        assert st["summary"]["rows"] > 0 and st["summary"]["complete"] is True
        rows = json.loads((out / f"{name}.json").read_text())["rows"]
        assert not [r for r in rows if r["status"] == "wrong"]
        checked = [r for r in rows if not r["baseline"] and r["status"] == "ok"]
        assert checked and all(r["max_err"] is not None for r in checked if "unverified" not in r["note"]
                               and "unchecked" not in r["note"]), name
        assert st["seconds"] <= st["limit_s"] + 15
    files = sorted(os.listdir(out))
    assert len(files) <= gpu_check.MAX_FILES, files
    assert files == sorted(["gpu_check.json", "gpu_check.log"] + [f"{b}.json" for b in BENCHES])
    log = (out / "gpu_check.log").read_text()
    assert "=== [4/9] tests" in log and "gpu-check PASSED" in log
    assert wall < 600


def test_overrun_kills_the_process_group_and_later_stages_run(tmp_path):
    run = _run(tmp_path)
    pid_file = tmp_path / "grandchild.pid"
    script = textwrap.dedent(f"""
        import subprocess, time
        p = subprocess.Popen(["sleep", "60"])
        open({str(pid_file)!r}, "w").write(str(p.pid))
        print("started", flush=True)
        time.sleep(60)
    """)

    def slow(st, limit):
        rc, timed_out, _ = run.run_cmd([sys.executable, "-c", script], 2.0)
        st.status = "timeout" if timed_out else "ok"

    def fast(st, limit):
        rc, _, _ = run.run_cmd([sys.executable, "-c", "print('fine')"], limit)
        st.returncode = rc

    t = time.monotonic()
    run.stage("tests", slow)
    run.stage("bench_spmm", fast)
    assert time.monotonic() - t < 30
    record = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    stages = {s["name"]: s for s in record["stages"]}
    assert stages["tests"]["status"] == "timeout"
    assert stages["bench_spmm"]["status"] == "ok" and stages["bench_spmm"]["returncode"] == 0
    grandchild = int(pid_file.read_text())
    time.sleep(0.5)
    with pytest.raises(ProcessLookupError):   # the whole group went, not only the child
        for _ in range(20):
            os.kill(grandchild, 0)
            time.sleep(0.5)
    log = (tmp_path / "out" / "gpu_check.log").read_text()
    assert "time limit of 2 s reached" in log and "fine" in log


def test_stage_limits_fit_the_budget(tmp_path):
    run = _run(tmp_path, budget=300.0)
    names = list(run.limits)
    # Each stage's limit is its own, capped so the stages after it keep their reserves.
    for i, name in enumerate(names):
        reserves = sum(run.limits[n][1] for n in names[i + 1:])
        before = run.elapsed()
        limit = run.limit_for(name)
        assert limit <= run.limits[name][0]
        assert limit <= 300.0 - reserves - before + 1e-6
        run.stages[name].status = "ok"
    fresh = _run(tmp_path, budget=300.0)
    assert fresh.limit_for("probe") == 60 and 160 < fresh.limit_for("build") <= 300.0 - 130


def test_per_test_limits_and_restart_after_a_hang(tmp_path, monkeypatch):
    tests = tmp_path / "cases"
    tests.mkdir()
    (tests / "conftest.py").write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {os.path.join(ROOT, "tests")!r})
        from run_control import (pytest_runtest_logfinish, pytest_runtest_logreport,
                                 pytest_runtest_protocol)
    """))
    (tests / "test_cases.py").write_text(textwrap.dedent("""
        import ctypes, signal, time
        import pytest

        def test_a_passes():
            pass

        def test_b_overruns_in_python():
            while True:
                time.sleep(0.05)

        def test_c_hangs_in_native_code():
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
            ctypes.CDLL(None).sleep(60)

        def test_d_runs_after_the_restart():
            pass

        def test_e_skips():
            pytest.skip("not here")
    """))
    run = _run(tmp_path)
    run.test_args = [str(tests)]
    run.env.update(GKD_TEST_HARD_GRACE="1")
    monkeypatch.setattr(gpu_check, "DRY_TEST_TIMEOUT", 1)
    st = run.stage("tests", run.do_tests)
    results = {k.split("::")[-1]: v["outcome"] for k, v in st.summary["results"].items()}
    assert results == {"test_a_passes": "passed", "test_b_overruns_in_python": "timeout",
                       "test_c_hangs_in_native_code": "crashed",
                       "test_d_runs_after_the_restart": "passed", "test_e_skips": "skipped"}
    assert st.summary["pytest_runs"] == 2
    assert st.status == "failed" and "2 CUDA test(s) did not pass" in st.reason


def test_only_selected_stages_run(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "bench/gpu_check.py", "--dry-run", "--out", str(out),
                           "--only", "verify"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:]
    stages = {s["name"]: s for s in json.loads((out / "gpu_check.json").read_text())["stages"]}
    assert stages["probe"]["status"] == stages["verify"]["status"] == "ok"
    assert all(stages[n]["status"] == "skipped" and "not selected" in stages[n]["reason"]
               for n in ["tests"] + BENCHES)
    bad = subprocess.run([sys.executable, "bench/gpu_check.py", "--only", "nonsense"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "unknown stage" in bad.stderr


def test_gpu_mode_builds_for_this_gpu_and_benches_on_cuda(tmp_path):
    args = SimpleNamespace(out=str(tmp_path / "out"), dry_run=False, build=False, budget=470.0,
                           only=[])
    run = gpu_check.Run(args)
    run.env_info = {"capability": "9.0", "cuda_available": True}
    calls = []

    def fake_run_cmd(cmd, limit, env=None, on_line=None):
        calls.append((cmd, env or run.env))
        return 0, False, 1.0
    run.run_cmd = fake_run_cmd
    st = gpu_check.Stage("build")
    run.do_build(st, 100.0)
    cmd, env = calls[-1]
    assert cmd[1:] == ["setup.py", "build_ext", "--inplace"]
    assert env["FORCE_CUDA"] == "1" and env["TORCH_CUDA_ARCH_LIST"] == "9.0" and "FORCE_CPU" not in env
    assert env["MAX_JOBS"] == str(os.cpu_count())
    for name in BENCHES:
        st = gpu_check.Stage(name)
        run.do_bench(name, st, 100.0)
        cmd = calls[-1][0]
        assert cmd[cmd.index("--device") + 1] == "cuda" and cmd[-len(gpu_check.GPU_BENCH[name]):] \
            == gpu_check.GPU_BENCH[name]
        assert st.status == "failed" and "no rows" in st.reason   # the fake wrote no JSON


def test_bench_arguments_parse():
    # Both argument lists gpu-check passes (GPU sizes and the dry run's) are accepted by the
    # benchmarks' own parsers, so a renamed option cannot wait for a GPU session to fail.
    code = textwrap.dedent(f"""
        import json, sys
        sys.path.insert(0, "bench")
        import importlib
        for name, extra in json.loads(sys.argv[1]).items():
            for device, more in (("cuda", extra[0]), ("cpu", extra[1])):
                mod = importlib.import_module(name)
                mod.make_parser().parse_args(["--device", device, "--json", "x.json"] + more)
        print("parsed")
    """)
    lists = {n: [gpu_check.GPU_BENCH[n], gpu_check.DRY_BENCH[n] + gpu_check.DRY_REPEAT]
             for n in BENCHES}
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(lists)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "parsed" in proc.stdout, proc.stderr[-3000:]


def test_skipped_cuda_case_fails_on_a_gpu(tmp_path):
    tests = tmp_path / "cases"
    tests.mkdir()
    (tests / "conftest.py").write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {os.path.join(ROOT, "tests")!r})
        from run_control import (pytest_runtest_logfinish, pytest_runtest_logreport,
                                 pytest_runtest_protocol)
    """))
    (tests / "test_cases.py").write_text("import pytest\n\ndef test_ok():\n    pass\n\n"
                                         "def test_skips():\n    pytest.skip('no GPU')\n")
    args = SimpleNamespace(out=str(tmp_path / "out"), dry_run=False, build=False, budget=470.0,
                           only=[])
    run = gpu_check.Run(args)
    run.test_args = [str(tests)]
    st = run.stage("tests", run.do_tests)
    assert st.summary["counts"] == {"passed": 1, "skipped": 1}
    assert st.status == "failed" and "skipped on a GPU machine" in st.reason


def test_source_digest_is_stable():
    assert gpu_check.source_digest() == gpu_check.source_digest()
    assert len(gpu_check.source_digest()) == 16
