"""``sensord run``: the daemon loop that ties the edges to the core.

One thread (this loop) owns all state and the MQTT socket. Each micro-batch goes one way,
one call per step (``process``): the transport (transport.py; paho in mqtt.py) hands up to
``max_batch`` readings, waiting at most ``max_delay_ms`` after the first; ingest turns them
into columns per route and applies the stream cap (ingest.py); each route scores them in its
core, and its shadow alike (routes.py); the sinks take the result (the publisher: alerts to
the outbox and MQTT through delivery.py, state changes, recording; the feedback desk; nodata
returns; timings); the batch is journaled; and only then are its readings acknowledged, in
arrival order. Between batches it pets the systemd watchdog (only while the loop and the
MQTT side both make progress), snapshots state when due (durable/), reloads bundles on
SIGHUP or when a bundle path moves (``sensord retrain`` switching ``current``), evicts idle
streams and raises nodata alarms. SIGTERM/SIGINT stop it: score what was read, publish, say
``offline``, disconnect, snapshot.

What a crash (kill -9, OOM) costs: nothing. Unacknowledged readings come again from the
broker's session (the core does not score a repeat twice), alerts come again from the
outbox, and stream state is the last snapshot with the readings journal since it replayed
(durable/journal.py). A power cut can also lose the journal's last writes unless ``journal_sync``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from sensord.cluster.counters import ClusterCounters
from sensord.config import RouteSettings, Settings
from sensord.core.nodata import NodataPolicy, returned, silent
from sensord.core.sample import FIRST, Scored
from sensord.daemon.delivery import AlertDelivery
from sensord.daemon.desk import FeedbackCounters, open_desk
from sensord.daemon.health import Health
from sensord.daemon.histogram import LoopTimings
from sensord.daemon.http import HttpEdge
from sensord.daemon.ingest import Ingest, Message, RateLimitedLog, Routed, RouteRule
from sensord.daemon.metrics import MetricsServer
from sensord.daemon.mqtt import MqttAdapter
from sensord.daemon.notify import Notifier
from sensord.daemon.publisher import Discovery, Publisher
from sensord.daemon.reorder import AckQueue, Pending, Reorder
from sensord.daemon.retained import RetainedStates
from sensord.daemon.routes import Route, ShadowView, open_route, reload_route
from sensord.daemon.stats import (
    LoopCounters,
    LoopGauges,
    daemon_stats,
    declared_figures,
    nodata_active,
    summed,
)
from sensord.daemon.transport import MqttTransport, TransportFactory
from sensord.daemon.web.app import WebApp
from sensord.daemon.web.board import Board
from sensord.durable.journal import Entry
from sensord.durable.store import SHADOW, DurableState
from sensord.logs import get_logger
from sensord.ops.recording import RecordCounters, open_recorder
from sensord.wire.homeassistant import node_id
from sensord.wire.published import feedback_filter, status_topic
from sensord.wire.topics import TopicFilter

if TYPE_CHECKING:
    from sensord.cluster.member import Member
    from sensord.core.pipeline import Pipeline

log = get_logger(__name__)
HOUSEKEEPING_S = 1.0
STATS_LOG_S = 60.0
IDLE_WAIT_S = 0.5
F64 = npt.NDArray[np.float64]


class Daemon:
    """The whole online half for one configuration."""

    def __init__(
        self,
        settings: Settings,
        notifier: Notifier | None = None,
        transport: TransportFactory = MqttAdapter,
    ) -> None:
        clustered = settings.cluster.url is not None
        self._member: Member | None = None
        if clustered:
            from sensord.daemon.clustered import (
                clustered_settings,  # in cluster mode only: nats-py is the cluster extra
            )

            settings = clustered_settings(settings)
        self.settings = settings
        self.notifier = notifier or Notifier()
        self.prefix = settings.alerts.prefix
        self.timings = LoopTimings()
        # Bundles load (hash and shapes verified) before anything connects: fail fast.
        self.routes = [self._open_route(i, r) for i, r in enumerate(settings.routes)]
        self.counters = LoopCounters()
        self.acks = AckQueue()
        mqtt = settings.mqtt
        self._broker_window = mqtt.receive_maximum if mqtt.protocol == "5" else None
        self.reorder = Reorder(
            len(self.routes),
            settings.batching.reorder_window_ms / 1000.0,
            settings.batching.reorder_gap,
        )
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
        self.mqtt: MqttTransport = transport(
            settings.mqtt,
            self.prefix,
            # in cluster mode readings come from the engine's log, not MQTT subscriptions
            [] if clustered else list(dict.fromkeys(r.settings.topic for r in self.routes)),
            read_limit=settings.batching.max_batch,
            requests=feedback_filter(self.prefix) if settings.feedback.enabled else None,
            # one member's Last Will must not say the whole cluster is offline
            status=f"{status_topic(self.prefix)}/{settings.cluster.member}" if clustered else None,
        )
        if clustered:
            self.mqtt = self._cluster_transport(self.mqtt)
        self.health = Health(
            self.mqtt.connected.is_set,
            self.mqtt.making_progress,
            engine_connected=self._member.connected.is_set if self._member else None,
        )
        self.states = RetainedStates(
            lambda topic, payload: self.mqtt.publish(topic, payload, qos=1, retain=True)
        )
        self.durable = DurableState(settings.state)
        self.delivery = AlertDelivery(
            lambda topic, payload: self.mqtt.publish(topic, payload, qos=1).mid,
            self.durable.outbox,
            ledger=self._member,
        )
        self.mqtt.on_published = self.delivery.published
        self.recorder, self.recorded = open_recorder(settings, [r.name for r in self.routes])
        ha = settings.homeassistant
        self.publisher = Publisher(
            self.prefix,
            self.delivery,
            self.states,
            publish_state=settings.alerts.publish_state,
            state_refresh_s=settings.alerts.state_refresh_s,
            recorder=self.recorder,
            recorded=self.recorded,
            discovery=Discovery(ha.discovery_prefix, node_id(settings.mqtt.client_id))
            if ha.enabled
            else None,
        )
        self.desk = open_desk(settings, self.publisher, self._reply)
        if self.desk is not None:  # feedback may name alerts raised before this start
            self.desk.remember_recorded(settings.records_dir, self.recorded)
            self.publisher.feedback_of = self.desk.shown
        self.nodata = NodataPolicy(
            settings.nodata.multiple, settings.nodata.min_silence_s, settings.nodata.min_intervals
        )
        self._stop = threading.Event()
        self._reload = threading.Event()
        self.ready = threading.Event()
        self.metrics: MetricsServer | None = None
        self.web: HttpEdge | None = None
        self.board = Board(settings.web, self.prefix) if settings.web.port is not None else None
        self.durable.restore(self._pipelines())

    def _cluster_transport(self, mqtt: MqttTransport) -> MqttTransport:
        """Readings from the partitions this member owns (daemon/clustered.py)."""
        from sensord.cluster.member import (
            Member,  # in cluster mode only: nats-py is the cluster extra
        )
        from sensord.daemon.clustered import ClusterTransport

        s = self.settings
        member = Member(s.cluster, fetch_batch=s.batching.max_batch)
        self._member = member
        return ClusterTransport(
            mqtt,
            member,
            parts=self._named_pipelines,
            match=self.ingest.match,
            in_flight=lambda: self.delivery.in_flight,
            discard_held=self.reorder.discard,
            read_limit=s.batching.max_batch,
        )

    def _named_pipelines(self) -> list[tuple[str, int, Pipeline]]:
        """(name, route index, pipeline) of every route and shadow (cluster hand-overs)."""
        named = [(r.name, i, r.pipeline) for i, r in enumerate(self.routes)]
        named += [(r.name + SHADOW, i, r.shadow) for i, r in enumerate(self.routes) if r.shadow]
        return named

    def _reply(self, topic: str, payload: bytes, correlation: bytes | None) -> None:
        if self.board is not None and correlation and self.board.answer(correlation, payload):
            return  # a verdict from the web page: the answer goes back to it
        self.mqtt.publish(topic, payload, qos=1, correlation=correlation)

    def _pipelines(self) -> list[Route | ShadowView]:
        """Every pipeline by the name its snapshot and journal entries go by."""
        shadows = [ShadowView(r.name + SHADOW, r.shadow) for r in self.routes if r.shadow]
        return [*self.routes, *shadows]

    # lifecycle

    def request_stop(self) -> None:
        self._stop.set()

    def request_reload(self) -> None:
        self._reload.set()

    def run(self) -> None:
        """Run until a stop is requested; then shut down cleanly."""
        metrics = self.settings.metrics
        if metrics.port is not None:
            self.metrics = MetricsServer(
                self.stats,
                metrics.host,
                metrics.port,
                histograms=self.timings.histograms,
                figures=declared_figures(),
                health=self.health,
            )
            log.info("metrics", url=f"http://{metrics.host}:{self.metrics.port}/metrics")
        self.start_web()
        self.mqtt.start()
        self.delivery.replay()
        self.publisher.announce_all(self.routes)
        self._bridge_info()
        next_housekeeping = next_stats = time.monotonic()
        try:
            while not self._stop.is_set():
                batch = self._collect()
                if batch:
                    self.process(batch)
                self._release_held()
                self._take_requests()
                self.states.flush()
                self.mqtt.write()  # alerts leave now, not after the next batch
                now = time.monotonic()
                if self.board is not None:
                    self.board.turn(self.routes, now)
                self.health.beat(now)
                self._announce_ready()
                if self.mqtt.making_progress(now):  # and this loop is: it is here
                    self.notifier.watchdog(now)
                if self.durable.due(now):
                    self.durable.save(self._pipelines())
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

    def start_web(self) -> None:
        """Serve the web page when ``[web] port`` is set (run() does, before connecting)."""
        web, board = self.settings.web, self.board
        if web.port is None or board is None:
            return
        board.describe(self.routes)
        app = WebApp(
            board,
            web,
            health=self.health,
            shown=self.desk.shown if self.desk is not None else None,
            max_feedback_bytes=self.settings.feedback.max_payload_bytes,
        )
        self.web = HttpEdge(app, web.host, web.port, "web")
        log.info("web page", url=f"http://{web.host}:{self.web.port}/", verdicts=web.verdicts)

    def _announce_ready(self) -> None:
        if not self.ready.is_set() and self.mqtt.ever_connected.is_set():
            self.ready.set()
            streams = sum(len(r.pipeline.table) for r in self.routes)
            self.notifier.ready(f"connected; {len(self.routes)} routes, {streams} streams")
            log.info("ready", routes=len(self.routes), streams=streams)

    def _shutdown(self) -> None:
        self.health.stopping = True
        self.notifier.stopping()
        log.info("stopping: draining, publishing, disconnecting, saving state")
        self._drain()
        self.states.flush(everything=True)  # before "offline", which paho sends after them
        self.mqtt.stop()
        self._drain()  # whatever arrived while we said goodbye is still scored and saved
        self.durable.save(self._pipelines())
        self.durable.close()
        if self.recorder is not None:
            self.recorder.close()
        if self.desk is not None:
            self.desk.close()
        if self.metrics is not None:
            self.metrics.stop()
        if self.web is not None:
            self.web.stop()
        log.info("stopped", **self.stats())

    def _drain(self) -> None:
        while self.mqtt.inbox:
            self.process(self.mqtt.take(self.settings.batching.max_batch))
        self._release_held(everything=True)  # stopping: nothing more will fill their gaps
        self._take_requests()

    # the micro-batch

    def _collect(self) -> list[Message]:
        """Up to max_batch readings; wait at most max_delay_ms after the first arrives.

        Reading the socket happens here, in this thread: while a batch is scored nothing
        is read, and TCP holds what the broker sends meanwhile.
        """
        limit = self.settings.batching.max_batch
        if not self.mqtt.inbox:
            # Idle: wake at least as often as the watchdog wants a ping, and in time to
            # release held readings whose window ends.
            wait = min(IDLE_WAIT_S, self.notifier.watchdog_interval or IDLE_WAIT_S)
            wait = min(wait, max(self.reorder.next_due() - time.monotonic(), 0.0))
            if self._broker_blocked():
                self._release_held(unblock=True)
            self.mqtt.poll(wait)
        if not self.mqtt.inbox:
            return []
        deadline = time.monotonic() + self.settings.batching.max_delay_ms / 1000.0
        while len(self.mqtt.inbox) < limit:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self.mqtt.poll(remaining)
        return self.mqtt.take(limit)

    def _broker_blocked(self) -> bool:
        """The broker will send nothing more until we acknowledge: acknowledgements go out
        in arrival order, so a held reading holds back those of every message after it,
        and with MQTT 5 the broker sends at most our Receive Maximum unacknowledged
        (measured: Mosquitto 2.0 then ignores its own max_inflight_messages). Waiting
        longer for older readings is then pointless: none can arrive. (MQTT 3.1.1 does not
        say the broker's window, so there the holds end with their window.)"""
        return self._broker_window is not None and len(self.acks) >= self._broker_window

    def process(self, batch: Sequence[Message]) -> None:
        """ingest → core → sinks → ack: score a micro-batch, hand its alerts to the outbox
        and publish them with the state changes, journal it, and only then acknowledge the
        batch's readings (rejected ones too)."""
        self.counters.batches += 1
        journal: list[Entry] = []
        arrived: list[F64] = []
        released: list[Pending] = []
        self.acks.begin(batch)
        now = time.monotonic()
        for index, (route, routed) in enumerate(
            zip(self.routes, self.ingest.route_batch(batch), strict=True)
        ):
            route.received += len(routed)
            table = route.pipeline.table
            part = self.ingest.admit(routed, route.name, table.slot_of, route.settings.max_streams)
            part, tokens = self.reorder.order(index, part, table, self.acks.hold, now)
            released += tokens
            self._score(route, part, journal, arrived)
        self._finish(journal, arrived, released, self.acks.finish())

    def _score(self, route: Route, part: Routed, journal: list[Entry], arrived: list[F64]) -> None:
        if not part:
            return
        ts, values, received = part.arrays()
        scored = route.score(part.streams, ts, values, received)
        self._sink(route, part, scored, ts, values)
        journal.append(Entry(route.name, part.streams, ts, values, received))
        arrived.append(received)

    def _finish(
        self,
        journal: list[Entry],
        arrived: list[F64],
        released: list[Pending],
        acks: list[Message],
    ) -> None:
        """Publish, journal, then acknowledge what may be (in arrival order)."""
        self.publisher.flush()
        self.durable.record(journal)
        for token in released:
            self.acks.release(token)
        self.mqtt.ack([*acks, *self.acks.ready()] if released else acks)
        if arrived:  # received → scored, published and acknowledged
            self.timings.lag_s.observe(time.time() - np.concatenate(arrived))

    def _release_held(self, everything: bool = False, unblock: bool = False) -> None:
        """Score the held readings whose window ended (all of them, at stop or to unblock
        the broker)."""
        due = self.reorder.due(time.monotonic(), everything, unblock)
        if not due:
            return
        journal: list[Entry] = []
        arrived: list[F64] = []
        released: list[Pending] = []
        for held in due:
            self._score(self.routes[held.route], held.part, journal, arrived)
            released += held.tokens
        self._finish(journal, arrived, released, [])

    def _sink(self, route: Route, part: Routed, scored: Scored, ts: F64, values: F64) -> None:
        """Everything a route's scored batch goes to: the publisher (alerts, states,
        recording), the feedback desk, nodata and the timings."""
        stepped = scored.status <= FIRST
        self.publisher.scored(route, part, scored, ts, values)
        if self.board is not None:
            self.board.scored(route, part, scored, values)
        if self.desk is not None:
            self.desk.scored(scored)
        for back in returned(route.pipeline.table, scored.slots[stepped]):
            self.publisher.data_returned(route, back, time.time())
        self.timings.scored(scored, time.time() - ts[stepped])

    def _take_requests(self) -> None:
        """Operators' feedback (over MQTT and from the web page): stored and answered, then
        acknowledged."""
        requests = self.mqtt.requests
        from_web = self.board.take_requests() if self.board is not None else []
        if not requests and not from_web:
            return
        self.mqtt.requests = []
        if self.desk is not None:
            self.desk.take([*requests, *from_web], self.routes)
            self.publisher.flush()
            if self.desk.changed_state:  # a new_normal verdict: no journal entry carries it
                self.desk.changed_state = False
                self.durable.save(self._pipelines())
        self.mqtt.ack(requests)

    # housekeeping, reload

    def _housekeeping(self) -> None:
        now = time.time()
        for route in self.routes:
            self._evict_idle(route, now)
            if self.settings.nodata.enabled and self.mqtt.connected.is_set():
                for silence in silent(
                    route.pipeline.table, self.nodata, now, self.mqtt.connected_at
                ):
                    self.publisher.nodata(route, silence, now)
            live, shadow = route.moved()
            if live or shadow:
                self._reload_route(route, live, shadow)
        self.publisher.flush()
        if self.board is not None:
            self.board.housekeeping(self.routes)
        if self.recorder is not None:
            self.recorder.maintain(now)
        self.notifier.status(self._status_line())

    def _evict_idle(self, route: Route, now: float) -> None:
        ttl = route.settings.idle_ttl_s
        if ttl is None:
            return
        for stream in route.pipeline.evict_idle(now, ttl):
            self.counters.evicted += 1
            self.publisher.evicted(route, stream, now)
        if route.shadow is not None:
            route.shadow.evict_idle(now, ttl)

    def reload(self) -> None:
        """Reload every route's bundles (SIGHUP); keep stream state where shapes match."""
        self.notifier.reloading()
        for route in self.routes:
            self._reload_route(route, True, route.settings.shadow is not None)
        self.notifier.ready(self._status_line())

    def _reload_route(self, route: Route, live: bool, shadow: bool) -> None:
        self.counters.reloads += 1
        self.counters.reload_failures += reload_route(route, live=live, shadow=shadow)
        self._bridge_info()

    def _bridge_info(self) -> None:
        """What this sensord runs, retained on ``<prefix>/bridge/info`` when it changes."""
        s = self.settings
        features = {
            "metrics": s.metrics.port is not None,
            "feedback": s.feedback.enabled,
            "record": s.record.enabled,
            "nodata": s.nodata.enabled,
            "homeassistant": s.homeassistant.enabled,
            "snapshots": s.state.snapshot,
            "reorder_window_ms": s.batching.reorder_window_ms,
            "web": s.web.port is not None,
            "web_verdicts": s.web.port is not None and s.web.verdicts,
            "cluster_member": s.cluster.member if s.cluster.url is not None else None,
        }
        self.publisher.bridge_info(self.routes, features, time.time())
        if self.board is not None:
            self.board.describe(self.routes)

    def _open_route(self, index: int, settings: RouteSettings) -> Route:
        core = self.settings.pipeline_settings(settings)
        return open_route(index, settings, core, timings=self.timings.steps)

    # what is going on

    def stats(self) -> dict[str, Any]:
        desk, recorder = self.desk, self.recorder
        parts = [
            self.mqtt.counters,
            summed(r.pipeline.counters for r in self.routes),
            self.reorder.counters,
            self.counters,
            self.publisher.counters,
            self.states.counters,
            self.delivery.counters,
            self.durable.snapshots.counters,
            self.durable.counters,
            desk.counters if desk is not None else FeedbackCounters(),
            self._member.counters if self._member is not None else ClusterCounters(),
            recorder.counters if recorder is not None else RecordCounters(),
            LoopGauges(
                streams=sum(len(r.pipeline.table) for r in self.routes),
                nodata_active=sum(nodata_active(r) for r in self.routes),
                inbox=len(self.mqtt.inbox),
                states_pending=len(self.states),
                outbox_pending=len(self.delivery.outbox or ()),
                held=len(self.reorder),
            ),
        ]
        refused = desk.refused if desk is not None else {}
        return daemon_stats(parts, self.routes, rejected=self.ingest.rejected, refused=refused)

    def _status_line(self) -> str:
        s = self.stats()
        return (
            f"{s['streams']} streams, {s['scored']} scored, {s['raised']} alerts, "
            f"{sum(s['rejected'].values())} rejected"
        )
