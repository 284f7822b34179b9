"""Recording scored readings to CSV for retraining, and the alerts raised on them.

Each route gets a directory under the recording root holding rotating
``readings-<UTC start>Z-<seq>.csv`` files in the long format ``sensord train`` reads
(``timestamp,stream,<features>``, epoch seconds), plus ``alerts.csv`` so that retraining can
leave out the spans the detector flagged.

Writing never raises on I/O: the daemon must keep scoring when the disk is full, so failures
are counted and logged at most once a minute. A file is never appended to after a restart
(a crash may have left a torn last line, and a new row would be glued onto it): every run
starts a new file, ordered after the old ones by its sequence number. A crash can also make
the broker redeliver readings that were already recorded; the loader keeps each
``(stream, timestamp)`` once.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import os
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from stat import S_ISREG

from sensord.arrays import F64
from sensord.config import Settings
from sensord.errors import ConfigError
from sensord.figures import counter
from sensord.logs import get_logger

READINGS_PREFIX = "readings-"
ALERTS_FILE = "alerts.csv"
ALERTS_HEADER = ("alert_id", "stream", "event", "ts", "raised_ts", "score")
EVENTS = ("raised", "updated", "cleared")
_ROUTE = re.compile(r"[A-Za-z0-9_.-]+")
_FILE = re.compile(rf"{READINGS_PREFIX}\d{{8}}T\d{{6}}Z-(\d{{6,}})\.csv")
_LOG_EVERY_S = 60.0
_IDLE_S = 60.0
log = get_logger("sensord.ops.recording")


@dataclass(frozen=True)
class RecordPolicy:
    max_file_bytes: int = 64 << 20  # start a new file rather than grow past this size
    max_file_age_s: float = 86400.0  # or once the open file is this old
    keep_bytes: int = 1 << 30  # per route: delete oldest closed files while the total exceeds it
    keep_s: float = 90 * 86400.0  # delete closed files whose newest reading is older than this


@dataclass
class RecordCounters:
    recorded_rows: int = counter("sensord_recorded_rows", "Readings recorded for retraining.")
    record_errors: int = counter("sensord_record_errors", "Recording writes that failed.")
    record_files_removed: int = counter(
        "sensord_record_files_removed", "Recording files deleted by retention (size or age)."
    )


@dataclass
class _File:
    path: Path
    seq: int
    size: int  # cached, so that retention needs no stat
    newest: float = -math.inf  # newest reading's timestamp, for age retention
    fd: int = -1  # the fields from here on are the open file's
    features: tuple[str, ...] = ()
    created: float = 0.0
    written: float = 0.0  # clock time of the last write
    rows: int = 0


@dataclass
class _Route:
    folder: Path
    closed: list[_File] = field(default_factory=list)  # oldest first
    current: _File | None = None
    next_seq: int = 0
    alerts_fd: int = -1


def csv_text(rows: Iterable[Sequence[object]]) -> str:
    # csv writes floats with str(), which is repr: the shortest text that reads back exactly.
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()


def _rows_text(ts: F64, streams: Sequence[str], values: F64) -> str:
    """The CSV lines of a batch. Stream ids are safe topic levels (no comma, quote or line
    break), so no quoting is needed, and plain f-strings take a fifth of the csv module's
    time (measured: recording cost the loop 28 % more CPU per reading with it,
    benchmarks/operating.py); ``repr`` is the shortest text that reads back exactly."""
    if values.shape[1] == 1:
        return "".join(
            f"{t!r},{s},{v!r}\n"
            for t, s, v in zip(ts.tolist(), streams, values[:, 0].tolist(), strict=True)
        )
    return "".join(
        f"{t!r},{s},{','.join(map(repr, v))}\n"
        for t, s, v in zip(ts.tolist(), streams, values.tolist(), strict=True)
    )


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class Recorder:
    """One per daemon; several routes (a directory each). Never raises on I/O: counts and logs."""

    def __init__(
        self, root: Path, policy: RecordPolicy, clock: Callable[[], float] = time.time
    ) -> None:
        self.root = root
        self.policy = policy
        self.clock = clock
        self.counters = RecordCounters()
        self._routes: dict[str, _Route] = {}
        self._discovered = False
        self._last_log = -math.inf

    def readings(
        self, route: str, features: Sequence[str], streams: Sequence[str], ts: F64, values: F64
    ) -> None:
        """Append one micro-batch of a route's readings (``values`` is ``(n, F)``)."""
        n, names = len(streams), tuple(features)
        if ts.shape != (n,) or values.shape != (n, len(names)):
            raise ValueError(f"record: {n} streams, ts {ts.shape}, values {values.shape}")
        if n == 0:
            return
        state = self._route(route)
        data = _rows_text(ts, streams, values).encode()
        now = self.clock()
        current = state.current
        if current is None or self._must_rotate(current, names, len(data), now):
            current = self._rotate(state, names, now)
            if current is None:
                return  # counted and logged; the rows cannot go anywhere
        try:
            _write_all(current.fd, data)
        except OSError as exc:
            self._fail(current.path, exc)
            self._abandon(state, current)
            return
        current.size += len(data)
        current.newest = max(current.newest, float(ts.max()))
        current.written = now
        current.rows += n
        self.counters.recorded_rows += n

    def alert(
        self,
        route: str,
        *,
        alert_id: str,
        stream: str,
        event: str,
        ts: float,
        raised_ts: float,
        score: float,
    ) -> None:
        """Append one alert event (``raised``, ``updated`` or ``cleared``) to alerts.csv."""
        if event not in EVENTS:
            raise ValueError(f"record: alert event {event!r} is not one of {EVENTS}")
        state = self._route(route)
        path = state.folder / ALERTS_FILE
        line = csv_text([(alert_id, stream, event, ts, raised_ts, score)]).encode()
        try:
            if state.alerts_fd < 0:
                state.alerts_fd = _open_alerts(path)
            _write_all(state.alerts_fd, line)
        except OSError as exc:
            self._fail(path, exc)
            _close(state.alerts_fd)
            state.alerts_fd = -1  # try a fresh open next time

    def maintain(self, now: float) -> None:
        """Close files that grew old, then delete what retention no longer keeps.

        Works from cached sizes and timestamps, so it costs no I/O unless it acts."""
        if not self._discovered:
            self._discover()
        for state in self._routes.values():
            current = state.current
            aged = current is not None and now - current.created >= self.policy.max_file_age_s
            if current is not None and aged and now - current.written >= _IDLE_S:
                # An active route's file is rotated by its next batch, new file first, so no
                # row can be lost; an idle one is closed here, without making an empty new
                # file, so that retention can take it.
                self._retire(state, current)
            self._retain(state, now)

    def close(self) -> None:
        for state in self._routes.values():
            if state.current is not None:
                self._retire(state, state.current)
            _close(state.alerts_fd)
            state.alerts_fd = -1

    def _route(self, route: str) -> _Route:
        state = self._routes.get(route)
        if state is None:
            if not _ROUTE.fullmatch(route) or route in (".", ".."):
                raise ValueError(f"record: route name {route!r} is not [A-Za-z0-9_.-]+")
            state = self._routes[route] = _scan(self.root / route)
        return state

    def _discover(self) -> None:
        # Routes recorded by earlier runs but not (yet) this one still need retention.
        self._discovered = True
        with contextlib.suppress(OSError):
            for name in [p.name for p in self.root.iterdir() if p.is_dir()]:
                if _ROUTE.fullmatch(name) and name not in (".", ".."):
                    self._route(name)

    def _must_rotate(
        self, current: _File, features: tuple[str, ...], size: int, now: float
    ) -> bool:
        if current.features != features:
            return True
        # A batch is never split, and one larger than the limit still goes into one file.
        too_big = current.rows > 0 and current.size + size > self.policy.max_file_bytes
        return too_big or now - current.created >= self.policy.max_file_age_s

    def _rotate(self, state: _Route, features: tuple[str, ...], now: float) -> _File | None:
        """Open the next file (header written) and only then close the old one, so that if
        the new one cannot be made the rows can still go to the old one."""
        old, new = state.current, self._create(state, features, now)
        if new is None:
            return old if old is not None and old.features == features else None
        if old is not None:
            self._retire(state, old)
        state.current = new
        return new

    def _create(self, state: _Route, features: tuple[str, ...], now: float) -> _File | None:
        stamp = datetime.fromtimestamp(now, tz=UTC).strftime("%Y%m%dT%H%M%S")
        header = csv_text([("timestamp", "stream", *features)]).encode()
        path = state.folder
        try:
            state.folder.mkdir(parents=True, exist_ok=True)
            seq, state.next_seq = state.next_seq, state.next_seq + 1
            path = state.folder / f"{READINGS_PREFIX}{stamp}Z-{seq:06d}.csv"
            # O_EXCL: never share a file with another writer (a clash is an error; the next
            # call tries the next sequence number).
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC
            fd = os.open(path, flags, 0o644)
            try:
                _write_all(fd, header)
            except OSError:
                os.close(fd)
                path.unlink(missing_ok=True)
                raise
        except OSError as exc:
            self._fail(path, exc)
            return None
        return _File(path, seq, len(header), -math.inf, fd, features, now)

    def _retire(self, state: _Route, current: _File) -> None:
        _close(current.fd)
        if math.isfinite(current.newest):  # so that a later run knows it without reading
            with contextlib.suppress(OSError):
                os.utime(current.path, (current.newest, current.newest))
        current.fd = -1
        state.closed.append(current)
        state.current = None

    def _abandon(self, state: _Route, current: _File) -> None:
        """After a failed write: cut off any partial row, and let the next batch start a new
        file rather than append behind a damaged tail."""
        with contextlib.suppress(OSError):  # else the loader skips the torn line
            os.ftruncate(current.fd, current.size)
        self._retire(state, current)

    def _retain(self, state: _Route, now: float) -> None:
        cutoff = now - self.policy.keep_s
        total = sum(f.size for f in state.closed)
        total += state.current.size if state.current is not None else 0
        kept: list[_File] = []
        for old in state.closed:  # oldest first
            expired = total > self.policy.keep_bytes or old.newest < cutoff
            if expired and self._remove(old):
                total -= old.size
            else:
                kept.append(old)
        state.closed = kept

    def _remove(self, old: _File) -> bool:
        try:
            old.path.unlink(missing_ok=True)
        except OSError as exc:
            self._fail(old.path, exc)
            return False
        self.counters.record_files_removed += 1
        log.info("recording removed", file=str(old.path), bytes=old.size)
        return True

    def _fail(self, path: Path, exc: OSError) -> None:
        self.counters.record_errors += 1
        now = self.clock()
        if now - self._last_log >= _LOG_EVERY_S:
            self._last_log = now
            reason = exc.strerror or str(exc)
            log.warning(
                "recording failed",
                file=str(path),
                reason=reason,
                errors=self.counters.record_errors,
            )


def _close(fd: int) -> None:
    if fd >= 0:
        with contextlib.suppress(OSError):
            os.close(fd)


def _open_alerts(path: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
    fd = os.open(path, flags, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size == 0:
            _write_all(fd, csv_text([ALERTS_HEADER]).encode())
        elif os.pread(fd, 1, size - 1) != b"\n":
            _write_all(fd, b"\n")  # end a torn line from a crash so the next one stands alone
    except OSError:
        os.close(fd)
        raise
    return fd


def _scan(folder: Path) -> _Route:
    """What an earlier run left in a route's directory: its files, oldest first."""
    files = []
    for path, seq in readings_files(folder):
        with contextlib.suppress(OSError):
            stat = path.stat()  # mtime: set to the newest reading when the file was closed
            if S_ISREG(stat.st_mode):
                files.append(_File(path, seq, stat.st_size, stat.st_mtime))
    return _Route(folder, files, None, files[-1].seq + 1 if files else 0)


def readings_files(folder: Path) -> list[tuple[Path, int]]:
    # Ordered by sequence number, not by the time in the name: the wall clock can step back.
    try:
        found = [(p, _FILE.fullmatch(p.name)) for p in folder.iterdir()]
    except OSError:
        return []
    return sorted(((p, int(m.group(1))) for p, m in found if m), key=lambda item: item[1])


def open_recorder(
    settings: Settings, routes: Sequence[str]
) -> tuple[Recorder | None, frozenset[str]]:
    """The daemon's recorder and the routes it records, per ``[record]``; ConfigError when
    it names a route that does not exist."""
    record = settings.record
    if not record.enabled:
        return None, frozenset()
    unknown = sorted(set(record.routes) - set(routes))
    if unknown:
        raise ConfigError(
            f"record.routes: {unknown[0]!r}: no such route (routes: {', '.join(sorted(routes))})"
        )
    policy = RecordPolicy(
        max_file_bytes=record.max_file_bytes,
        max_file_age_s=record.max_file_age_s,
        keep_bytes=record.keep_bytes,
        keep_s=record.keep_days * 86_400.0,
    )
    return Recorder(settings.records_dir, policy), frozenset(record.routes or routes)
