"""The Grafana dashboard (deploy/grafana/sensord.json) against what sensord really exports.

The exported names come from ``sensord.daemon.metrics.DaemonCollector`` itself, fed a realistic
``stats()`` and the four histograms, so a renamed metric breaks a panel's query here rather
than on an operator's screen, and a new metric with no panel fails until it gets one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sensord.daemon.histogram import Histogram, exponential
from sensord.daemon.metrics import HISTOGRAMS, DaemonCollector
from sensord.daemon.stats import declared_figures

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "sensord.json"

# Exported families that need no panel, each with its reason. Keep it short: every family
# sensord exports is something an operator may have to look at.
WITHOUT_PANEL: frozenset[str] = frozenset(
    # (none today: every family has a panel. Add "name",  # reason  -- here, never silently.)
)

# A metric name as PromQL spells it: not part of a longer identifier.
METRIC = re.compile(r"(?<![A-Za-z0-9_:])sensord_[A-Za-z0-9_:]*")
# A metric name with its label matchers, if any.
SELECTOR = re.compile(r"(?<![A-Za-z0-9_:])(sensord_[A-Za-z0-9_:]*)\s*(\{[^}]*\})?")
RANGE = re.compile(r"\[([^\]]*)\]")
ROUTE_LABELLED = ("sensord_route_", "sensord_model_")


def _model(name: str, version: str, scored: int, raised: int, mae: float) -> dict[str, Any]:
    """A model's figures as ``ModelFigures.summary`` gives them (None until it scored)."""
    return {
        "model": name,
        "version": version,
        "scored": scored,
        "raised": raised,
        "mean_abs_error": mae if scored else None,
        "alert_rate": round(1000 * raised / scored, 3) if scored else None,
    }


def _stats() -> dict[str, Any]:
    """A daemon's ``stats()``, shaped as ``sensord.daemon.stats.daemon_stats`` makes it."""
    route = {
        "received": 1200,
        "scored": 1150,
        "first": 30,
        "duplicate": 5,
        "late": 2,
        "raised": 4,
        "cleared": 3,
        "updated": 1,
        "streams": 30,
        "nodata_active": 1,
        "live": _model("boiler", "3", 1150, 4, 0.42),
        "shadow": _model("boiler", "4", 1150, 6, 0.37),
    }
    return {
        "received": 1210,
        "scored": 1150,
        "first": 30,
        "duplicate": 5,
        "late": 2,
        "raised": 4,
        "cleared": 3,
        "updated": 1,
        "alerts_published": 7,
        "resets": 1,
        "evicted": 2,
        "batches": 90,
        "rejected": {"bad_payload": 6, "unsafe_stream_id": 2, "stream_cap": 2},
        "streams": 30,
        "nodata_active": 1,
        "nodata_raised": 2,
        "nodata_cleared": 1,
        "connects": 2,
        "reconnects": 1,
        "disconnects": 1,
        "inbox": 12,
        "states_pending": 3,
        "states_superseded": 1,
        "acked": 1140,
        "broker_dropped": 0,
        "ack_stale": 10,
        "alerts_delivered": 6,
        "alerts_refused": 0,
        "alerts_replayed": 1,
        "outbox_errors": 0,
        "outbox_pending": 1,
        "snapshots_saved": 4,
        "snapshot_failures": 0,
        "journal_errors": 0,
        "feedback_accepted": 3,
        "feedback_refused": {"unknown_alert": 1, "bad_verdict": 1},
        "discovery_published": 30,
        "recorded_rows": 1150,
        "record_errors": 0,
        "reloads": 1,
        "reload_failures": 0,
        "routes": {
            "boiler": route,
            # A route without a shadow, whose model has scored nothing yet.
            "pumps": {
                **route,
                "scored": 0,
                "live": _model("pumps", "1", 0, 0, 0.0),
                "shadow": None,
            },
        },
    }


def _histograms() -> dict[str, Histogram]:
    histograms = {}
    for key, _, _ in HISTOGRAMS:
        histogram = Histogram(exponential(0.001, 2.0, 12))
        histogram.observe([0.002, 0.01, 0.3, 5.0])
        histograms[key] = histogram
    return histograms


@pytest.fixture(scope="module")
def exported() -> dict[str, str]:
    """Every series name sensord exposes (``_total``, ``_bucket``, ...) -> its family."""
    families = list(DaemonCollector(_stats, _histograms, declared_figures()).collect())
    assert families, "the collector exported nothing"
    suffixes = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}
    series: dict[str, str] = {}
    for family in families:
        assert family.samples, f"{family.name}: no samples; make the fake stats() cover it"
        for suffix in suffixes[family.type]:
            series[family.name + suffix] = family.name
        for sample in family.samples:  # what the exposition really says
            assert series.get(sample.name) == family.name, sample.name
    return series


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, including those inside (collapsed) rows."""
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def _targets(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """``(panel title, expr)`` for every query target of every panel."""
    for panel in _panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            yield panel.get("title", "?"), target.get("expr", "")


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def test_it_is_an_importable_dashboard(dashboard: dict[str, Any]) -> None:
    assert dashboard["schemaVersion"] >= 39
    assert dashboard["title"] and dashboard["uid"]
    inputs = {item["name"]: item for item in dashboard["__inputs"]}
    assert inputs["DS_PROMETHEUS"]["type"] == "datasource"
    assert inputs["DS_PROMETHEUS"]["pluginId"] == "prometheus"
    for panel in _panels(dashboard["panels"]):
        assert "gridPos" in panel, panel.get("title")
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
            assert panel["targets"], f"{panel['title']}: no query"
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]


def test_panel_ids_are_unique(dashboard: dict[str, Any]) -> None:
    ids = [panel["id"] for panel in _panels(dashboard["panels"])]
    assert all(isinstance(i, int) for i in ids)
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)


def test_panels_do_not_overlap(dashboard: dict[str, Any]) -> None:
    taken: dict[tuple[int, int], str] = {}
    for panel in dashboard["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in taken, f"{panel['title']} overlaps {taken[(x, y)]}"
                taken[(x, y)] = panel["title"]


def test_the_template_variables(dashboard: dict[str, Any], exported: dict[str, str]) -> None:
    variables = {var["name"]: var for var in dashboard["templating"]["list"]}
    assert variables["instance"]["definition"] == "label_values(sensord_streams, instance)"
    route = variables["route"]
    assert route["definition"] == (
        'label_values(sensord_route_streams{instance=~"$instance"}, route)'
    )
    assert route["multi"] and route["includeAll"]
    for var in variables.values():
        assert var["query"]["query"] == var["definition"]
        for name in METRIC.findall(var["definition"]):
            assert name in exported, f"variable {var['name']}: {name} is not exported"


def test_every_query_names_only_exported_metrics(
    dashboard: dict[str, Any], exported: dict[str, str]
) -> None:
    wrong = []
    for title, expr in _targets(dashboard):
        names = METRIC.findall(expr)
        assert names, f"{title}: {expr!r} names no sensord metric"
        wrong += [f"{title}: {name}" for name in names if name not in exported]
    assert not wrong, "not exported by sensord.daemon.metrics:\n" + "\n".join(wrong)


def test_every_query_is_well_formed_and_filtered(dashboard: dict[str, Any]) -> None:
    for title, expr in _targets(dashboard):
        for opening, closing in ("()", "{}", "[]"):
            assert expr.count(opening) == expr.count(closing), f"{title}: {expr}"
        for window in RANGE.findall(expr):
            assert window == "$__rate_interval", f"{title}: [{window}] in {expr}"
        for name, matchers in SELECTOR.findall(expr):
            assert 'instance=~"$instance"' in matchers, f"{title}: {name} not by instance"
            if name.startswith(ROUTE_LABELLED):
                assert 'route=~"$route"' in matchers, f"{title}: {name} not by route"
        for name in METRIC.findall(expr):
            if name.endswith(("_total", "_bucket", "_count", "_sum")):
                assert re.search(rf"(rate|increase)\({name}\b", expr), f"{title}: raw {name}"


def test_the_histograms_are_read_as_quantiles(dashboard: dict[str, Any]) -> None:
    exprs = [expr for _, expr in _targets(dashboard)]
    for _, name, _ in HISTOGRAMS:
        quantiles = [e for e in exprs if f"{name}_bucket" in e]
        assert quantiles, f"{name}: no quantile panel"
        for expr in quantiles:
            assert expr.startswith("histogram_quantile(") and "by (le)" in expr, expr


def test_every_exported_family_has_a_panel(
    dashboard: dict[str, Any], exported: dict[str, str]
) -> None:
    names = {name for _, expr in _targets(dashboard) for name in METRIC.findall(expr)}
    shown = {exported[name] for name in names if name in exported}
    families = set(exported.values())
    assert not WITHOUT_PANEL - families, f"stale allow-list entries: {WITHOUT_PANEL - families}"
    assert not WITHOUT_PANEL & shown, f"allow-listed but shown: {WITHOUT_PANEL & shown}"
    missing = sorted(families - shown - WITHOUT_PANEL)
    assert not missing, f"exported but on no panel (add one, or allow-list it): {missing}"
