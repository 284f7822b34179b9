"""``sensord run``: the daemon loop that ties the edges to the core.

One thread (this loop) owns all state. It takes what paho's thread queued, up to
``max_batch`` readings waiting at most ``max_delay_ms`` after the first, turns them into
samples (ingest.py), runs each route's pipeline (one batched step per wave), and publishes
alert events and stream state changes. Between batches it pets the systemd watchdog, reloads
bundles on SIGHUP and evicts idle streams. SIGTERM/SIGINT stop it: drain the inbox, publish,
say ``offline``, disconnect, snapshot.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sensord.bundle import load_bundle
from sensord.config import RouteSettings, Settings
from sensord.engine import Engine
from sensord.errors import SensordError
from sensord.ingest import Ingest, RateLimitedLog, RouteRule
from sensord.logs import get_logger
from sensord.metrics import MetricsServer
from sensord.mqtt import Inbound, Inbox, MqttAdapter
from sensord.notify import Notifier
from sensord.pipeline import Outcome, Pipeline, Sample
from sensord.route import TopicFilter
from sensord.snapshot import SnapshotError, restore, save
from sensord.wire import alert_payload, alert_topic, state_payload, state_topic

log = get_logger(__name__)
HOUSEKEEPING_S = 1.0
STATS_LOG_S = 60.0
IDLE_WAIT_S = 0.5


@dataclass
class Route:
    """A route at run time: its settings, its core, and what was last published per stream."""

    name: str
    settings: RouteSettings
    pipeline: Pipeline
    published: dict[str, str] = field(default_factory=dict)

    @property
    def features(self) -> tuple[str, ...]:
        return self.pipeline.bundle.features


@dataclass
class DaemonCounters:
    batches: int = 0
    alerts_published: int = 0
    states_published: int = 0
    stream_cap: int = 0
    evicted: int = 0
    reloads: int = 0
    reload_failures: int = 0


class Daemon:
    """The whole online half for one configuration."""

    def __init__(self, settings: Settings, notifier: Notifier | None = None) -> None:
        self.settings = settings
        self.notifier = notifier or Notifier()
        self.prefix = settings.alerts.prefix
        # Bundles load (hash and shapes verified) before anything connects: fail fast.
        self.routes = [self._open_route(i, r) for i, r in enumerate(settings.routes)]
        self.counters = DaemonCounters()
        self.ingest = Ingest(
            rules=[
                RouteRule(
                    TopicFilter(r.settings.topic), r.settings.stream, r.settings.format, r.features
                )
                for r in self.routes
            ],
            max_payload_bytes=settings.limits.max_payload_bytes,
            limiter=RateLimitedLog(settings.limits.log_interval_s),
        )
        self.inbox = Inbox(settings.batching.queue_size)
        self.mqtt = MqttAdapter(
            settings.mqtt,
            self.prefix,
            list(dict.fromkeys(r.settings.topic for r in self.routes)),
            self.inbox,
        )
        self._stop = threading.Event()
        self._reload = threading.Event()
        self.ready = threading.Event()
        self.metrics: MetricsServer | None = None
        self._restore_snapshots()

    # lifecycle

    def request_stop(self) -> None:
        self._stop.set()

    def request_reload(self) -> None:
        self._reload.set()

    def run(self) -> None:
        """Run until a stop is requested; then shut down cleanly."""
        metrics = self.settings.metrics
        if metrics.enabled:
            self.metrics = MetricsServer(self.stats, metrics.host, metrics.port)
            log.info("metrics", url=f"http://{metrics.host}:{self.metrics.port}/metrics")
        self.mqtt.start()
        next_housekeeping = next_stats = time.monotonic()
        try:
            while not self._stop.is_set():
                batch = self._collect()
                if batch:
                    self.process(batch)
                now = time.monotonic()
                self._announce_ready()
                self.notifier.watchdog(now)
                if self._reload.is_set():
                    self._reload.clear()
                    self.reload()
                if now >= next_housekeeping:
                    next_housekeeping = now + HOUSEKEEPING_S
                    self._housekeeping()
                if now >= next_stats:
                    next_stats = now + STATS_LOG_S
                    log.info("stats", **self.stats())
        finally:
            self._shutdown()

    def _announce_ready(self) -> None:
        if not self.ready.is_set() and self.mqtt.ever_connected.is_set():
            self.ready.set()
            streams = sum(len(r.pipeline.table) for r in self.routes)
            self.notifier.ready(f"connected; {len(self.routes)} routes, {streams} streams")
            log.info("ready", routes=len(self.routes), streams=streams)

    def _shutdown(self) -> None:
        self.notifier.stopping()
        log.info("stopping: draining, publishing, disconnecting, saving state")
        self._drain()
        self.mqtt.stop()
        self._drain()  # whatever arrived while we said goodbye is still scored and saved
        self._save_snapshots()
        if self.metrics is not None:
            self.metrics.stop()
        log.info("stopped", **self.stats())

    def _drain(self) -> None:
        while True:
            batch = self._take(self.settings.batching.max_batch, block=False)
            if not batch:
                return
            self.process(batch)

    # the micro-batch

    def _collect(self) -> list[Inbound]:
        """Up to max_batch readings; wait at most max_delay_ms after the first arrives."""
        try:
            first = self.inbox.queue.get(timeout=IDLE_WAIT_S)
        except queue.Empty:
            return []
        batch = [first]
        limit = self.settings.batching.max_batch
        deadline = time.monotonic() + self.settings.batching.max_delay_ms / 1000.0
        while len(batch) < limit:
            batch.extend(self._take(limit - len(batch), block=False))
            remaining = deadline - time.monotonic()
            if len(batch) >= limit or remaining <= 0:
                break
            try:
                batch.append(self.inbox.queue.get(timeout=remaining))
            except queue.Empty:
                break
        return batch

    def _take(self, limit: int, block: bool) -> list[Inbound]:
        taken: list[Inbound] = []
        get = self.inbox.queue.get if block else self.inbox.queue.get_nowait
        while len(taken) < limit:
            try:
                taken.append(get())
            except queue.Empty:
                break
        return taken

    def process(self, batch: Sequence[Inbound]) -> None:
        """Score a micro-batch and publish what it produced."""
        self.counters.batches += 1
        per_route: list[list[tuple[Sample, str]]] = [[] for _ in self.routes]
        for item in batch:
            found = self.ingest.samples(item.topic, item.payload, item.received)
            if found is not None:
                match, samples = found
                per_route[match.route].extend((s, item.topic) for s in samples)
        for route, routed in zip(self.routes, per_route, strict=True):
            kept = self._within_stream_cap(route, routed)
            if kept:
                outcomes = route.pipeline.process([s for s, _ in kept])
                self._publish(route, outcomes, [topic for _, topic in kept])

    def _within_stream_cap(
        self, route: Route, items: list[tuple[Sample, str]]
    ) -> list[tuple[Sample, str]]:
        table = route.pipeline.table
        room = route.settings.max_streams - len(table)
        new = {s.stream for s, _ in items if s.stream not in table.slot_of}
        if len(new) <= room:
            return items
        allowed = set(
            list(dict.fromkeys(s.stream for s, _ in items if s.stream in new))[: max(room, 0)]
        )
        kept = []
        for sample, topic in items:
            if sample.stream in new and sample.stream not in allowed:
                self.counters.stream_cap += 1
                self.ingest.reject(
                    "stream_cap",
                    topic,
                    f"route {route.name} is at max_streams {route.settings.max_streams}",
                )
            else:
                kept.append((sample, topic))
        return kept

    def _publish(self, route: Route, outcomes: list[Outcome], topics: list[str]) -> None:
        now = time.time()
        manifest = route.pipeline.bundle.manifest
        for outcome, topic in zip(outcomes, topics, strict=True):
            sample = outcome.sample
            if outcome.event is not None:
                payload = alert_payload(
                    outcome.event,
                    topic=topic,
                    route=route.name,
                    features=route.features,
                    received=sample.received,
                    published=now,
                )
                self.mqtt.publish(alert_topic(self.prefix, sample.stream), payload, qos=1)
                self.counters.alerts_published += 1
                log.info(
                    "alert",
                    kind=outcome.event.event,
                    stream=sample.stream,
                    score=round(outcome.score, 4),
                    alert_id=outcome.event.alert_id,
                )
            if not self.settings.alerts.publish_state:
                continue
            status = "alert" if outcome.alert else "warming_up" if outcome.warming_up else "normal"
            if route.published.get(sample.stream) != status:
                route.published[sample.stream] = status
                alert_id = (
                    outcome.event.alert_id if outcome.event is not None and outcome.alert else None
                )
                payload = state_payload(
                    stream=sample.stream,
                    status=status,
                    since=sample.ts,
                    route=route.name,
                    model=manifest.name,
                    model_version=manifest.version,
                    alert_id=alert_id,
                )
                self.mqtt.publish(
                    state_topic(self.prefix, sample.stream), payload, qos=1, retain=True
                )
                self.counters.states_published += 1

    # housekeeping, reload, snapshots

    def _housekeeping(self) -> None:
        now = time.time()
        for route in self.routes:
            ttl = route.settings.idle_ttl_s
            if ttl is None:
                continue
            for stream in route.pipeline.evict_idle(now, ttl):
                self.counters.evicted += 1
                route.published.pop(stream, None)
                if self.settings.alerts.publish_state:
                    manifest = route.pipeline.bundle.manifest
                    self.mqtt.publish(
                        state_topic(self.prefix, stream),
                        state_payload(
                            stream=stream,
                            status="evicted",
                            since=now,
                            route=route.name,
                            model=manifest.name,
                            model_version=manifest.version,
                        ),
                        qos=1,
                        retain=True,
                    )
        self.notifier.status(self._status_line())

    def reload(self) -> None:
        """Reload every route's bundle; keep stream state where the shapes match."""
        self.notifier.reloading()
        for route in self.routes:
            try:
                engine = Engine(load_bundle(route.settings.bundle))
            except SensordError as exc:
                self.counters.reload_failures += 1
                log.error(
                    "reload failed; keeping the loaded bundle", route=route.name, error=str(exc)
                )
                continue
            kept = route.pipeline.replace_engine(engine)
            if not kept:
                route.published.clear()
            log.info(
                "bundle reloaded",
                route=route.name,
                model=engine.bundle.name,
                version=engine.bundle.manifest.version,
                state_kept=kept,
            )
        self.counters.reloads += 1
        self.notifier.ready(self._status_line())

    def _snapshot_path(self, route: Route) -> Path:
        return self.settings.state.dir / f"{route.name}.npz"

    def _restore_snapshots(self) -> None:
        if not self.settings.state.snapshot:
            return
        for route in self.routes:
            path = self._snapshot_path(route)
            if not path.exists():
                continue
            try:
                streams = restore(path, route.pipeline)
            except SnapshotError as exc:
                log.warning("snapshot set aside; streams start afresh", error=str(exc))
                continue
            log.info("state restored", route=route.name, streams=streams)

    def _save_snapshots(self) -> None:
        if not self.settings.state.snapshot:
            return
        for route in self.routes:
            path = self._snapshot_path(route)
            try:
                save(path, route.pipeline)
            except OSError as exc:
                log.error("snapshot failed", path=str(path), error=str(exc))
                continue
            log.info(
                "state saved", route=route.name, streams=len(route.pipeline.table), path=str(path)
            )

    def _open_route(self, index: int, settings: RouteSettings) -> Route:
        engine = Engine(load_bundle(settings.bundle))
        name = settings.name or f"route{index}-{engine.bundle.name}"
        return Route(name, settings, Pipeline(engine, self.settings.pipeline_settings(settings)))

    # what is going on

    def stats(self) -> dict[str, Any]:
        core: dict[str, int] = {}
        for route in self.routes:
            for key, value in vars(route.pipeline.counters).items():
                core[key] = core.get(key, 0) + value
        return {
            "received": self.mqtt.counters.received,
            **core,
            "rejected": dict(self.ingest.rejected),
            "dropped_queue_full": self.mqtt.counters.dropped_queue_full,
            "queue_full_waits": self.mqtt.counters.queue_full_waits,
            "streams": sum(len(r.pipeline.table) for r in self.routes),
            **vars(self.counters),
            "connects": self.mqtt.counters.connects,
            "disconnects": self.mqtt.counters.disconnects,
            "inbox": self.inbox.queue.qsize(),
        }

    def _status_line(self) -> str:
        s = self.stats()
        return (
            f"{s['streams']} streams, {s['scored']} scored, {s['raised']} alerts, "
            f"{sum(s['rejected'].values())} rejected"
        )
