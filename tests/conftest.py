"""Shared test fixtures: device parametrisation with CUDA cases skipped visibly."""
import os
import shutil
import tempfile

# torch.compile's on-disk caches are keyed without the custom ops' schemas, so artefacts left
# by an earlier build with other schemas can be replayed against this one: compile into a
# fresh directory per test session.
if "TORCHINDUCTOR_CACHE_DIR" not in os.environ:
    _CACHE_DIR = tempfile.mkdtemp(prefix="gkd_inductor_")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = _CACHE_DIR
else:
    _CACHE_DIR = None

import pytest  # noqa: E402
import torch  # noqa: E402

import gkd_ext  # noqa: E402,F401  (loads the ops)
from gkd_ext.functional import has_cuda_kernels  # noqa: E402
# Per-test time limits and a progress record for driven runs (inert unless GKD_TEST_TIMEOUT /
# GKD_TEST_PROGRESS are set): see run_control.py.
from run_control import (pytest_runtest_logfinish, pytest_runtest_logreport,  # noqa: E402,F401
                         pytest_runtest_protocol)


def cuda_ready() -> bool:
    # Checked lazily (never at import of a test module that merely lists devices).
    return torch.cuda.is_available() and has_cuda_kernels()


CUDA_SKIP_REASON = "needs a CUDA device and a CUDA build of gkd_ext (run on the GPU machine)"

DEVICES = [
    "cpu",
    pytest.param("cuda", marks=[pytest.mark.cuda,
                                pytest.mark.skipif("not config._gkd_cuda_ready",
                                                   reason=CUDA_SKIP_REASON)]),
]


def pytest_configure(config):
    config._gkd_cuda_ready = cuda_ready()


def pytest_unconfigure(config):
    if _CACHE_DIR is not None:
        shutil.rmtree(_CACHE_DIR, ignore_errors=True)


@pytest.fixture(params=DEVICES)
def device(request):
    return torch.device(request.param)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def pytest_terminal_summary(terminalreporter):
    # The ops robustness suite's counts by class (tests/test_ops_robustness.py), when it ran.
    import sys
    for name, module in list(sys.modules.items()):
        if name.endswith("test_ops_robustness") and hasattr(module, "summary_lines"):
            lines = module.summary_lines()
            if lines:
                terminalreporter.write_sep("-", "ops robustness: counts by class")
                for line in lines:
                    terminalreporter.write_line(line)
