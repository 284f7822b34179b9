"""The online half (everything outside sensord/training/) must run on onnxruntime alone."""

import subprocess
import sys
from pathlib import Path

import pytest

CHECK = """
import importlib, pkgutil, sys
import sensord
names = [m.name for m in pkgutil.walk_packages(sensord.__path__, 'sensord.')
         if not m.name.startswith('sensord.training')]
for name in names:
    importlib.import_module(name)
# the online path must run even if training's libraries are installed: prove none was pulled in
# (nor libspot: only the benchmarks' spot baseline uses it, never the product)
bad = sorted(n for n in ('torch', 'onnx', 'tqdm', 'libspot') if n in sys.modules)
print(','.join(names))
print('BAD:' + ','.join(bad))
"""


def test_online_modules_import_neither_torch_nor_onnx() -> None:
    out = subprocess.run(
        [sys.executable, "-c", CHECK], check=True, capture_output=True, text=True
    ).stdout.splitlines()
    names = out[0].split(",")
    assert (
        "sensord.core.pipeline" in names
        and "sensord.offline.replay" in names
        and "sensord.cli.main" in names
    )
    assert out[1] == "BAD:"


BLOCKED = """
import sys

class Blocked:  # importing torch or onnx now fails
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("torch", "onnx"):
            raise ImportError(f"{name} is blocked for this test")

sys.meta_path.insert(0, Blocked())
import pytest
sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", "--setup-only", "tests/core"]))
"""


@pytest.mark.slow
def test_the_core_unit_tests_need_no_torch() -> None:
    """tests/core runs on the numpy engine of tests/fakes.py: with torch and onnx made
    unimportable, its modules import and every fixture it uses sets up (one that trains a
    bundle would fail here). ``--setup-only``: the tests themselves run in the main suite."""
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [sys.executable, "-c", BLOCKED],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    last = result.stdout.splitlines()[-1]
    assert " error" not in last and "no tests ran" in last, last
