"""Files that are never seen half-written, and append-only JSON-lines files read back."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import orjson

from sensord.durable.failpoint import reached
from sensord.logs import get_logger

log = get_logger(__name__)

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
    fsync_dir(target.parent)
    _step(failpoint, "dir_synced")


def fsync_dir(folder: Path) -> None:
    """Make a rename or a new entry in ``folder`` survive a power cut."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_json_lines(path: Path) -> list[object]:
    """Every line of an append-only JSON-lines file, parsed, oldest first; a line that is
    not JSON (torn by a crash mid-append) is skipped and logged. No file: none."""
    try:
        lines = path.read_bytes().splitlines()
    except FileNotFoundError:
        return []
    parsed: list[object] = []
    for number, line in enumerate(lines, start=1):
        try:
            parsed.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            log.warning("line skipped: not JSON", file=str(path), line=number)
    return parsed


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
