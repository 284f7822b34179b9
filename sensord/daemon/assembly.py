"""The daemon's parts, built from the settings and handed to the loop (which only runs them).

Bundles load (hash and shapes verified) before anything connects: a bad bundle fails the
start. The transport is one broker connection, the readings' source and the messages'
outlet at once; in cluster mode (``[cluster] url``) the settings change as clustered.py
says, a cluster member is made, and readings come from its partitions (``ClusterSource``)
while alerts and states still go out over MQTT. nats-py, the cluster extra, is imported
only then.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from sensord.config import MqttSettings, Settings
from sensord.core.nodata import NodataPolicy
from sensord.daemon.continual import Continual, open_continual
from sensord.daemon.delivery import AlertDelivery, RetainedStates, packet_ids
from sensord.daemon.desk import FeedbackDesk, open_desk
from sensord.daemon.discovery import Discovery
from sensord.daemon.health import Health
from sensord.daemon.histogram import LoopTimings
from sensord.daemon.ingest import Ingest, RouteRule
from sensord.daemon.notify import Notifier
from sensord.daemon.publisher import Publisher
from sensord.daemon.reorder import Reorder
from sensord.daemon.routes import Route, by_state_name, named_pipelines, open_route
from sensord.daemon.stages import Sinks, Stages
from sensord.daemon.stats import LoopCounters
from sensord.daemon.transport import Outlet, Source, Transport, TransportFactory, TransportOptions
from sensord.daemon.web.board import Board
from sensord.durable.store import DurableState
from sensord.logs import RateLimitedLog
from sensord.ops.recording import Recorder, open_recorder
from sensord.wire.homeassistant import node_id
from sensord.wire.published import feedback_filter, status_topic
from sensord.wire.topics import TopicFilter

if TYPE_CHECKING:
    from sensord.cluster.member import Member


@dataclass
class Components:
    """What the loop runs (loop.py keeps each as an attribute of the same name)."""

    settings: Settings  # as the mode made them (cluster mode changes some)
    notifier: Notifier
    routes: list[Route]
    timings: LoopTimings
    counters: LoopCounters
    mqtt: Transport  # the broker connection: the outlet, and in one daemon the source
    source: Source
    member: Member | None  # cluster mode's engine side
    stages: Stages
    publisher: Publisher
    states: RetainedStates
    delivery: AlertDelivery
    durable: DurableState
    desk: FeedbackDesk | None
    recorder: Recorder | None
    board: Board | None
    health: Health
    nodata: NodataPolicy
    continual: Continual | None  # retraining in the daemon ([retrain] continual)


@dataclass
class _Outgoing:
    """The parts between the scored readings and the outlet."""

    durable: DurableState
    delivery: AlertDelivery
    states: RetainedStates
    publisher: Publisher
    recorder: Recorder | None
    board: Board | None
    desk: FeedbackDesk | None


def assemble(
    settings: Settings, notifier: Notifier, transport: TransportFactory, config: Path | None = None
) -> Components:
    """Every part of the daemon for these settings (from ``config``), wired; state restored."""
    clustered = settings.cluster.url is not None
    if clustered:
        from sensord.daemon.clustered import clustered_settings  # nats-py: the cluster extra

        settings = clustered_settings(settings)
    timings, counters = LoopTimings(), LoopCounters()
    routes = [
        open_route(i, r, settings.pipeline_settings(r), timings=timings.steps)
        for i, r in enumerate(settings.routes)
    ]
    member = _member(settings) if clustered else None
    mqtt = transport(settings.mqtt, transport_options(settings, routes, member))
    out = _outgoing(settings, routes, mqtt, member)
    ingest, reorder = _ingest(settings, routes), _reorder(settings, routes)
    source: Source = mqtt
    if member is not None:
        source = _cluster_source(
            settings, routes, mqtt, member, ingest=ingest, reorder=reorder, delivery=out.delivery
        )
    stages = Stages(
        source,
        routes,
        ingest=ingest,
        reorder=reorder,
        sinks=Sinks(out.publisher, timings, out.board, out.desk),
        durable=out.durable,
        counters=counters,
        max_batch=settings.batching.max_batch,
        max_delay_s=settings.batching.max_delay_ms / 1000.0,
        broker_window=_broker_window(settings.mqtt),
    )
    out.durable.restore(by_state_name(routes))
    return Components(
        settings=settings,
        notifier=notifier,
        routes=routes,
        timings=timings,
        counters=counters,
        mqtt=mqtt,
        source=source,
        member=member,
        stages=stages,
        publisher=out.publisher,
        states=out.states,
        delivery=out.delivery,
        durable=out.durable,
        desk=out.desk,
        recorder=out.recorder,
        board=out.board,
        health=_health(source, member),
        nodata=_nodata(settings),
        continual=open_continual(settings, routes, out.publisher.recorded, config),
    )


def transport_options(
    settings: Settings, routes: list[Route], member: Member | None
) -> TransportOptions:
    """What the broker connection subscribes to and says."""
    prefix = settings.alerts.prefix
    if member is not None:
        # readings come from the engine's log, not MQTT subscriptions; one member's Last
        # Will must not say the whole cluster is offline
        filters: tuple[str, ...] = ()
        status: str | None = f"{status_topic(prefix)}/{settings.cluster.member}"
    else:
        filters, status = tuple(dict.fromkeys(r.settings.topic for r in routes)), None
    return TransportOptions(
        prefix,
        filters,
        requests=feedback_filter(prefix) if settings.feedback.enabled else None,
        status=status,
        read_limit=settings.batching.max_batch,
        wake=member.wake_fd if member is not None else None,  # readings from the engine
    )


def _outgoing(
    settings: Settings, routes: list[Route], mqtt: Transport, member: Member | None
) -> _Outgoing:
    """Publishing, delivery, the durable state and the feedback desk."""
    durable = DurableState(settings.state)
    delivery = AlertDelivery(packet_ids(mqtt), durable.outbox, ledger=member)
    mqtt.on_published(delivery.published)  # PUBACKs release alerts from the outbox
    states = RetainedStates(partial(mqtt.publish, retain=True))
    recorder, recorded = open_recorder(settings, [r.name for r in routes])
    ha = settings.homeassistant
    publisher = Publisher(
        settings.alerts.prefix,
        delivery,
        states,
        publish_state=settings.alerts.publish_state,
        state_refresh_s=settings.alerts.state_refresh_s,
        recorder=recorder,
        recorded=recorded,
        discovery=Discovery(ha.discovery_prefix, node_id(settings.mqtt.client_id))
        if ha.enabled
        else None,
    )
    publisher.keep_columns(routes)  # before the state is restored: its columns are in it
    board = Board(settings.web, settings.alerts.prefix) if settings.web.port is not None else None
    desk = open_desk(settings, publisher, partial(_reply, board, mqtt))
    if desk is not None:  # feedback may name alerts raised before this start
        desk.remember_recorded(settings.records_dir, recorded)
        publisher.feedback_of = desk.shown
    return _Outgoing(durable, delivery, states, publisher, recorder, board, desk)


def _reply(
    board: Board | None, outlet: Outlet, topic: str, payload: bytes, correlation: bytes | None
) -> None:
    """The feedback desk's answer: to the web page if the verdict came from it, else MQTT."""
    if board is not None and correlation and board.answer(correlation, payload):
        return
    outlet.publish(topic, payload, correlation=correlation)


def _ingest(settings: Settings, routes: list[Route]) -> Ingest:
    return Ingest(
        rules=[
            RouteRule(
                TopicFilter(r.settings.topic), r.settings.stream, r.settings.format, r.features
            )
            for r in routes
        ],
        max_payload_bytes=settings.limits.max_payload_bytes,
        limiter=RateLimitedLog(settings.limits.log_interval_s),
    )


def _reorder(settings: Settings, routes: list[Route]) -> Reorder:
    batching = settings.batching
    return Reorder(len(routes), batching.reorder_window_ms / 1000.0, batching.reorder_gap)


def _broker_window(mqtt: MqttSettings) -> int | None:
    """How many readings the broker sends unacknowledged: MQTT 5 says (Receive Maximum),
    3.1.1 does not."""
    return mqtt.receive_maximum if mqtt.protocol == "5" else None


def _health(source: Source, member: Member | None) -> Health:
    return Health(
        source.link.connected.is_set,
        source.link.making_progress,
        engine_connected=member.connected.is_set if member is not None else None,
    )


def _nodata(settings: Settings) -> NodataPolicy:
    nodata = settings.nodata
    return NodataPolicy(nodata.multiple, nodata.min_silence_s, nodata.min_intervals)


def _member(settings: Settings) -> Member:
    from sensord.cluster.member import Member  # in cluster mode only: nats-py

    return Member(settings.cluster, fetch_batch=settings.batching.max_batch)


def _cluster_source(
    settings: Settings,
    routes: list[Route],
    mqtt: Transport,
    member: Member,
    *,
    ingest: Ingest,
    reorder: Reorder,
    delivery: AlertDelivery,
) -> Source:
    """Readings from the partitions this member owns (clustered.py)."""
    from sensord.daemon.clustered import ClusterSource

    return ClusterSource(
        mqtt,
        member,
        parts=partial(named_pipelines, routes),
        match=ingest.match,
        in_flight=lambda: delivery.in_flight,
        discard_held=reorder.discard,
        read_limit=settings.batching.max_batch,
    )
