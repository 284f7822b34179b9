"""The daemon's figures as plain data: for the stats log line, systemd's STATUS and the
metrics endpoint (metrics.py reads them at scrape time, so the loop pays nothing)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from sensord.daemon import Daemon
    from sensord.live import Route


def daemon_stats(daemon: Daemon) -> dict[str, Any]:
    core: dict[str, int] = {}
    for route in daemon.routes:
        for key, value in vars(route.pipeline.counters).items():
            core[key] = core.get(key, 0) + value
    mqtt = daemon.mqtt.counters
    desk, recorder = daemon.desk, daemon.recorder
    routes = {route.name: route_stats(route) for route in daemon.routes}
    return {
        "received": mqtt.received,
        **core,
        "rejected": dict(daemon.ingest.rejected),
        "streams": sum(r["streams"] for r in routes.values()),
        **vars(daemon.counters),
        **vars(daemon.publisher.counters),
        "nodata_active": sum(r["nodata_active"] for r in routes.values()),
        "connects": mqtt.connects,
        "reconnects": max(mqtt.connects - 1, 0),
        "disconnects": mqtt.disconnects,
        "inbox": len(daemon.mqtt.inbox),
        "states_pending": len(daemon.states),
        "states_superseded": daemon.states.superseded,
        "acked": mqtt.acked,
        "broker_dropped": mqtt.broker_dropped,
        "ack_stale": mqtt.ack_stale,
        **vars(daemon.delivery.counters),
        "outbox_pending": len(daemon.delivery.outbox or ()),
        "snapshots_saved": daemon.durable.snapshots.saved,
        "snapshot_failures": daemon.durable.snapshots.failures,
        "journal_errors": daemon.durable.journal_errors,
        "feedback_accepted": desk.accepted if desk is not None else 0,
        "feedback_refused": dict(desk.refused) if desk is not None else {},
        "recorded_rows": recorder.rows if recorder is not None else 0,
        "record_errors": recorder.errors if recorder is not None else 0,
        "routes": routes,
    }


def route_stats(route: Route) -> dict[str, Any]:
    counters = route.pipeline.counters
    return {
        "received": route.received,
        "scored": counters.scored,
        "first": counters.first,
        "duplicate": counters.duplicate,
        "late": counters.late,
        "raised": counters.raised,
        "updated": counters.updated,
        "cleared": counters.cleared,
        "streams": len(route.pipeline.table),
        "nodata_active": _nodata_active(route),
        "live": route.figures.summary(route.pipeline),
        "shadow": route.shadow_figures.summary(route.shadow) if route.shadow else None,
    }


def _nodata_active(route: Route) -> int:
    return int(np.count_nonzero(route.pipeline.table["nodata"]))
