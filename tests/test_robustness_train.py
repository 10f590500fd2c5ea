"""Robustness of the training layer (issue 11): every numeric option of every registered method
refuses out-of-range, non-finite and non-numeric values at parse time; damaged, foreign and
code-carrying checkpoints are refused with a message naming the file; a run killed mid-seed
and rerun ends exactly as an uninterrupted one, and a finished run rerun returns its record.

Each case is classified (clear error, correct, or anything else: a crash, a hang, a raw
traceback, a silently wrong result); the tests fail on anything else and print the counts."""
import collections
import dataclasses
import json
import os
import pickle
import signal
import subprocess
import sys
import time
import typing

import pytest
import torch

from gkd_ext.train import ModelSpec, OptimConfig, fit, make_method, method_names
from gkd_ext.train.cli import build_parser
from gkd_ext.train.config import _base_type
from gkd_ext.train.method import get_method
from gkd_ext.train.tasks import DataConfig
from test_train import tiny_task

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ------------------------------------------------------------------ CLI values
def bad_values(cls) -> typing.List[typing.Tuple[str, str, str]]:
    """(flag suffix, bad text, what the message must say) for every numeric option of ``cls``
    declared with a range."""
    out = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        meta = f.metadata
        tp = _base_type(hints[f.name])
        if "help" not in meta or tp not in (int, float):
            continue
        name = (meta.get("flag") or f.name).replace("_", "-")
        out.append((name, "abc", "expected"))
        if tp is float:
            out.append((name, "nan", "must be a finite number"))
            out.append((name, "inf", "must be a finite number"))
        if meta.get("min") is not None:
            out.append((name, str(meta["min"] - 1), f"must be >= {meta['min']:g}"))
        if meta.get("above") is not None:
            out.append((name, str(meta["above"]), f"must be > {meta['above']:g}"))
        if meta.get("max") is not None:
            out.append((name, str(meta["max"] + 1), f"must be <= {meta['max']:g}"))
    return out


def cli_cases():
    cases = []
    for method in method_names():
        cls = get_method(method)
        configs = [("", cls.Config), ("", OptimConfig), ("", DataConfig)]
        configs += [(f"{g}-", ModelSpec) for g in cls.models]
        if any(r.value == "teacher" for r in cls.roles.values()):
            configs.append(("teacher-", OptimConfig))
        for prefix, config in configs:
            for name, text, message in bad_values(config):
                cases.append((method, f"--{prefix}{name}", text, message))
    return sorted(set(cases))


def test_every_numeric_option_of_every_method_is_checked_at_parse_time(capsys):
    cases = cli_cases()
    assert len(cases) > 150
    counts, failures = collections.Counter(), []
    for method, flag, text, message in cases:
        parser = build_parser(method)
        try:
            parser.parse_args(["--method", method, flag, text])
            counts["accepted"] += 1
            failures.append(f"{method} {flag} {text}: accepted")
        except SystemExit as exc:
            err = capsys.readouterr().err
            if exc.code == 2 and f"argument {flag}: " in err and message in err:
                counts["clear error"] += 1
            else:
                counts["unclear error"] += 1
                failures.append(f"{method} {flag} {text}: {err.strip().splitlines()[-1]}")
    print(f"\nCLI: {len(cases)} bad values: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    assert not failures, "\n".join(failures[:20])


# ------------------------------------------------------------------ checkpoints
class _Boom:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ.get('GKD_TEST_MARKER', '/tmp/gkd-marker')}",))


def damaged_files(folder, good: bytes):
    """name -> bytes of a checkpoint that must be refused."""
    cases = {
        "empty": b"",
        "truncated": good[: len(good) // 2],
        "garbage": os.urandom(4096),
        "text": b"not a checkpoint\n",
        "code-carrying pickle": pickle.dumps({"settings": _Boom()}),
    }
    for name, obj in {"a list": [1, 2, 3], "a tensor": torch.zeros(3),
                      "a dict without the run's keys": {"settings": {}, "epoch": 1}}.items():
        path = folder / "tmp.pt"
        torch.save(obj, path)
        cases[name] = path.read_bytes()
    return cases


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_damaged_checkpoints_are_refused_naming_the_file(tmp_path, monkeypatch):
    marker = tmp_path / "code-ran"
    monkeypatch.setenv("GKD_TEST_MARKER", str(marker))
    task = tiny_task()
    opt = OptimConfig(epochs=3, patience=10)
    method = lambda: make_method("supervised", student=ModelSpec("gcn", 8))  # noqa: E731
    good_run = tmp_path / "good.pt"
    fit(method(), task, opt, checkpoint=str(good_run), progress=False)
    teacher = tmp_path / "teacher.pt"
    from gkd_ext.train import obtain_teacher
    obtain_teacher(ModelSpec("gcn", 8), task, opt, source=str(teacher), progress=False)
    counts, failures = collections.Counter(), []

    def expect_clear(label, call, path):
        try:
            call()
            counts["accepted"] += 1
            failures.append(f"{label}: accepted")
        except (ValueError, FileNotFoundError) as exc:
            if str(path) in str(exc):
                counts["clear error"] += 1
            else:
                counts["unclear error"] += 1
                failures.append(f"{label}: {exc}")
        except Exception as exc:   # a raw error of another type is not a clear one
            counts["unclear error"] += 1
            failures.append(f"{label}: {type(exc).__name__}: {exc}")

    for kind, good in (("run", good_run), ("teacher", teacher)):
        for name, data in damaged_files(tmp_path, good.read_bytes()).items():
            path = tmp_path / f"{kind}-{name.replace(' ', '-')}.pt"
            path.write_bytes(data)
            if kind == "run":
                call = lambda p=path: fit(method(), task, opt, checkpoint=str(p), progress=False)  # noqa: E731
            else:
                call = lambda p=path: obtain_teacher(ModelSpec("gcn", 8), task, opt, source=str(p),  # noqa: E731
                                                     progress=False)
            expect_clear(f"{kind} checkpoint, {name}", call, path)
    # right settings, wrong weights: another model's tensors under the same keys
    state = torch.load(good_run, weights_only=True)
    state["modules"]["student"] = {k: torch.zeros(1) for k in state["modules"]["student"]}
    tampered = tmp_path / "tampered.pt"
    torch.save(state, tampered)
    expect_clear("run checkpoint, tampered weights",
                 lambda: fit(method(), task, opt, checkpoint=str(tampered), progress=False), tampered)
    t_state = torch.load(teacher, weights_only=True)
    t_state["model"] = {"nonsense": torch.zeros(2)}
    torch.save(t_state, teacher)
    expect_clear("teacher checkpoint, tampered weights",
                 lambda: obtain_teacher(ModelSpec("gcn", 8), task, opt, source=str(teacher),
                                        progress=False), teacher)
    print(f"\ncheckpoints: {sum(counts.values())} damaged files: " +
          ", ".join(f"{k} {v}" for k, v in counts.items()))
    assert not failures, "\n".join(failures)
    assert not marker.exists(), "a checkpoint ran code while loading"


# ------------------------------------------------------------------ kill and resume
TRAIN = [sys.executable, "-m", "gkd_ext", "train", "--method", "gcrd", "--dataset", "cora",
         "--teacher", "gcn", "--teacher-layers", "2", "--teacher-epochs", "8", "--epochs", "25",
         "--patience", "10", "--runs", "2", "--no-progress", "--max-samples", "512"]


def _run(args, env):
    return subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def _results(path):
    res = json.loads(path.read_text())
    return [{n: (s["test"], s["best_epoch"], [h["val"] for h in s.get("history", [])])
             for n, s in r["slots"].items()} for r in res["runs"]]


def test_a_run_killed_mid_seed_and_rerun_equals_an_uninterrupted_one(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    full = tmp_path / "full.json"
    proc = _run(TRAIN + ["--out", str(full)], env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    ckpts, out = tmp_path / "ckpt", tmp_path / "resumed.json"
    args = TRAIN + ["--out", str(out), "--checkpoint-dir", str(ckpts)]
    # Kill it while seed 1 trains: its checkpoint exists, seed 0's is finished.
    p = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)
    seed1 = ckpts / "cora_gcrd_seed1.pt"
    deadline = time.time() + 500
    while not seed1.exists() and p.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    assert not out.exists(), "the run finished before it could be killed"
    proc = _run(args, env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert _results(out) == _results(full)
    # a finished run rerun returns the same record, and other settings are refused
    again = tmp_path / "again.json"
    proc = _run(TRAIN + ["--out", str(again), "--checkpoint-dir", str(ckpts)], env)
    assert proc.returncode == 0 and _results(again) == _results(full)
    proc = _run(TRAIN + ["--out", str(again), "--checkpoint-dir", str(ckpts), "--lr", "0.5"], env)
    assert proc.returncode == 2 and "optim.lr: checkpoint 0.01, this run 0.5" in proc.stderr
