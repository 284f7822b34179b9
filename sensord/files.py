"""Files that are never seen half-written."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from sensord.failpoint import reached

# The steps of write_atomic, in order: where a crash test may kill the process.
WRITE_STEPS = ("created", "written", "synced", "renamed", "dir_synced")


def write_atomic(target: Path, data: bytes, failpoint: str = "") -> None:
    """Replace ``target`` with ``data``: temp file in the same directory, fsync, rename, fsync
    the directory. A reader sees the old file or the new one, never half of one, even if the
    machine stops mid-write. ``failpoint`` names this write's steps for crash tests
    (``<failpoint>.<step>``, see failpoint.py)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            _step(failpoint, "created")
            half = len(data) // 2
            handle.write(data[:half])
            handle.flush()
            _step(failpoint, "written")  # killed here: a half-written temp file is left
            handle.write(data[half:])
            handle.flush()
            os.fsync(handle.fileno())
            _step(failpoint, "synced")
        os.replace(tmp, target)
        _step(failpoint, "renamed")
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    _step(failpoint, "dir_synced")


def _step(failpoint: str, step: str) -> None:
    if failpoint:
        reached(f"{failpoint}.{step}")


def remove_stale_temps(folder: Path, name: str) -> int:
    """Delete temp files a crash left behind from ``write_atomic(folder / name)``."""
    removed = 0
    for stale in folder.glob(f".{name}.*.tmp"):
        stale.unlink(missing_ok=True)
        removed += 1
    return removed
