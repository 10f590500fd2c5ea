"""Static checks that catch what the CPU suite cannot run: a test that runs only on a GPU
(or a code path taken only there) must not fail on a misspelt or removed name."""
import os

import pytest

pyflakes_api = pytest.importorskip("pyflakes.api", reason="pyflakes is not installed "
                                   "(make deps installs it)")
from pyflakes import messages, reporter  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# bench/ frees large tensors with `del` after the closures that use them have run, which
# pyflakes reads as an undefined name; the folders below have no such pattern.
FOLDERS = ("gkd_ext", "tests", "experiments")


class _Collect(reporter.Reporter):
    def __init__(self):
        super().__init__(None, None)
        self.found = []

    def flake(self, message):
        if isinstance(message, (messages.UndefinedName, messages.UndefinedLocal,
                                messages.UndefinedExport)):
            self.found.append(str(message))

    def syntaxError(self, filename, msg, lineno, offset, text):
        self.found.append(f"{filename}:{lineno}: syntax error: {msg}")

    def unexpectedError(self, filename, msg):
        self.found.append(f"{filename}: {msg}")


def test_no_undefined_names():
    rep = _Collect()
    pyflakes_api.checkRecursive([os.path.join(ROOT, f) for f in FOLDERS], rep)
    assert not rep.found, "undefined names:\n" + "\n".join(rep.found)
