"""What the web page shows, kept by the scoring loop and read by the page's thread.

The loop owns every stream's state; the page runs in a thread of its own. So the loop
*writes* here and the page only *reads* what was written, under one lock held for copies,
never for work:

- **Charts** for a bounded set of streams (``[web] streams``, each ``[web] points`` readings
  long): those a viewer asked for and those that raised an alert, the least recently used
  let go first. A stream's chart starts from the few readings its state keeps (``recent``)
  and grows from there. Per batch the loop pays one vectorised look-up of the batch's slots;
  only readings of charted streams cost Python work.
- **The streams list** is a copy of a few state columns, made by the loop at most once a
  second and only while someone looks (the page asked within ``VIEWER_TTL_S``).
- **Recent alert events** (``[web] alerts``), with the channel that decided each.
- **Verdicts** the page sends go to the loop as feedback requests, through the same desk as
  MQTT feedback; the desk's answer comes back to the waiting page request.

Nothing here blocks the loop: a page request that needs the loop (a new chart, a fresh list,
a verdict) leaves its wish here and waits on an event the loop sets on its next turn.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from sensord.arrays import F64
from sensord.config import WebSettings
from sensord.core.alert import AlertEvent
from sensord.core.sample import FIRST, Scored
from sensord.daemon.ingest import Routed
from sensord.daemon.publisher import status_of
from sensord.daemon.routes import Route
from sensord.daemon.transport import Request
from sensord.daemon.web.listing import StreamList, stream_list
from sensord.wire.published import alert_message

VIEWER_TTL_S = 30.0  # the streams list is kept fresh this long after the page last asked
LIST_EVERY_S = 1.0  # the loop copies the streams list at most this often
WEB_CORRELATION = b"web:"  # feedback requests from the page carry this prefix


class Ring:
    """One stream's last ``points`` readings: time, score, alert flag, values, expected."""

    def __init__(self, points: int, features: int) -> None:
        self.ts = np.full(points, np.nan)
        self.score = np.full(points, np.nan)
        self.alert = np.zeros(points, dtype=bool)
        self.values = np.full((points, features), np.nan)
        self.expected = np.full((points, features), np.nan)
        self.written = 0

    def add(self, ts: float, score: float, alert: bool, values: F64, expected: F64) -> None:
        """One reading; none older than the last (a chart started from the state's recent
        readings may meet one of them again)."""
        if self.written and ts <= self.ts[(self.written - 1) % len(self.ts)]:
            return
        i = self.written % len(self.ts)
        self.ts[i], self.score[i], self.alert[i] = ts, score, alert
        self.values[i], self.expected[i] = values, expected
        self.written += 1

    def seed(self, ts: F64, values: F64) -> None:
        """The readings the stream's state remembers, oldest first (no score: they were
        scored before anyone watched)."""
        keep = np.isfinite(ts)
        for t, v in zip(ts[keep], values[keep], strict=True):
            self.add(float(t), float("nan"), False, v, np.full(len(v), np.nan))

    def ordered(self) -> dict[str, Any]:
        """The kept readings, oldest first, as columns."""
        n = min(self.written, len(self.ts))
        order = (np.arange(self.written - n, self.written)) % len(self.ts)
        # numpy arrays: the page's edge writes them with orjson, NaN as null
        return {
            "ts": self.ts[order],
            "score": self.score[order],
            "alert": self.alert[order],
            "values": list(self.values[order].T),
            "expected": list(self.expected[order].T),
        }


@dataclass
class _Verdict:
    request: Request
    done: threading.Event = field(default_factory=threading.Event)
    answer: bytes | None = None


class Board:
    """The page's view of the daemon (see the module's docstring)."""

    def __init__(self, settings: WebSettings, prefix: str) -> None:
        self.settings = settings
        self.prefix = prefix
        self._lock = threading.Lock()
        self._charts: OrderedDict[tuple[str, str], Ring] = OrderedDict()  # LRU first
        self._charted: dict[str, npt.NDArray[np.bool_]] = {}  # route -> by slot
        self._last_score: dict[str, F64] = {}  # route -> by slot
        self._status: dict[str, F64] = {}  # route -> by slot: STATUS_CODES, NaN: none yet
        self._asks: set[tuple[str, str]] = set()
        self._asked = threading.Event()  # set when the loop took the asks
        self._alerts: deque[dict[str, Any]] = deque(maxlen=settings.alerts)
        self._lists: list[StreamList] | None = None
        self._listed_at = -np.inf
        self._viewer_at = -np.inf
        self._listed = threading.Condition(self._lock)
        self._verdicts: dict[bytes, _Verdict] = {}
        self._queued: list[Request] = []
        self._ids = itertools.count()
        self.routes: list[dict[str, Any]] = []

    # the loop's side

    def describe(self, routes: Sequence[Route]) -> None:
        """What the page needs to know of each route (at start and after a reload)."""
        described = [
            {
                "name": r.name,
                "features": list(r.features),
                "units": dict(r.settings.units),
                "threshold": r.pipeline.settings.detector.threshold,
                "model": r.pipeline.bundle.manifest.name,
                "version": r.pipeline.bundle.manifest.version,
            }
            for r in routes
        ]
        with self._lock:
            self.routes = described

    def scored(self, route: Route, part: Routed, scored: Scored, values: F64) -> None:
        """One route's scored batch: last scores, chart points, alert events."""
        slots = scored.slots
        stepped = scored.status <= FIRST
        table = route.pipeline.table
        last = self._sized(self._last_score, route.name, table.capacity, np.nan)
        last[slots[stepped]] = scored.score[stepped]
        status = self._sized(self._status, route.name, table.capacity, np.nan)
        status[slots[stepped]] = status_of(scored)[stepped]
        for index, event in scored.events:
            self._event(route, event)
            if event.event == "raised":  # chart it from the readings before this batch's
                first = np.flatnonzero(slots == slots[index])[0]
                self._chart(route, event.stream, before=float(part.ts[first]))
        charted = self._charted.get(route.name)
        if charted is None or not len(self._charts):
            return
        charted = self._sized(self._charted, route.name, table.capacity, False)
        hits = np.flatnonzero(charted[slots] & stepped)
        if not len(hits):
            return
        with self._lock:
            for i in hits:
                ring = self._charts.get((route.name, part.streams[i]))
                if ring is not None:  # else the slot went to another stream since
                    ring.add(
                        float(part.ts[i]),
                        float(scored.score[i]),
                        bool(scored.alert[i]),
                        values[i],
                        scored.expected[i],
                    )

    def _event(self, route: Route, event: AlertEvent) -> None:
        units = route.settings.units
        shown = {
            "route": route.name,
            "stream": event.stream,
            "event": event.event,
            "alert_id": event.alert_id,
            "ts": event.ts,
            "raised_ts": event.raised_ts,
            "score": _finite(event.score),
            "threshold": event.threshold,
            "severity": event.severity if event.event != "cleared" else None,
            "channel": event.channel,
            "reason": event.reason,
            "message": alert_message(event, route.features, units),
        }
        with self._lock:  # the page's thread copies the deque: no append meanwhile
            self._alerts.append(shown)

    def turn(self, routes: Sequence[Route], now: float) -> None:
        """Once per loop turn: charts asked for, and the streams list while someone looks."""
        if self._asks:
            with self._lock:
                asks, self._asks = self._asks, set()
            by_name = {r.name: r for r in routes}
            for name, stream in asks:
                route = by_name.get(name)
                if route is not None and stream in route.pipeline.table.slot_of:
                    self._chart(route, stream)
            self._asked.set()
        if now - self._viewer_at < VIEWER_TTL_S and now - self._listed_at >= LIST_EVERY_S:
            lists = [
                stream_list(r, self._last_score.get(r.name), self._status.get(r.name))
                for r in routes
            ]
            with self._listed:
                self._lists, self._listed_at = lists, now
                self._listed.notify_all()

    def _chart(self, route: Route, stream: str, before: float = np.inf) -> None:
        """Start (or refresh the use of) a stream's chart, seeded from the readings its
        state keeps that are older than ``before``."""
        key = (route.name, stream)
        table = route.pipeline.table
        with self._lock:
            if key in self._charts:
                self._charts.move_to_end(key)
                return
            while len(self._charts) >= self.settings.streams:
                self._charts.popitem(last=False)
            ring = Ring(self.settings.points, len(route.features))
            slot = table.slot_of.get(stream)
            if slot is not None:
                steps = int(table["steps"][slot])
                kept = table["recent_ts"].shape[1]
                position = np.arange(steps - min(steps, kept), steps) % kept
                ts = table["recent_ts"][slot][position]
                keep = ts < before
                ring.seed(ts[keep], table["recent_values"][slot][position][keep])
            self._charts[key] = ring
        self._mark_charted(route)

    def _mark_charted(self, route: Route) -> None:
        table = route.pipeline.table
        charted = np.zeros(table.capacity, dtype=bool)
        with self._lock:  # the page's thread reorders the charts (LRU) as it reads them
            keys = list(self._charts)
        for name, stream in keys:
            slot = table.slot_of.get(stream) if name == route.name else None
            if slot is not None:
                charted[slot] = True
        self._charted[route.name] = charted

    def housekeeping(self, routes: Sequence[Route]) -> None:
        """Charts follow their streams to new slots (eviction, restore, reload)."""
        for route in routes:
            self._mark_charted(route)

    def take_requests(self) -> list[Request]:
        """The verdicts the page sent since the last turn, for the feedback desk."""
        if not self._queued:
            return []
        with self._lock:
            queued, self._queued = self._queued, []
        return queued

    def answer(self, correlation: bytes, payload: bytes) -> bool:
        """The desk's answer to a verdict from the page (False: not one of the page's)."""
        with self._lock:
            verdict = self._verdicts.pop(correlation, None)
        if verdict is None:
            return False
        verdict.answer = payload
        verdict.done.set()
        return True

    @staticmethod
    def _sized(
        arrays: dict[str, npt.NDArray[Any]], name: str, capacity: int, fill: Any
    ) -> npt.NDArray[Any]:
        """The route's per-slot array, grown (or shrunk) with its state table."""
        array = arrays.get(name)
        if array is None or len(array) != capacity:
            dtype = np.bool_ if isinstance(fill, bool) else np.float64
            grown: npt.NDArray[Any] = np.full(capacity, fill, dtype=dtype)
            if array is not None:
                keep = min(len(array), capacity)
                grown[:keep] = array[:keep]
            arrays[name] = array = grown
        return array

    # the page's side (another thread)

    def stream_lists(self, wait_s: float) -> tuple[list[StreamList] | None, float]:
        """The latest streams list and its age in seconds; waits up to ``wait_s`` for one
        fresher than a second when the last is older (the loop makes it on its next turn)."""
        now = time.monotonic()
        with self._listed:
            self._viewer_at = now
            if self._lists is None or now - self._listed_at > 2 * LIST_EVERY_S:
                self._listed.wait_for(lambda: self._listed_at >= now - LIST_EVERY_S, wait_s)
            return self._lists, time.monotonic() - self._listed_at

    def chart(self, route: str, stream: str, wait_s: float) -> dict[str, Any] | None:
        """A stream's chart (None: not charted yet, asked now); waits up to ``wait_s``
        for the loop to start one."""
        key = (route, stream)
        with self._lock:
            ring = self._charts.get(key)
            if ring is None:
                self._asks.add(key)
                self._asked.clear()
        if ring is None:
            self._asked.wait(wait_s)
            with self._lock:
                ring = self._charts.get(key)
        if ring is None:
            return None
        with self._lock:
            self._charts.move_to_end(key)
            return ring.ordered()

    def alerts(self, stream: str | None = None, route: str | None = None) -> list[dict[str, Any]]:
        """Recent alert events, newest first (of one stream, if given)."""
        with self._lock:
            events = list(self._alerts)
        return [
            e
            for e in reversed(events)
            if (stream is None or e["stream"] == stream) and (route is None or e["route"] == route)
        ]

    def submit_verdict(self, stream: str, payload: bytes, wait_s: float) -> bytes | None:
        """Send a verdict to the feedback desk as the loop's next request; its answer, or
        None when the loop did not answer within ``wait_s``."""
        correlation = WEB_CORRELATION + str(next(self._ids)).encode()
        request = Request(
            topic=f"{self.prefix}/feedback/{stream}",
            payload=payload,
            received=time.time(),
            qos=0,  # nothing to acknowledge to a broker
            mid=0,
            session=-1,
            correlation=correlation,
        )
        verdict = _Verdict(request)
        with self._lock:
            self._verdicts[correlation] = verdict
            self._queued.append(request)
        if not verdict.done.wait(wait_s):
            with self._lock:
                self._verdicts.pop(correlation, None)
            return None
        return verdict.answer

    @property
    def viewed_at(self) -> float:
        """When (monotonic) a page last asked for the streams list; -inf: never."""
        return self._viewer_at

    def info(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.routes)


def _finite(value: float) -> float | None:
    return value if np.isfinite(value) else None
