"""The online half (everything outside sensord/training/) must run on onnxruntime alone."""

import subprocess
import sys

CHECK = """
import importlib, pkgutil, sys
import sensord
names = [m.name for m in pkgutil.walk_packages(sensord.__path__, 'sensord.')
         if not m.name.startswith('sensord.training')]
for name in names:
    importlib.import_module(name)
# the online path must run even if training's libraries are installed: prove none was pulled in
bad = sorted(n for n in ('torch', 'onnx', 'tqdm') if n in sys.modules)
print(','.join(names))
print('BAD:' + ','.join(bad))
"""


def test_online_modules_import_neither_torch_nor_onnx() -> None:
    out = subprocess.run(
        [sys.executable, "-c", CHECK], check=True, capture_output=True, text=True
    ).stdout.splitlines()
    names = out[0].split(",")
    assert "sensord.pipeline" in names and "sensord.replay" in names and "sensord.cli" in names
    assert out[1] == "BAD:"
