"""The streams list of the web page: copied from the state by the loop, then filtered,
sorted and written for the page in the page's own thread.

Filtering and sorting run on the copied columns with numpy, and rows (dicts) are made only
for the ``limit`` streams the page shows, so a list over 10,000 streams costs the page's
thread a name scan, not 10,000 dicts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from sensord.arrays import F64
from sensord.daemon.publisher import STATUS_CODES, STATUS_NAMES
from sensord.daemon.routes import Route

LISTED_COLUMNS = (
    "published_status",
    "status_since",
    "last_ts",
    "last_received",
    "alert_active",
    "raised_ts",
    "nodata",
)
NEW = 0  # status code of a stream with no reading since start and no published status


@dataclass
class StreamList:
    """A copy of the columns the streams list shows, for one route."""

    route: str
    streams: list[str | None]
    columns: dict[str, npt.NDArray[Any]]


def stream_list(route: Route, last_score: F64 | None, status: F64 | None) -> StreamList:
    """Copy the listed columns of a route's state, with the board's last score and status
    per slot (made by the loop: the table is not the page thread's to read)."""
    table = route.pipeline.table
    columns = {name: table[name].copy() for name in LISTED_COLUMNS}
    columns["score"] = _fitted(last_score, table.capacity)
    columns["status"] = _fitted(status, table.capacity)
    return StreamList(route.name, list(table.stream_of), columns)


def _fitted(column: F64 | None, capacity: int) -> F64:
    """A copy of a board column as long as the table (NaN where it has nothing)."""
    fitted = np.full(capacity, np.nan)
    if column is not None:
        keep = min(len(column), capacity)
        fitted[:keep] = column[:keep]
    return fitted


def status_codes(columns: dict[str, npt.NDArray[Any]]) -> npt.NDArray[np.int64]:
    """Each slot's status as of its last reading; before any since start (a restart), what
    its state says: in alert, else the status last published, else new."""
    code = columns["status"]
    fallback = np.where(
        columns["alert_active"], STATUS_CODES["alert"], columns["published_status"]
    ).astype(np.int64)
    return np.where(np.isfinite(code), np.nan_to_num(code), fallback).astype(np.int64)


def list_rows(
    lists: Sequence[StreamList],
    alerts: Sequence[dict[str, Any]],
    *,
    text: str = "",
    status: str = "",
    limit: int = 200,
) -> tuple[list[dict[str, Any]], int]:
    """The streams whose name (or route) contains ``text`` and whose status is ``status``
    (either empty: any), alerting first, then by score: the first ``limit`` as rows for the
    page, and how many matched. A row says the stream's status, score, last alert (the
    active one, else the latest raised among the recent events, which also name its
    channel) and last reading."""
    wanted = STATUS_CODES.get(status, NEW) if status else None
    picked: list[tuple[StreamList, npt.NDArray[np.int64], npt.NDArray[np.int64]]] = []
    for listed in lists:
        text_in_route = text in listed.route.lower()
        slots = np.array(
            [
                slot
                for slot, name in enumerate(listed.streams)
                if name is not None and (text_in_route or text in name.lower())
            ],
            dtype=np.int64,
        )
        codes = status_codes(listed.columns)[slots]
        if wanted is not None:
            keep = codes == wanted
            slots, codes = slots[keep], codes[keep]
        picked.append((listed, slots, codes))
    total = sum(len(slots) for _, slots, _ in picked)
    if not total:
        return [], 0
    alert = np.concatenate([listed.columns["alert_active"][s] for listed, s, _ in picked])
    score = np.concatenate([listed.columns["score"][s] for listed, s, _ in picked])
    order = np.lexsort((-np.nan_to_num(score, nan=-1.0), ~alert))[:limit]
    starts = np.cumsum([0] + [len(s) for _, s, _ in picked])
    last_raised = {(e["route"], e["stream"]): e for e in reversed(alerts) if e["event"] == "raised"}
    rows = []
    for position in order:
        which = int(np.searchsorted(starts, position, side="right")) - 1
        listed, slots, codes = picked[which]
        at = int(position) - int(starts[which])
        rows.append(_row(listed, int(slots[at]), int(codes[at]), last_raised))
    return rows, total


def _row(
    listed: StreamList, slot: int, code: int, last_raised: dict[tuple[str, str], dict[str, Any]]
) -> dict[str, Any]:
    c, stream = listed.columns, listed.streams[slot]
    active = bool(c["alert_active"][slot])
    latest = last_raised.get((listed.route, stream or ""), {})
    return {
        "route": listed.route,
        "stream": stream,
        "status": STATUS_NAMES.get(code, "new"),
        "since": _finite(float(c["status_since"][slot])),
        "score": _finite(float(c["score"][slot])),
        "last_ts": _finite(float(c["last_ts"][slot])),
        "last_received": _finite(float(c["last_received"][slot])),
        "alert": active,
        "raised_ts": _finite(float(c["raised_ts"][slot])) if active else latest.get("ts"),
        "channel": latest.get("channel"),
        "nodata": bool(c["nodata"][slot]),
    }


def _finite(value: float) -> float | None:
    return value if np.isfinite(value) else None
