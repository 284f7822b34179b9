"""Snapshots of state tables: written atomically, checked before they are trusted.

A snapshot is a numpy ``.npz`` archive (no pickle: ``allow_pickle=False`` both ways) with
one array per state column, the stream ids by slot, and a JSON header: format version, the
bundle's shapes and graph hash, and the column layout. Loading checks all of them; a file
that is corrupt or does not fit is set aside (renamed ``*.rejected``) with a warning, never
loaded half, and the streams start afresh.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from sensord.files import write_atomic
from sensord.pipeline import Pipeline
from sensord.state import StateTable

SNAPSHOT_VERSION = 1


class SnapshotError(Exception):
    """A snapshot that cannot be restored; the message says why."""


def header_of(pipeline: Pipeline) -> dict[str, Any]:
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


def save(path: Path, pipeline: Pipeline) -> None:
    """Write the pipeline's state table to ``path`` atomically."""
    table = pipeline.table
    streams = np.array([s or "" for s in table.stream_of], dtype=np.str_)
    header = np.array(json.dumps(header_of(pipeline)), dtype=np.str_)
    arrays = {f"column_{name}": column for name, column in table.columns.items()}
    buffer = io.BytesIO()
    np.savez(buffer, header=header, streams=streams, allow_pickle=False, **arrays)
    write_atomic(path, buffer.getvalue())


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
    try:
        with np.load(path, allow_pickle=False) as archive:
            header = json.loads(str(archive["header"]))
            expected = header_of(pipeline)
            if header != expected:
                changed = sorted(k for k in expected if header.get(k) != expected[k])
                raise SnapshotError(
                    f"{path}: does not fit the current bundle/detector "
                    f"({', '.join(changed)} differ)"
                )
            streams = [str(s) for s in archive["streams"]]
            columns = {name: archive[f"column_{name}"] for name in expected["columns"]}
    except SnapshotError:
        raise
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
        raise SnapshotError(f"{path}: unreadable snapshot ({exc})") from None
    table = pipeline.new_table()
    capacity = len(streams)
    if any(len(c) != capacity for c in columns.values()):
        raise SnapshotError(f"{path}: columns of different lengths")
    table.load(columns, streams)
    return table
