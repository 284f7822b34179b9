"""``sensord run``: the daemon loop, which runs the parts assembly.py built.

One thread (this loop) owns all state and the MQTT socket. Each round it turns the stages
once (stages.py: up to ``max_batch`` readings from the source, lingering while more come,
``max_delay_ms`` at most, down every stage to their acknowledgement), takes
operators' verdicts, flushes retained states and writes what is queued, so alerts leave
now rather than after the next batch. Between batches it pets the systemd watchdog (only
while the loop and the MQTT side both make progress), snapshots state when due (durable/),
reloads bundles on SIGHUP or when a bundle path moves (``sensord retrain`` switching
``current``, run by a timer or by the daemon itself: continual.py, polled each turn),
evicts idle streams and raises nodata alarms. SIGTERM/SIGINT stop it: score
what was read, publish, say ``offline``, disconnect, snapshot.

What a crash (kill -9, OOM) costs: nothing. Unacknowledged readings come again from the
broker's session (the core does not score a repeat twice), alerts come again from the
outbox, and stream state is the last snapshot with the readings journal since it replayed
(durable/journal.py). A power cut can also lose the journal's last writes unless ``journal_sync``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sensord.cluster.counters import ClusterCounters
from sensord.config import Settings
from sensord.core.nodata import silent
from sensord.daemon.assembly import assemble
from sensord.daemon.desk import FeedbackCounters
from sensord.daemon.http import HttpEdge
from sensord.daemon.metrics import MetricsServer
from sensord.daemon.mqtt import MqttAdapter
from sensord.daemon.notify import Notifier
from sensord.daemon.routes import Route, by_state_name, reload_route
from sensord.daemon.stats import LoopGauges, daemon_stats, declared_figures, nodata_active, summed
from sensord.daemon.transport import Message, TransportFactory
from sensord.daemon.web.app import WebApp
from sensord.logs import get_logger
from sensord.ops.recording import RecordCounters

log = get_logger(__name__)
HOUSEKEEPING_S = 1.0
STATS_LOG_S = 60.0
IDLE_WAIT_S = 0.5


class Daemon:
    """The whole online half for one configuration."""

    def __init__(
        self,
        settings: Settings,
        notifier: Notifier | None = None,
        transport: TransportFactory = MqttAdapter,
        config: Path | None = None,  # the file settings came from: a retrain child reads it
    ) -> None:
        # Built by assembly.py, cluster mode included; kept here under the same names.
        parts = assemble(settings, notifier or Notifier(), transport, config)
        self.settings, self.notifier = parts.settings, parts.notifier
        self.routes, self.stages = parts.routes, parts.stages
        self.mqtt, self.source, self.member = parts.mqtt, parts.source, parts.member
        self.publisher, self.states, self.delivery = parts.publisher, parts.states, parts.delivery
        self.durable, self.recorder = parts.durable, parts.recorder
        self.desk, self.board, self.health = parts.desk, parts.board, parts.health
        self.counters, self.timings, self.nodata = parts.counters, parts.timings, parts.nodata
        self.continual = parts.continual
        self._stop = threading.Event()
        self._reload = threading.Event()
        self.ready = threading.Event()
        self.metrics: MetricsServer | None = None
        self.web: HttpEdge | None = None

    def process(self, batch: Sequence[Message]) -> None:
        """Score one micro-batch down every stage now (tests and benchmarks drive it so)."""
        self.stages.process(batch)

    # lifecycle

    def request_stop(self) -> None:
        self._stop.set()

    def request_reload(self) -> None:
        self._reload.set()

    def run(self) -> None:
        """Run until a stop is requested; then shut down cleanly."""
        self._start()
        next_housekeeping = next_stats = time.monotonic()
        try:
            while not self._stop.is_set():
                self.stages.turn(self._idle_wait())
                self._take_requests()
                self.states.flush()
                self.mqtt.write()  # alerts leave now, not after the next batch
                now = time.monotonic()
                self._after_turn(now)
                if now >= next_housekeeping:
                    next_housekeeping = now + HOUSEKEEPING_S
                    self._housekeeping()
                if now >= next_stats:
                    next_stats = now + STATS_LOG_S
                    log.info("stats", **self.stats())
        finally:
            self._shutdown()

    def _start(self) -> None:
        """Serve metrics and the web page, connect, publish what the outbox holds and what
        this sensord runs."""
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
        self.source.start()
        self.delivery.replay()
        self.publisher.announce_all(self.routes)
        self._bridge_info()

    def _idle_wait(self) -> float:
        """The longest an idle round may wait: at least as often as the watchdog wants a
        ping."""
        return min(IDLE_WAIT_S, self.notifier.watchdog_interval or IDLE_WAIT_S)

    def _after_turn(self, now: float) -> None:
        if self.board is not None:
            self.board.turn(self.routes, now)
        self.health.beat(now)
        self._announce_ready()
        if self.source.link.making_progress(now):  # and this loop is: it is here
            self.notifier.watchdog(now)
        if self.durable.due(now):
            self.durable.save(by_state_name(self.routes))
        if self.continual is not None:
            self.continual.poll()  # never waits: the retrain child runs on its own
        if self._reload.is_set():
            self._reload.clear()
            self.reload()

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
        if not self.ready.is_set() and self.source.link.ever_connected.is_set():
            self.ready.set()
            streams = sum(len(r.pipeline.table) for r in self.routes)
            self.notifier.ready(f"connected; {len(self.routes)} routes, {streams} streams")
            log.info("ready", routes=len(self.routes), streams=streams)

    def _shutdown(self) -> None:
        self.health.stopping = True
        self.notifier.stopping()
        log.info("stopping: draining, publishing, disconnecting, saving state")
        if self.continual is not None:
            self.continual.stop()  # a retrain child must not promote behind a stopped daemon
        self._drain()
        self.states.flush(everything=True)  # before "offline", which paho sends after them
        self.source.stop()
        self._drain()  # whatever arrived while we said goodbye is still scored and saved
        self.durable.save(by_state_name(self.routes))
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
        while self.source.waiting():
            self.stages.process(self.source.take(self.settings.batching.max_batch))
        self.stages.release(everything=True)  # stopping: nothing more will fill their gaps
        self._take_requests()

    def _take_requests(self) -> None:
        """Operators' feedback (over MQTT and from the web page): stored and answered, then
        acknowledged."""
        requests = self.source.take_requests()
        from_web = self.board.take_requests() if self.board is not None else []
        if not requests and not from_web:
            return
        if self.desk is not None:
            self.desk.take([*requests, *from_web], self.routes)
            self.publisher.flush()
            if self.desk.changed_state:  # a new_normal verdict: no journal entry carries it
                self.desk.changed_state = False
                self.durable.save(by_state_name(self.routes))
        self.source.ack(requests)

    # housekeeping, reload

    def _housekeeping(self) -> None:
        now, link = time.time(), self.source.link
        for route in self.routes:
            self._evict_idle(route, now)
            if self.settings.nodata.enabled and link.connected.is_set():
                for silence in silent(route.pipeline.table, self.nodata, now, link.connected_at):
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

    # what is going on

    def stats(self) -> dict[str, Any]:
        desk, recorder, member, stages = self.desk, self.recorder, self.member, self.stages
        parts = [
            self.source.link.counters,
            summed(r.pipeline.counters for r in self.routes),
            stages.reorder.counters,
            self.counters,
            self.publisher.counters,
            self.states.counters,
            self.delivery.counters,
            self.durable.snapshots.counters,
            self.durable.counters,
            desk.counters if desk is not None else FeedbackCounters(),
            member.counters if member is not None else ClusterCounters(),
            recorder.counters if recorder is not None else RecordCounters(),
            LoopGauges(
                streams=sum(len(r.pipeline.table) for r in self.routes),
                nodata_active=sum(nodata_active(r) for r in self.routes),
                inbox=self.source.waiting(),
                states_pending=len(self.states),
                outbox_pending=len(self.delivery.outbox or ()),
                held=len(stages.reorder),
            ),
        ]
        refused = desk.refused if desk is not None else {}
        stats = daemon_stats(parts, self.routes, rejected=stages.ingest.rejected, refused=refused)
        stats["retrains"] = self.continual.figures() if self.continual is not None else {}
        return stats

    def _status_line(self) -> str:
        s = self.stats()
        return (
            f"{s['streams']} streams, {s['scored']} scored, {s['raised']} alerts, "
            f"{sum(s['rejected'].values())} rejected"
        )
