"""The daemon's figures as plain data: for the stats log line, systemd's STATUS and the
metrics endpoint (metrics.py reads them at scrape time, so the loop pays nothing).

Each component keeps its own counters (a dataclass of ``sensord.figures`` fields); the
``FIGURES`` table below lists every class whose figures the daemon exports, and is all that
metrics.py needs to name the families. This module reads the parts it is given and never
the daemon itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from sensord.cluster.counters import ClusterCounters
from sensord.core.sample import Counters
from sensord.daemon.delivery import DeliveryCounters, RetainedCounters
from sensord.daemon.desk import FeedbackCounters
from sensord.daemon.publisher import PublisherCounters
from sensord.daemon.reorder import ReorderCounters
from sensord.daemon.routes import Route
from sensord.daemon.transport import MqttCounters
from sensord.durable.snapshots import SnapshotCounters
from sensord.durable.store import JournalCounters
from sensord.figures import Declared, counter, every, gauge, merged, values
from sensord.ops.recording import RecordCounters


@dataclass
class LoopCounters:
    """What the loop itself counts."""

    batches: int = counter("sensord_batches", "Micro-batches scored.")
    evicted: int = counter("sensord_streams_evicted", "Streams forgotten after idle_ttl_s.")
    reloads: int = counter("sensord_reloads", "Route reloads (SIGHUP, or its bundle path moved).")
    reload_failures: int = counter(
        "sensord_reload_failures", "Route bundles that failed to reload."
    )


@dataclass
class LoopGauges:
    """Levels read off the parts when the figures are asked for."""

    streams: int = gauge("sensord_streams", "Streams with state in memory.")
    nodata_active: int = gauge("sensord_nodata_active", "Streams silent now (nodata raised).")
    inbox: int = gauge("sensord_inbox_readings", "Readings read off MQTT, waiting for their batch.")
    states_pending: int = gauge(
        "sensord_states_pending", "Retained stream states waiting to be sent."
    )
    outbox_pending: int = gauge("sensord_outbox_pending", "Alerts in the outbox awaiting PUBACK.")
    held: int = gauge(
        "sensord_readings_held_now", "Readings held now, waiting for a gap in their stream to fill."
    )


# Every class whose figures the daemon exports, in the order of the stats line.
FIGURES: tuple[type, ...] = (
    MqttCounters,
    Counters,
    ReorderCounters,
    LoopCounters,
    PublisherCounters,
    RetainedCounters,
    DeliveryCounters,
    SnapshotCounters,
    JournalCounters,
    FeedbackCounters,
    ClusterCounters,
    RecordCounters,
    LoopGauges,
)
# The core's counters each route reports in its own stats.
ROUTE_COUNTERS = ("scored", "first", "duplicate", "late", "raised", "updated", "cleared")


def declared_figures() -> tuple[Declared, ...]:
    return tuple(every(FIGURES))


def summed(counters: Iterable[Counters]) -> Counters:
    """The core's counters of several routes, added up."""
    total = Counters()
    for part in counters:
        for f in fields(part):
            setattr(total, f.name, getattr(total, f.name) + getattr(part, f.name))
    return total


def daemon_stats(
    parts: Sequence[object],
    routes: Sequence[Route],
    *,
    rejected: Mapping[str, int],
    refused: Mapping[str, int],
) -> dict[str, Any]:
    """One mapping of everything: each part's figures (one instance of each ``FIGURES``
    class), the counts by reason, and each route's own figures under ``routes``."""
    assert {type(p) for p in parts} == set(FIGURES), "every FIGURES class, once"
    return {
        **merged(parts),
        "rejected": dict(rejected),
        "feedback_refused": dict(refused),
        "routes": {route.name: route_stats(route) for route in routes},
    }


def route_stats(route: Route) -> dict[str, Any]:
    counters = values(route.pipeline.counters)
    return {
        "received": route.received,
        **{key: counters[key] for key in ROUTE_COUNTERS},
        "streams": len(route.pipeline.table),
        "nodata_active": nodata_active(route),
        "live": route.figures.summary(route.pipeline),
        "shadow": route.shadow_figures.summary(route.shadow) if route.shadow else None,
    }


def nodata_active(route: Route) -> int:
    return int(np.count_nonzero(route.pipeline.table["nodata"]))
