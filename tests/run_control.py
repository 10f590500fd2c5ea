"""Per-test time limits and a progress record, for pytest runs driven by a script
(``bench/gpu_check.py``); loaded by ``conftest.py``, inert unless its variables are set.

``GKD_TEST_TIMEOUT=S``: each test (setup, call and teardown together) gets S seconds. A test
still running Python code at S fails with :class:`TestTimeout` (SIGALRM); a test stuck in
native code (a kernel that never returns) is ended at S + G by faulthandler (G =
``GKD_TEST_HARD_GRACE``, 30 s unless set), which writes
every thread's stack to ``$GKD_TEST_PROGRESS.stacks`` (or stderr) and exits the process, so
the driver records that test and runs the rest in a new process. pytest-timeout is not needed.

``GKD_TEST_PROGRESS=PATH``: appends one JSON line when a test starts and one when it ends
(outcome, seconds, the skip or failure reason), flushed at once, so a driver knows what ran
even when the process dies.
"""
from __future__ import annotations

import faulthandler
import json
import os
import signal
import time

import pytest

class TestTimeout(Exception):
    """A test overran GKD_TEST_TIMEOUT."""

    __test__ = False   # not a test class, whatever pytest's name patterns say


def _seconds(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


def _timeout() -> float:
    return _seconds("GKD_TEST_TIMEOUT", 0.0)


_state = {"outcome": {}, "seconds": {}, "reason": {}, "stacks": None}


def _record(entry: dict) -> None:
    path = os.environ.get("GKD_TEST_PROGRESS")
    if not path:
        return
    with open(path, "a") as f:
        f.write(json.dumps(entry) + "\n")
        f.flush()


def _on_alarm(signum, frame):
    raise TestTimeout(f"the test overran its limit of {_timeout():g} s (GKD_TEST_TIMEOUT)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    limit = _timeout()
    _record({"event": "start", "nodeid": item.nodeid, "time": time.time()})
    armed = limit > 0 and hasattr(signal, "setitimer")
    if armed:
        previous = signal.signal(signal.SIGALRM, _on_alarm)
        signal.setitimer(signal.ITIMER_REAL, limit)
        path = os.environ.get("GKD_TEST_PROGRESS")
        if path and _state["stacks"] is None:
            _state["stacks"] = open(path + ".stacks", "a")
        faulthandler.dump_traceback_later(limit + _seconds("GKD_TEST_HARD_GRACE", 30.0), exit=True,
                                          file=_state["stacks"] or 2)
    try:
        yield
    finally:
        if armed:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
            faulthandler.cancel_dump_traceback_later()


def pytest_runtest_logreport(report):
    nid = report.nodeid
    seconds = _state["seconds"]
    seconds[nid] = seconds.get(nid, 0.0) + float(getattr(report, "duration", 0.0) or 0.0)
    outcome = _state["outcome"].get(nid, "passed")
    if report.failed:
        new = "error" if report.when != "call" else "failed"
        if outcome not in ("failed", "error"):
            outcome = new
            _state["reason"][nid] = _short(report)
    elif report.skipped and outcome == "passed":
        outcome = "skipped"
        _state["reason"][nid] = _short(report)
    _state["outcome"][nid] = outcome


def pytest_runtest_logfinish(nodeid, location):
    outcome = _state["outcome"].pop(nodeid, "passed")
    reason = _state["reason"].pop(nodeid, "")
    if outcome in ("failed", "error") and "TestTimeout" in reason:
        outcome = "timeout"
    _record({"event": "end", "nodeid": nodeid, "outcome": outcome,
             "seconds": round(_state["seconds"].pop(nodeid, 0.0), 3), "reason": reason})


def _short(report) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:   # a skip: (file, line, reason)
        return str(longrepr[2])[:500]
    text = getattr(report, "longreprtext", "") or str(longrepr or "")
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    # The exception line (pytest starts it with "E ") says most; keep the last few lines.
    errors = [ln for ln in lines if ln.startswith("E ")]
    return "\n".join((errors or lines)[-6:])[:1000]
