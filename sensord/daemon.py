"""``sensord run``: the daemon loop that ties the edges to the core.

One thread (this loop) owns all state and the MQTT socket. It reads readings off the socket
(mqtt.py), up to ``max_batch`` waiting at most ``max_delay_ms`` after the first, turns them
into columns per route (ingest.py), runs each route's pipeline (one batched step per wave),
writes the batch's alerts to the outbox and publishes them (delivery.py), publishes stream
state changes, and only then acknowledges the batch's readings, in arrival order. Between
batches it pets the systemd watchdog (only while the loop and the MQTT side both make
progress), snapshots state when due (snapshot.py), reloads bundles on SIGHUP and evicts idle
streams. SIGTERM/SIGINT stop it: score what was read, publish, say ``offline``, disconnect,
snapshot.

What a crash (kill -9, OOM) costs: nothing. Unacknowledged readings come again from the
broker's session (the core does not score a repeat twice), alerts come again from the
outbox, and stream state is the last snapshot with the readings journal since it replayed
(journal.py). A power cut can also lose the journal's last writes unless ``journal_sync``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from sensord.bundle import load_bundle
from sensord.config import RouteSettings, Settings
from sensord.delivery import AlertDelivery
from sensord.durable import DurableState
from sensord.engine import Engine
from sensord.errors import SensordError
from sensord.ingest import Ingest, Message, RateLimitedLog, Routed, RouteRule
from sensord.journal import Entry
from sensord.logs import get_logger
from sensord.metrics import MetricsServer
from sensord.mqtt import MqttAdapter
from sensord.notify import Notifier
from sensord.pipeline import Pipeline
from sensord.retained import RetainedStates
from sensord.route import TopicFilter
from sensord.sample import FIRST, Scored
from sensord.wire import alert_payload, alert_topic, state_payload, state_topic

log = get_logger(__name__)
HOUSEKEEPING_S = 1.0
STATS_LOG_S = 60.0
IDLE_WAIT_S = 0.5
# Codes of the published_status state column; 0 means nothing published yet.
STATUS_CODES = {"warming_up": 1, "normal": 2, "alert": 3}
STATUS_NAMES = {code: name for name, code in STATUS_CODES.items()}


@dataclass
class Route:
    """A route at run time: its settings, its core, and what was last published per stream."""

    name: str
    settings: RouteSettings
    pipeline: Pipeline

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
        self.mqtt = MqttAdapter(
            settings.mqtt,
            self.prefix,
            list(dict.fromkeys(r.settings.topic for r in self.routes)),
            read_limit=settings.batching.max_batch,
        )
        self.states = RetainedStates(
            lambda topic, payload: self.mqtt.publish(topic, payload, qos=1, retain=True)
        )
        self.durable = DurableState(settings.state)
        self.delivery = AlertDelivery(
            lambda topic, payload: self.mqtt.publish(topic, payload, qos=1).mid,
            self.durable.outbox,
        )
        self.mqtt.on_published = self.delivery.published
        self._stop = threading.Event()
        self._reload = threading.Event()
        self.ready = threading.Event()
        self.metrics: MetricsServer | None = None
        self.durable.restore(self.routes)

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
        self.delivery.replay()
        next_housekeeping = next_stats = time.monotonic()
        try:
            while not self._stop.is_set():
                batch = self._collect()
                if batch:
                    self.process(batch)
                self.states.flush()
                self.mqtt.write()  # alerts leave now, not after the next batch
                now = time.monotonic()
                self._announce_ready()
                if self.mqtt.making_progress(now):  # and this loop is: it is here
                    self.notifier.watchdog(now)
                if self.durable.due(now):
                    self.durable.save(self.routes)
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
        self.states.flush(everything=True)  # before "offline", which paho sends after them
        self.mqtt.stop()
        self._drain()  # whatever arrived while we said goodbye is still scored and saved
        self.durable.save(self.routes)
        self.durable.close()
        if self.metrics is not None:
            self.metrics.stop()
        log.info("stopped", **self.stats())

    def _drain(self) -> None:
        while self.mqtt.inbox:
            self.process(self.mqtt.take(self.settings.batching.max_batch))

    # the micro-batch

    def _collect(self) -> list[Message]:
        """Up to max_batch readings; wait at most max_delay_ms after the first arrives.

        Reading the socket happens here, in this thread: while a batch is scored nothing
        is read, and TCP holds what the broker sends meanwhile.
        """
        limit = self.settings.batching.max_batch
        if not self.mqtt.inbox:
            # Idle: wake at least as often as the watchdog wants a ping.
            self.mqtt.poll(min(IDLE_WAIT_S, self.notifier.watchdog_interval or IDLE_WAIT_S))
        if not self.mqtt.inbox:
            return []
        deadline = time.monotonic() + self.settings.batching.max_delay_ms / 1000.0
        while len(self.mqtt.inbox) < limit:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self.mqtt.poll(remaining)
        return self.mqtt.take(limit)

    def process(self, batch: Sequence[Message]) -> None:
        """Score a micro-batch, hand its alerts to the outbox and publish them, publish
        state changes, and then acknowledge the batch's readings (rejected ones too)."""
        self.counters.batches += 1
        alerts: list[tuple[str, bytes]] = []
        journal: list[Entry] = []
        for route, routed in zip(self.routes, self.ingest.route_batch(batch), strict=True):
            part = self._within_stream_cap(route, routed)
            if not part:
                continue
            ts, values, received = part.arrays()
            scored = route.pipeline.process_batch(part.streams, ts, values, received)
            journal.append(Entry(route.name, part.streams, ts, values, received))
            self._publish(route, part, scored, alerts)
        if alerts:
            self.delivery.send(alerts)
        self.durable.record(journal)
        self.mqtt.ack(batch)

    def _within_stream_cap(self, route: Route, part: Routed) -> Routed:
        table = route.pipeline.table
        room = route.settings.max_streams - len(table)
        slot_of = table.slot_of
        new = [s for s in dict.fromkeys(part.streams) if s not in slot_of]
        if len(new) <= room:
            return part
        refused = set(new[max(room, 0) :])
        keep = [s not in refused for s in part.streams]
        for stream, topic, ok in zip(part.streams, part.topics, keep, strict=True):
            if not ok:
                self.counters.stream_cap += 1
                self.ingest.reject(
                    "stream_cap",
                    topic,
                    f"route {route.name} is at max_streams {route.settings.max_streams} "
                    f"(stream {stream})",
                )
        return part.keep(keep)

    def _publish(
        self, route: Route, part: Routed, scored: Scored, alerts: list[tuple[str, bytes]]
    ) -> None:
        now = time.time()
        raised_ids: dict[int, str] = {}
        for index, event in scored.events:
            payload = alert_payload(
                event,
                topic=part.topics[index],
                route=route.name,
                features=route.features,
                received=part.received[index],
                published=now,
            )
            alerts.append((alert_topic(self.prefix, event.stream), payload))
            self.counters.alerts_published += 1
            if event.event == "raised":
                raised_ids[index] = event.alert_id
            log.info(
                "alert",
                kind=event.event,
                stream=event.stream,
                score=round(event.score, 4),
                alert_id=event.alert_id,
            )
        if self.settings.alerts.publish_state:
            self._publish_state_changes(route, part, scored, raised_ids)

    def _publish_state_changes(
        self, route: Route, part: Routed, scored: Scored, raised_ids: dict[int, str]
    ) -> None:
        """Publish each stream's status where it changed; the comparison is vectorised so
        only the few readings that change a status cost Python work."""
        table = route.pipeline.table
        codes = np.where(
            scored.alert,
            STATUS_CODES["alert"],
            np.where(scored.warming_up, STATUS_CODES["warming_up"], STATUS_CODES["normal"]),
        )
        stepped = scored.status <= FIRST  # late and duplicate readings change nothing
        published = table["published_status"]
        candidates = stepped & (codes != published[scored.slots])
        if len(part) > 1 and candidates.any():
            # A stream with several readings in the batch: its later readings compare with
            # what its earlier ones publish, so check those in order below.
            _, which, counts = np.unique(scored.slots, return_inverse=True, return_counts=True)
            candidates |= stepped & (counts[which] > 1)
        manifest = route.pipeline.bundle.manifest
        for i in np.flatnonzero(candidates):
            slot, code = scored.slots[i], int(codes[i])
            if published[slot] == code:
                continue
            published[slot] = code
            render = partial(
                state_payload,
                stream=part.streams[i],
                status=STATUS_NAMES[code],
                since=part.ts[i],
                route=route.name,
                model=manifest.name,
                model_version=manifest.version,
                alert_id=raised_ids.get(int(i)),
            )
            self.states.put(state_topic(self.prefix, part.streams[i]), render)
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
                if self.settings.alerts.publish_state:
                    manifest = route.pipeline.bundle.manifest
                    self.states.put(
                        state_topic(self.prefix, stream),
                        partial(
                            state_payload,
                            stream=stream,
                            status="evicted",
                            since=now,
                            route=route.name,
                            model=manifest.name,
                            model_version=manifest.version,
                        ),
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
            log.info(
                "bundle reloaded",
                route=route.name,
                model=engine.bundle.name,
                version=engine.bundle.manifest.version,
                state_kept=kept,
            )
        self.counters.reloads += 1
        self.notifier.ready(self._status_line())

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
            "streams": sum(len(r.pipeline.table) for r in self.routes),
            **vars(self.counters),
            "connects": self.mqtt.counters.connects,
            "disconnects": self.mqtt.counters.disconnects,
            "inbox": len(self.mqtt.inbox),
            "states_pending": len(self.states),
            "states_superseded": self.states.superseded,
            "acked": self.mqtt.counters.acked,
            "broker_dropped": self.mqtt.counters.broker_dropped,
            "ack_stale": self.mqtt.counters.ack_stale,
            **vars(self.delivery.counters),
            "outbox_pending": len(self.delivery.outbox or ()),
            "snapshots_saved": self.durable.snapshots.saved,
            "snapshot_failures": self.durable.snapshots.failures,
            "journal_errors": self.durable.journal_errors,
        }

    def _status_line(self) -> str:
        s = self.stats()
        return (
            f"{s['streams']} streams, {s['scored']} scored, {s['raised']} alerts, "
            f"{sum(s['rejected'].values())} rejected"
        )
