"""Snapshots of state tables: written atomically, versioned, checksummed, checked on load.

A snapshot is a numpy ``.npz`` archive (no pickle: ``allow_pickle=False`` both ways) with
one array per state column (LSTM h and c, pending prediction, scaling, detector statistics,
alert state, last timestamp), the stream ids by slot, and a JSON header: format version, the
bundle's shapes and graph hash, the column layout, and a SHA-256 over the ids and every
column. Loading checks all of them; a file that is corrupt or does not fit is set aside
(renamed ``*.rejected``) with a warning, never loaded half, and its streams start afresh.

``Snapshots`` keeps one file per route in the state directory and says when one is due
(every ``interval_s``; store.py also snapshots when the journal grows large, and at stop).
Writes go through ``write_atomic`` (temp file, fsync, rename, fsync of the directory).
"""

from __future__ import annotations

import hashlib
import io
import json
import time
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from sensord.core.pipeline import Pipeline
from sensord.core.state import Slots, StateTable
from sensord.durable.files import remove_stale_temps, write_atomic
from sensord.errors import SnapshotError
from sensord.figures import counter
from sensord.logs import get_logger

log = get_logger(__name__)
SNAPSHOT_VERSION = 2  # 2 added the checksum; version 1 files are still read
READABLE_VERSIONS = (1, 2)


def header_of(pipeline: Pipeline) -> dict[str, Any]:
    """What a snapshot must match to be loaded into this pipeline."""
    table = pipeline.table
    return {
        "version": SNAPSHOT_VERSION,
        "features": pipeline.engine.features,
        "layers": pipeline.engine.layers,
        "hidden": pipeline.engine.hidden,
        "detector": pipeline.detector.kind,
        "columns": {
            name: [str(np.dtype(spec.dtype)), list(spec.shape)]
            for name, spec in table.specs.items()
        },
        "graph_sha256": pipeline.bundle.manifest.graph.sha256,
    }


def checksum(streams: npt.NDArray[Any], columns: Mapping[str, npt.NDArray[Any]]) -> str:
    digest = hashlib.sha256(np.ascontiguousarray(streams).tobytes())
    for name in sorted(columns):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(columns[name]).tobytes())
    return digest.hexdigest()


def encode(pipeline: Pipeline) -> bytes:
    """The pipeline's state table as snapshot bytes."""
    table = pipeline.table
    streams = np.array([s or "" for s in table.stream_of], dtype=np.str_)
    return _encode(pipeline, streams, table.columns, {})


def encode_rows(pipeline: Pipeline, slots: Slots, extra: Mapping[str, Any]) -> bytes:
    """Some streams' rows of the pipeline's table as snapshot bytes (a partition handed
    over), with ``extra`` in the header (where in the readings' log they are up to)."""
    columns, streams = pipeline.table.rows(slots)
    return _encode(pipeline, np.array(streams, dtype=np.str_), columns, extra)


def decode_rows(
    data: bytes, pipeline: Pipeline, what: str
) -> tuple[dict[str, npt.NDArray[Any]], list[str], dict[str, Any]]:
    """Snapshot bytes checked against the pipeline (as a snapshot file is): the columns,
    the streams and the header; SnapshotError naming ``what`` if they cannot be trusted."""
    return _decode(io.BytesIO(data), pipeline, what)


def _encode(
    pipeline: Pipeline,
    streams: npt.NDArray[Any],
    columns: Mapping[str, npt.NDArray[Any]],
    extra: Mapping[str, Any],
) -> bytes:
    header = {**extra, **header_of(pipeline), "sha256": checksum(streams, columns)}
    arrays = {f"column_{name}": column for name, column in columns.items()}
    buffer = io.BytesIO()
    np.savez(
        buffer,
        header=np.array(json.dumps(header), dtype=np.str_),
        streams=streams,
        allow_pickle=False,
        **arrays,
    )
    return buffer.getvalue()


def save(path: Path, pipeline: Pipeline) -> None:
    """Write the pipeline's state table to ``path`` atomically."""
    write_atomic(path, encode(pipeline), failpoint="snapshot")


def restore(path: Path, pipeline: Pipeline) -> int:
    """Load ``path`` into the pipeline's table; return the streams restored.

    Raises SnapshotError (after renaming the file aside) if it cannot be trusted.
    """
    try:
        table = _read(path, pipeline)
    except SnapshotError:
        path.replace(path.with_name(path.name + ".rejected"))
        raise
    pipeline.table = table
    return len(table)


def _read(path: Path, pipeline: Pipeline) -> StateTable:
    columns, streams, _ = _decode(path, pipeline, str(path))
    table = pipeline.new_table()
    table.load(columns, streams)
    return table


def _decode(
    source: Path | io.BytesIO, pipeline: Pipeline, what: str
) -> tuple[dict[str, npt.NDArray[Any]], list[str], dict[str, Any]]:
    try:
        with np.load(source, allow_pickle=False) as archive:
            header = json.loads(str(archive["header"]))
            _check_fits(what, header, header_of(pipeline))
            streams = archive["streams"]
            columns = {name: archive[f"column_{name}"] for name in header["columns"]}
    except SnapshotError:
        raise
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as exc:
        raise SnapshotError(f"{what}: unreadable snapshot ({exc})") from None
    # The checksum covers every column the file holds, also those this table does not keep
    # (an edge's columns no one here registered): checked before any is set aside.
    if header["version"] >= 2 and checksum(streams, columns) != header.get("sha256"):
        raise SnapshotError(f"{what}: checksum mismatch (the file is damaged)")
    # Columns added since the file was written start empty; gone ones are ignored.
    columns = {name: c for name, c in columns.items() if name in pipeline.table.specs}
    if any(len(c) != len(streams) for c in columns.values()):
        raise SnapshotError(f"{what}: columns of different lengths")
    return columns, [str(s) for s in streams], header


def _check_fits(what: str, header: Any, expected: dict[str, Any]) -> None:
    if not isinstance(header, dict) or header.get("version") not in READABLE_VERSIONS:
        found = header.get("version") if isinstance(header, dict) else None
        raise SnapshotError(f"{what}: snapshot format version {found!r} is not one this reads")
    fixed = (k for k in expected if k not in ("version", "columns"))
    changed = sorted(k for k in fixed if header.get(k) != expected[k])
    theirs, ours = header.get("columns") or {}, expected["columns"]
    changed += sorted(f"column {n}" for n in theirs if n in ours and theirs[n] != ours[n])
    if changed:
        raise SnapshotError(
            f"{what}: does not fit the current bundle/detector ({', '.join(changed)} differ)"
        )


class NamedPipeline(Protocol):
    """What Snapshots needs of a route."""

    @property
    def name(self) -> str: ...

    @property
    def pipeline(self) -> Pipeline: ...


@dataclass
class SnapshotCounters:
    snapshots_saved: int = counter("sensord_snapshots_saved", "Route state snapshots written.")
    snapshot_failures: int = counter(
        "sensord_snapshot_failures", "Route state snapshots that failed."
    )


class Snapshots:
    """When and where each route's state table is saved, and restoring it at start."""

    def __init__(self, folder: Path, interval_s: float, enabled: bool = True) -> None:
        self.folder = folder
        self.interval_s = interval_s
        self.enabled = enabled
        self.counters = SnapshotCounters()
        self._due = self._next_periodic()

    def path(self, route: NamedPipeline) -> Path:
        return self.folder / f"{route.name}.npz"

    def restore_all(self, routes: Sequence[NamedPipeline]) -> None:
        if not self.enabled:
            return
        for route in routes:
            path = self.path(route)
            remove_stale_temps(self.folder, path.name)
            if not path.exists():
                continue
            try:
                streams = restore(path, route.pipeline)
            except SnapshotError as exc:
                log.warning("snapshot set aside; streams start afresh", error=str(exc))
                continue
            log.info("state restored", route=route.name, streams=streams)

    def due(self, now: float) -> bool:
        return self.enabled and now >= self._due

    def save_all(self, routes: Sequence[NamedPipeline]) -> bool:
        """Snapshot every route; True if every one was saved."""
        if not self.enabled:
            return False
        self._due = self._next_periodic()
        saved_all = True
        for route in routes:
            path = self.path(route)
            started = time.monotonic()
            try:
                save(path, route.pipeline)
            except OSError as exc:
                self.counters.snapshot_failures += 1
                saved_all = False
                log.error("snapshot failed", path=str(path), error=str(exc))
                continue
            self.counters.snapshots_saved += 1
            log.info(
                "state saved",
                route=route.name,
                streams=len(route.pipeline.table),
                ms=round((time.monotonic() - started) * 1000, 1),
            )
        return saved_all

    def _next_periodic(self) -> float:
        return time.monotonic() + self.interval_s if self.interval_s > 0 else float("inf")
