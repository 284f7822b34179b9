"""The metrics edge: the daemon's counters for Prometheus, at ``http://HOST:PORT/metrics``
(and its health at ``/healthz`` on the same port).

Nothing is counted twice: a collector reads the daemon's own counters when Prometheus
scrapes, so the scoring loop pays nothing for metrics. Every reading the daemon did not
score is in one of these families, by reason: rejected (bad payloads, unsafe stream ids, the
stream cap), duplicate or late. sensord itself never drops a reading for overload: it stops
reading the socket while it scores, and the broker keeps the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from sensord.daemon.health import Health
from sensord.daemon.histogram import Histogram
from sensord.daemon.http import HttpEdge, edge_app
from sensord.daemon.retrainchild import OUTCOMES
from sensord.figures import Declared

Stats = Callable[[], Mapping[str, Any]]
Histograms = Callable[[], Mapping[str, Histogram]]

# Figures also exported per route (label ``route``): ``sensord_route_*`` beside the total.
PER_ROUTE = ("received", "scored", "raised", "updated", "cleared", "streams", "nodata_active")
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


class DaemonCollector(Collector):
    """Turns the daemon's ``stats()`` into Prometheus metric families at scrape time: one
    family per declared figure (``sensord.figures``), named where it is declared."""

    def __init__(
        self,
        stats: Stats,
        histograms: Histograms | None = None,
        figures: Sequence[Declared] = (),
    ) -> None:
        self._stats = stats
        self._histograms = histograms
        self._figures = figures

    def collect(self) -> Iterator[Metric]:
        stats = self._stats()
        yield from self._totals(stats)
        yield from _by_route(self._figures, stats.get("routes", {}))
        yield from _retrains(stats.get("routes", {}), stats.get("retrains", {}))
        if self._histograms is not None:
            yield from _histograms(self._histograms())

    def _totals(self, stats: Mapping[str, Any]) -> Iterator[Metric]:
        for figure in self._figures:
            family = CounterMetricFamily if figure.kind == "counter" else GaugeMetricFamily
            value = stats.get(figure.key, 0)
            # None: not known yet (the broker's own count); no sample rather than a sentinel
            yield (
                family(figure.metric, figure.help, value=value)
                if value is not None
                else (family(figure.metric, figure.help))
            )
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


def _by_route(
    declared: Sequence[Declared], routes: Mapping[str, Mapping[str, Any]]
) -> Iterator[Metric]:
    for figure in declared:
        if figure.key not in PER_ROUTE:
            continue
        name = "sensord_route_" + figure.metric.removeprefix("sensord_")
        kind = CounterMetricFamily if figure.kind == "counter" else GaugeMetricFamily
        family = kind(name, f"{figure.help} Per route.", labels=["route"])
        for route, figures in sorted(routes.items()):
            family.add_metric([route], figures[figure.key])
        yield family
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


def _retrains(
    routes: Mapping[str, object], retrains: Mapping[str, Mapping[str, Any]]
) -> Iterator[Metric]:
    """Continual retraining (daemon/continual.py) per route: every route, at zero where it
    has none, so that a rate is defined before the first attempt."""
    attempts = CounterMetricFamily(
        "sensord_retrains",
        "Continual retraining attempts, by outcome (promoted, refused, skipped, failed).",
        labels=["route", "outcome"],
    )
    cpu = CounterMetricFamily(
        "sensord_retrain_cpu_seconds",
        "CPU seconds (user + system) the retrain child processes used.",
        labels=["route"],
    )
    running = GaugeMetricFamily(
        "sensord_retrain_running", "1 while a retrain child runs for the route.", labels=["route"]
    )
    for route in sorted(routes):
        figures = retrains.get(route, {})
        for outcome in OUTCOMES:
            attempts.add_metric([route, outcome], figures.get(outcome, 0))
        cpu.add_metric([route], figures.get("cpu_s", 0.0))
        running.add_metric([route], figures.get("running", 0))
    yield from (attempts, cpu, running)


def _histograms(histograms: Mapping[str, Histogram]) -> Iterator[Metric]:
    for key, name, help_text in HISTOGRAMS:
        histogram = histograms.get(key)
        if histogram is None:
            continue
        yield HistogramMetricFamily(
            name, help_text, buckets=histogram.cumulative(), sum_value=histogram.sum
        )


class MetricsServer:
    """The metrics port: ``/metrics`` for Prometheus and ``/healthz`` (daemon/http.py)."""

    def __init__(
        self,
        stats: Stats,
        host: str,
        port: int,
        *,
        histograms: Histograms | None = None,
        figures: Sequence[Declared] = (),
        health: Health | None = None,
    ) -> None:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(DaemonCollector(stats, histograms, figures))
        self._edge = HttpEdge(edge_app(registry, health), host, port, "metrics")
        self.port: int = self._edge.port

    def stop(self) -> None:
        self._edge.stop()
