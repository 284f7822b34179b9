"""Continual learning in the daemon: each recorded route is retrained when its schedule is
due, by a child process (retrainchild.py), while the loop goes on scoring.

A route is due (``decide``) once its streams have stepped ``every_rows`` new readings each,
on average, since its last attempt started (what the daemon scored is what the recorder
wrote: recording happens in the same batch), and ``min_interval_s`` has passed since its
last attempt ended (at start: since its decision log was last written, so a restart does
not retrain again at once). Then the loop starts ``sensord retrain --route NAME`` on the
daemon's configuration file, niced and CPU-limited: one child at a time, for whichever due
route waited longest. The loop never waits for it and never imports torch: each turn it
asks whether the child ended, and counts and logs how (promoted, refused, skipped, failed)
with the child's CPU time. A promotion moves the route's ``current`` link, and the loop's
housekeeping reloads the route as for any move (routes.py ``reload_route``: the new engine
swapped into the same pipeline and state table; each stream's scaling, LSTM state and seen
range refitted from its recent readings, its step count, detector statistics and alert
state kept: core/swap.py). On stop, a running child is ended by its pid and waited for.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from importlib.util import find_spec
from pathlib import Path
from typing import Any, Literal

from sensord.config import Settings
from sensord.config.sections import RouteSchedule
from sensord.daemon.retrainchild import Ended, Launch, Outcome, RetrainChild
from sensord.daemon.routes import Route
from sensord.errors import ConfigError
from sensord.logs import get_logger
from sensord.ops.models import DECISIONS, managed_route_dir

log = get_logger(__name__)
Wait = Literal["due", "no_streams", "rows", "interval"]
CHECK_EVERY_S = 1.0  # how often the schedules are looked at (a running child: every turn)
STOP_WAIT_S = 10.0  # a child still there this long after SIGTERM gets SIGKILL
HISTORY = 32  # attempts kept for whoever asks (tests, benchmarks)


@dataclass(frozen=True)
class Schedule:
    """When a route is retrained: every ``every_rows`` new readings per stream, at most
    once per ``min_interval_s`` after the last attempt ended."""

    every_rows: int
    min_interval_s: float


def schedules(settings: Settings, routes: Sequence[str]) -> dict[str, Schedule]:
    """The routes retrained continually, each with its schedule: ``[retrain]``, and what
    ``[retrain.routes.NAME]`` sets instead. ConfigError when that names no route."""
    retrain = settings.retrain
    unknown = sorted(set(retrain.routes) - set(routes))
    if unknown:
        raise ConfigError(
            f"retrain.routes: {unknown[0]!r}: no such route (routes: {', '.join(routes)})"
        )
    planned = {}
    for name in routes:
        own = retrain.routes.get(name, RouteSchedule())
        if own.continual if own.continual is not None else retrain.continual:
            planned[name] = Schedule(
                own.every_rows if own.every_rows is not None else retrain.every_rows,
                own.min_interval_s if own.min_interval_s is not None else retrain.min_interval_s,
            )
    return planned


def decide(schedule: Schedule, *, new_rows: int, streams: int, since_s: float | None) -> Wait:
    """Whether a route is due ("due"), or what it waits for: streams at all, enough new
    readings per stream, or the interval since its last attempt ended (None: none ended)."""
    if streams == 0:
        return "no_streams"
    if new_rows < schedule.every_rows * streams:
        return "rows"
    if since_s is not None and since_s < schedule.min_interval_s:
        return "interval"
    return "due"


@dataclass
class Retrains:
    """One route's continual retraining, for the metrics: attempts by outcome, the CPU
    seconds its children used, whether one runs now."""

    promoted: int = 0
    refused: int = 0
    skipped: int = 0
    failed: int = 0
    cpu_s: float = 0.0
    running: int = 0


@dataclass
class Watched:
    """A route under continual retraining."""

    route: Route
    schedule: Schedule
    route_dir: Path  # <models_dir>/<route>: its versions, current link and decisions
    rows_at_last: int  # its stepped readings when its last attempt started (or at start)
    ended_at: float | None  # wall clock: its last attempt ended
    figures: Retrains = field(default_factory=Retrains)

    def rows(self) -> int:
        """Readings the route's core has stepped since the daemon started."""
        counters = self.route.pipeline.counters
        return counters.scored + counters.first

    def wait(self, now: float) -> Wait:
        return decide(
            self.schedule,
            new_rows=self.rows() - self.rows_at_last,
            streams=len(self.route.pipeline.table),
            since_s=None if self.ended_at is None else now - self.ended_at,
        )


@dataclass(frozen=True)
class Attempt:
    """One retrain child, from start to end."""

    route: str
    rows: int  # the new readings that made the route due
    pid: int  # 0: it could not start
    wall_s: float
    ended: Ended

    @property
    def outcome(self) -> Outcome | Literal["stopped"]:
        return self.ended.outcome


class Continual:
    """The routes under continual retraining and the one retrain child, if any."""

    def __init__(self, watched: Sequence[Watched], launch: Launch) -> None:
        self.watched = {w.route.name: w for w in watched}
        self.launch = launch
        self.child: tuple[Watched, RetrainChild, int] | None = None  # route, child, its rows
        self.history: deque[Attempt] = deque(maxlen=HISTORY)
        self._next_check = -math.inf

    @property
    def running(self) -> str | None:
        """The route being retrained now, if one is."""
        return self.child[0].route.name if self.child is not None else None

    def poll(self) -> None:
        """Each turn of the loop, never waiting: the child's end if it ended, else (once a
        second) a child for the due route that waited longest."""
        if self.child is not None:
            ended = self.child[1].ended()
            if ended is not None:
                self._finish(ended)
            return
        now = time.monotonic()
        if now < self._next_check:
            return
        self._next_check = now + CHECK_EVERY_S
        wall = time.time()
        due = [w for w in self.watched.values() if w.wait(wall) == "due"]
        if due:
            self._start(min(due, key=lambda w: -math.inf if w.ended_at is None else w.ended_at))

    def figures(self) -> dict[str, dict[str, Any]]:
        """Each route's ``Retrains`` as plain data (the metrics' and the stats line's)."""
        return {name: asdict(w.figures) for name, w in self.watched.items()}

    def stop(self) -> None:
        """The daemon is stopping: end a running child by its pid and wait for it."""
        if self.child is not None:
            self._finish(self.child[1].stop(STOP_WAIT_S))

    def _start(self, watched: Watched) -> None:
        name, rows = watched.route.name, watched.rows()
        new_rows, watched.rows_at_last = rows - watched.rows_at_last, rows
        try:
            child = RetrainChild(self.launch, name, watched.route_dir)
        except OSError as exc:
            ended = Ended("failed", None, 0.0, None, (f"the child could not start: {exc}",))
            self._record(watched, Attempt(name, new_rows, 0, 0.0, ended))
            return
        self.child = (watched, child, new_rows)
        watched.figures.running = 1
        log.info(
            "retrain started",
            route=name,
            rows=new_rows,
            streams=len(watched.route.pipeline.table),
            pid=child.pid,
            nice=self.launch.nice,
            max_cpu_s=self.launch.max_cpu_s,
        )

    def _finish(self, ended: Ended) -> None:
        assert self.child is not None
        watched, child, rows = self.child
        self.child = None
        wall_s = time.monotonic() - child.started
        self._record(watched, Attempt(watched.route.name, rows, child.pid, wall_s, ended))

    def _record(self, watched: Watched, attempt: Attempt) -> None:
        """Count, keep and log an attempt that ended."""
        figures, ended = watched.figures, attempt.ended
        if ended.outcome != "stopped":
            setattr(figures, ended.outcome, getattr(figures, ended.outcome) + 1)
        figures.cpu_s += ended.cpu_s
        figures.running = 0
        watched.ended_at = time.time()
        self.history.append(attempt)
        line = log.warning if ended.outcome == "failed" else log.info
        line(
            "retrain finished",
            route=attempt.route,
            rows=attempt.rows,
            outcome=ended.outcome,
            cpu_s=round(ended.cpu_s, 3),
            wall_s=round(attempt.wall_s, 3),
            version=ended.version,
            reasons=list(ended.reasons),
            exit_code=ended.exit_code,
        )


def open_continual(
    settings: Settings, routes: Sequence[Route], recorded: frozenset[str], config: Path | None
) -> Continual | None:
    """The daemon's continual retraining per ``[retrain]``, or None when no route has it;
    ConfigError for what would make every attempt fail."""
    planned = schedules(settings, [r.name for r in routes])
    if not planned:
        return None
    _check(settings, planned, recorded, config)
    assert config is not None  # _check says so
    watched = []
    for route in routes:
        if route.name in planned:
            route_dir = managed_route_dir(settings.models_dir, route.name, route.settings.bundle)
            decisions = route_dir / DECISIONS
            ended = decisions.stat().st_mtime if decisions.exists() else None
            rows = route.pipeline.counters.scored + route.pipeline.counters.first
            watched.append(Watched(route, planned[route.name], route_dir, rows, ended))
    retrain = settings.retrain
    return Continual(watched, Launch(config, retrain.nice, retrain.max_cpu_s, retrain.threads))


def _check(
    settings: Settings,
    planned: dict[str, Schedule],
    recorded: frozenset[str],
    config: Path | None,
) -> None:
    first = sorted(planned)[0]
    where = f"retrain.continual (route {first!r})"
    if settings.cluster.url is not None:
        raise ConfigError(f"{where}: not available in cluster mode yet")
    if config is None:
        raise ConfigError(
            f"{where}: the retrain child reads the daemon's configuration file: start the "
            "daemon with one (sensord run --config FILE, or $SENSORD_CONFIG)"
        )
    unrecorded = sorted(set(planned) - recorded)
    if unrecorded:
        raise ConfigError(
            f"retrain.continual: route {unrecorded[0]!r} is not recorded, and retraining "
            "learns from the recording: set [record] enabled = true (and name the route "
            "in record.routes, if that lists routes)"
        )
    if find_spec("torch") is None:  # looked up, not imported: the daemon never loads torch
        raise ConfigError(
            f"{where}: needs the train extra beside the daemon (torch is missing): "
            "pip install torch==2.13.0 && pip install 'sensord[train]'"
        )
