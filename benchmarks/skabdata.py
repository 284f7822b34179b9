"""SKAB's files: found, read, and written back as the CSV sensord's trainer and replay read.

SKAB's ``data`` folder holds ``<category>/<n>.csv`` files, ``;``-separated: a ``datetime``
column, the pump's eight sensors, and the labels ``anomaly`` and ``changepoint`` (never an
input; the anomaly-free file has none).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from sensord.arrays import F64
from sensord.core.timestamps import parse_timestamp

LABELS = ("anomaly", "changepoint")


@dataclass(frozen=True)
class SkabFile:
    name: str  # category/n.csv
    features: tuple[str, ...]
    timestamps: F64
    values: F64  # [n, 8]
    anomaly: npt.NDArray[np.int64]
    changepoint: npt.NDArray[np.int64]


def read_skab(path: Path, name: str) -> SkabFile:
    lines = path.read_text().splitlines()
    header = lines[0].split(";")
    if header[0] != "datetime":
        raise ValueError(f"{path}: not a SKAB file (header {header})")
    cells = [line.split(";") for line in lines[1:] if line.strip()]
    data = np.asarray([[float(c) for c in row[1:]] for row in cells])
    # The anomaly-free file has no label columns: every row of it is normal.
    labelled = header[-2:] == list(LABELS)
    if not labelled:
        data = np.concatenate([data, np.zeros((len(data), 2))], axis=1)
    return SkabFile(
        name=name,
        features=tuple(header[1:-2] if labelled else header[1:]),
        timestamps=np.asarray([parse_timestamp(row[0]) for row in cells]),
        values=data[:, :-2],
        anomaly=data[:, -2].astype(np.int64),
        changepoint=data[:, -1].astype(np.int64),
    )


def find_files(root: Path) -> list[tuple[str, Path]]:
    """The labelled files under ``root`` (or its ``data`` folder), by category and number;
    ``anomaly-free`` is left out, as SKAB's leaderboard does."""
    base = root / "data" if (root / "data").is_dir() else root
    return [
        (p.relative_to(base).as_posix(), p)
        for p in sorted(base.glob("*/*.csv"), key=lambda q: (q.parent.name, file_order(q.stem)))
        if p.parent.name != "anomaly-free"
    ]


def file_order(stem: str) -> tuple[int, str]:
    """Files in the order of their numbers (2 before 10), named ones after them."""
    return (int(stem), "") if stem.isdigit() else (1 << 30, stem)


def write_csv(path: Path, skab: SkabFile, rows: slice) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["timestamp," + ",".join(skab.features)]
    for ts, values in zip(skab.timestamps[rows], skab.values[rows], strict=True):
        lines.append(f"{ts:.3f}," + ",".join(repr(float(v)) for v in values))
    path.write_text("\n".join(lines) + "\n")
