"""The metrics edge: the daemon's counters for Prometheus, at ``http://HOST:PORT/metrics``.

Nothing is counted twice: a collector reads the daemon's own counters when Prometheus
scrapes, so the scoring loop pays nothing for metrics. Every reading the daemon did not
score is in one of these families, by reason: rejected (bad payloads, unsafe stream ids, the
stream cap), duplicate or late. sensord itself never drops a reading for overload: it stops
reading the socket while it scores, and the broker keeps the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from sensord.errors import ConfigError
from sensord.histogram import Histogram

Stats = Callable[[], Mapping[str, Any]]
Histograms = Callable[[], Mapping[str, Histogram]]

# Per route (label ``route``): (stats key, metric name, help).
ROUTE_COUNTERS = (
    ("received", "sensord_route_readings_received", "Readings routed here."),
    ("scored", "sensord_route_readings_scored", "Readings of this route scored."),
    ("raised", "sensord_route_alerts_raised", "Alerts raised on this route."),
    ("updated", "sensord_route_alerts_updated", "New onsets inside alerts of this route."),
    ("cleared", "sensord_route_alerts_cleared", "Alerts cleared on this route."),
)
ROUTE_GAUGES = (
    ("streams", "sensord_route_streams", "Active streams of this route."),
    ("nodata_active", "sensord_route_nodata_active", "Silent streams of this route."),
)
# Histograms (key in the daemon's timings, metric name, help).
HISTOGRAMS = (
    ("wave_size", "sensord_wave_size", "Readings per batched engine step (wave)."),
    ("step_s", "sensord_step_seconds", "Time of one batched LSTM step in onnxruntime."),
    ("lag_s", "sensord_lag_seconds", "Routed reading received to scored, published, acknowledged."),
    (
        "age_s",
        "sensord_reading_age_seconds",
        "Reading's own timestamp to scored (includes the sensor's clock offset).",
    ),
)

# (stats key, metric name, help): monotonic counts of the daemon's life.
COUNTERS = (
    ("received", "sensord_readings_received", "Readings taken off MQTT."),
    ("scored", "sensord_readings_scored", "Readings compared with a prediction and scored."),
    (
        "first",
        "sensord_readings_first",
        "First readings of new or reset streams (stepped, nothing to compare with).",
    ),
    (
        "duplicate",
        "sensord_readings_duplicate",
        "Readings dropped: same timestamp as the stream's last.",
    ),
    ("late", "sensord_readings_late", "Readings dropped: older than the stream's last."),
    ("raised", "sensord_alerts_raised", "Alerts raised."),
    ("updated", "sensord_alerts_updated", "New onsets inside alerts (updated events)."),
    ("cleared", "sensord_alerts_cleared", "Alerts cleared."),
    ("alerts_published", "sensord_alert_messages_published", "Alert messages handed to MQTT."),
    ("resets", "sensord_stream_resets", "Streams reset after a gap longer than max_gap_s."),
    ("evicted", "sensord_streams_evicted", "Streams forgotten after idle_ttl_s."),
    ("batches", "sensord_batches", "Micro-batches scored."),
    (
        "states_superseded",
        "sensord_states_superseded",
        "Retained stream states replaced by a newer one before the broker could take them.",
    ),
    ("connects", "sensord_mqtt_connects", "Connections to the broker."),
    ("disconnects", "sensord_mqtt_disconnects", "Connections to the broker lost or closed."),
    (
        "acked",
        "sensord_readings_acknowledged",
        "Readings acknowledged to the broker after scoring.",
    ),
    (
        "ack_stale",
        "sensord_readings_redelivery_expected",
        "Readings scored after their connection was lost: not acknowledged, sent again.",
    ),
    ("alerts_delivered", "sensord_alerts_delivered", "Alerts the broker acknowledged (PUBACK)."),
    ("alerts_refused", "sensord_alerts_refused", "Alerts the broker refused (PUBACK failure)."),
    ("alerts_replayed", "sensord_alerts_replayed", "Alerts published again from the outbox."),
    ("outbox_errors", "sensord_outbox_errors", "Alert batches the outbox could not write."),
    ("journal_errors", "sensord_journal_errors", "Batches the readings journal could not write."),
    ("snapshots_saved", "sensord_snapshots_saved", "Route state snapshots written."),
    ("snapshot_failures", "sensord_snapshot_failures", "Route state snapshots that failed."),
    ("reconnects", "sensord_mqtt_reconnects", "Connections to the broker after the first."),
    ("nodata_raised", "sensord_nodata_raised", "Streams that fell silent (nodata raised)."),
    ("nodata_cleared", "sensord_nodata_cleared", "Silent streams that sent again (cleared)."),
    ("feedback_accepted", "sensord_feedback_accepted", "Operator verdicts taken and stored."),
    ("discovery_published", "sensord_discovery_published", "Home Assistant configs sent."),
    ("recorded_rows", "sensord_recorded_rows", "Readings recorded for retraining."),
    ("record_errors", "sensord_record_errors", "Recording writes that failed."),
    ("reloads", "sensord_reloads", "Route reloads (SIGHUP, or its bundle path moved)."),
    ("reload_failures", "sensord_reload_failures", "Route bundles that failed to reload."),
)
GAUGES = (
    ("streams", "sensord_streams", "Streams with state in memory."),
    ("nodata_active", "sensord_nodata_active", "Streams silent now (nodata raised)."),
    ("inbox", "sensord_inbox_readings", "Readings read off MQTT, waiting for their batch."),
    ("states_pending", "sensord_states_pending", "Retained stream states waiting to be sent."),
    ("outbox_pending", "sensord_outbox_pending", "Alerts in the outbox awaiting PUBACK."),
    (
        "broker_dropped",
        "sensord_broker_dropped_messages",
        "Messages the broker dropped, all clients (Mosquitto's $SYS count; QoS 0 overload "
        "or full queues); -1 until the broker reports it.",
    ),
)


class DaemonCollector(Collector):
    """Turns the daemon's ``stats()`` into Prometheus metric families at scrape time."""

    def __init__(self, stats: Stats, histograms: Histograms | None = None) -> None:
        self._stats = stats
        self._histograms = histograms

    def collect(self) -> Iterator[Metric]:
        stats = self._stats()
        yield from self._totals(stats)
        yield from _by_route(stats.get("routes", {}))
        if self._histograms is not None:
            yield from _histograms(self._histograms())

    def _totals(self, stats: Mapping[str, Any]) -> Iterator[Metric]:
        for key, name, help_text in COUNTERS:
            yield CounterMetricFamily(name, help_text, value=stats.get(key, 0))
        rejected = CounterMetricFamily(
            "sensord_readings_rejected", "Readings rejected, by reason.", labels=["reason"]
        )
        for reason, count in sorted(stats.get("rejected", {}).items()):
            rejected.add_metric([reason], count)
        yield rejected
        refused = CounterMetricFamily(
            "sensord_feedback_refused", "Operator feedback refused, by reason.", labels=["reason"]
        )
        for reason, count in sorted(stats.get("feedback_refused", {}).items()):
            refused.add_metric([reason], count)
        yield refused
        for key, name, help_text in GAUGES:
            yield GaugeMetricFamily(name, help_text, value=stats.get(key, 0))


def _by_route(routes: Mapping[str, Mapping[str, Any]]) -> Iterator[Metric]:
    for key, name, help_text in ROUTE_COUNTERS:
        family = CounterMetricFamily(name, help_text, labels=["route"])
        for route, figures in sorted(routes.items()):
            family.add_metric([route], figures[key])
        yield family
    for key, name, help_text in ROUTE_GAUGES:
        gauge = GaugeMetricFamily(name, help_text, labels=["route"])
        for route, figures in sorted(routes.items()):
            gauge.add_metric([route], figures[key])
        yield gauge
    yield from _models(routes)


def _models(routes: Mapping[str, Mapping[str, Any]]) -> Iterator[Metric]:
    """The live and the shadow model of each route side by side (label ``role``)."""
    labels = ["route", "role", "model", "version"]
    scored = CounterMetricFamily(
        "sensord_model_readings_scored", "Readings a model scored, live or shadow.", labels=labels
    )
    raised = CounterMetricFamily(
        "sensord_model_alerts_raised",
        "Alerts a model raised (a shadow's are counted, not published).",
        labels=labels,
    )
    error = GaugeMetricFamily(
        "sensord_model_mean_abs_error",
        "Mean absolute prediction error in the sensor's units, since the model was loaded.",
        labels=labels,
    )
    for route, figures in sorted(routes.items()):
        for role in ("live", "shadow"):
            model = figures.get(role)
            if model is None:
                continue
            key = [route, role, model["model"], model["version"]]
            scored.add_metric(key, model["scored"])
            raised.add_metric(key, model["raised"])
            mae = model["mean_abs_error"]
            error.add_metric(key, mae if mae is not None else float("nan"))
    yield from (scored, raised, error)


def _histograms(histograms: Mapping[str, Histogram]) -> Iterator[Metric]:
    for key, name, help_text in HISTOGRAMS:
        histogram = histograms.get(key)
        if histogram is None:
            continue
        yield HistogramMetricFamily(
            name, help_text, buckets=histogram.cumulative(), sum_value=histogram.sum
        )


class MetricsServer:
    """An HTTP endpoint serving one daemon's metrics."""

    def __init__(
        self, stats: Stats, host: str, port: int, histograms: Histograms | None = None
    ) -> None:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(DaemonCollector(stats, histograms))
        try:
            self._server, self._thread = start_http_server(port, addr=host, registry=registry)
        except OSError as exc:
            raise ConfigError(f"metrics: cannot listen on {host}:{port} ({exc.strerror})") from None
        server: WSGIServer = self._server
        self.port: int = server.server_port

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
