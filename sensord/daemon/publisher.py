"""What the daemon says about its streams: alerts, retained states, nodata events, and Home
Assistant discovery.

Alerts and nodata events go through the outbox (delivery.py: at least once, also across a
crash); retained states and discovery configs through RetainedStates (latest wins, a bounded
number in flight). The recorder, when on, also gets every alert event, so retraining knows
which spans to leave out.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import numpy.typing as npt

import sensord
from sensord.arrays import F64, Bools
from sensord.core.alert import AlertEvent, alert_id
from sensord.core.nodata import Silence
from sensord.core.sample import FIRST, Scored
from sensord.core.state import ColumnSpec
from sensord.daemon.delivery import AlertDelivery, RetainedStates
from sensord.daemon.discovery import Discovery
from sensord.daemon.ingest import Routed
from sensord.daemon.routes import Route, describe_route
from sensord.figures import counter
from sensord.logs import get_logger
from sensord.ops.recording import Recorder
from sensord.wire.homeassistant import REMOVAL_PAYLOAD
from sensord.wire.published import (
    OFFLINE,
    ONLINE,
    alert_payload,
    alert_topic,
    availability_topic,
    bridge_info_payload,
    bridge_info_topic,
    by_feature,
    nodata_payload,
    nodata_topic,
    state_payload,
    state_topic,
)

log = get_logger(__name__)
# Codes of the published_status state column; 0 means nothing published yet.
STATUS_CODES = {"warming_up": 1, "normal": 2, "alert": 3}
STATUS_NAMES = {code: name for name, code in STATUS_CODES.items()}
# What the publisher remembers of each stream, in its route's state table (registered there:
# snapshotted and handed over with the stream): the status it last published (so only
# changes are published), that status's start (its reading's time) and when a state was last
# sent (receive time), for refreshing the retained state with the latest score.
PUBLISHED_COLUMNS = {
    "published_status": ColumnSpec(np.int8, (), 0),
    "status_since": ColumnSpec(np.float64, (), np.nan),
    "state_sent_at": ColumnSpec(np.float64, (), -np.inf),
}


def status_of(scored: Scored) -> npt.NDArray[np.int64]:
    """Each reading's stream status code after it: alert, warming up or normal."""
    return np.where(
        scored.alert,
        STATUS_CODES["alert"],
        np.where(scored.warming_up, STATUS_CODES["warming_up"], STATUS_CODES["normal"]),
    )


@dataclass
class PublisherCounters:
    alerts_published: int = counter(
        "sensord_alert_messages_published", "Alert messages handed to MQTT."
    )
    states_published: int = counter(
        "sensord_states_published", "Retained stream states handed to MQTT."
    )
    nodata_raised: int = counter(
        "sensord_nodata_raised", "Streams that fell silent (nodata raised)."
    )
    nodata_cleared: int = counter(
        "sensord_nodata_cleared", "Silent streams that sent again (cleared)."
    )
    discovery_published: int = counter(
        "sensord_discovery_published", "Home Assistant configs sent."
    )


class Publisher:
    """Turns the core's outcomes into messages, for every route of one daemon."""

    def __init__(
        self,
        prefix: str,
        delivery: AlertDelivery,
        states: RetainedStates,
        *,
        publish_state: bool = True,
        state_refresh_s: float = 0.0,
        recorder: Recorder | None = None,
        recorded: frozenset[str] = frozenset(),
        discovery: Discovery | None = None,
    ) -> None:
        self.prefix = prefix
        self.delivery = delivery
        self.states = states
        self.publish_state = publish_state
        self.state_refresh_s = state_refresh_s
        # The operator's verdict shown on an alert's state (the feedback desk's, if on).
        self.feedback_of: Callable[[str], dict[str, object] | None] | None = None
        self.recorder = recorder
        self.recorded = recorded  # the routes whose alerts are recorded with their readings
        self.discovery = discovery
        self.counters = PublisherCounters()
        self._pending: list[tuple[str, bytes]] = []
        self._bridge_said: tuple[list[dict[str, Any]], dict[str, Any]] | None = None

    def keep_columns(self, routes: Sequence[Route]) -> None:
        """Register what this publisher remembers per stream with each route's pipeline."""
        for route in routes:
            route.pipeline.register(PUBLISHED_COLUMNS)

    def flush(self) -> None:
        """Hand this batch's events to the outbox and the broker, in one outbox write."""
        if self._pending:
            self.delivery.send(self._pending)
            self._pending = []

    # alerts and states

    def scored(self, route: Route, part: Routed, scored: Scored, ts: F64, values: F64) -> None:
        """The alerts of one route's batch and the state changes they made; its readings
        recorded (with the alerts, so the recording is written in this one place)."""
        if self.recorder is not None and route.name in self.recorded:
            self.recorder.readings(route.name, route.features, part.streams, ts, values)
        now = time.time()
        raised_ids: dict[int, str] = {}
        for index, event in scored.events:
            self._alert(
                route, event, topic=part.topics[index], received=part.received[index], now=now
            )
            if event.event == "raised":
                raised_ids[index] = event.alert_id
            log.info(
                "alert",
                kind=event.event,
                stream=event.stream,
                score=round(event.score, 4),
                alert_id=event.alert_id,
            )
        if self.publish_state:
            self._state_changes(route, part, scored, values, raised_ids)

    def _alert(
        self, route: Route, event: AlertEvent, *, topic: str | None, received: float, now: float
    ) -> None:
        """Queue one alert event for the outbox and the broker, and record it."""
        payload = alert_payload(
            event,
            topic=topic,
            route=route.name,
            features=route.features,
            received=received,
            published=now,
            units=route.settings.units,
        )
        self._pending.append((alert_topic(self.prefix, event.stream), payload))
        self.counters.alerts_published += 1
        if self.recorder is not None and route.name in self.recorded:
            self.recorder.alert(
                route.name,
                alert_id=event.alert_id,
                stream=event.stream,
                event=event.event,
                ts=event.ts,
                raised_ts=event.raised_ts,
                score=event.score,
            )

    def _state_changes(
        self, route: Route, part: Routed, scored: Scored, values: F64, raised_ids: dict[int, str]
    ) -> None:
        """Publish each stream's status where it changed; the comparison is vectorised so
        only the few readings that change a status cost Python work."""
        table = route.pipeline.table
        codes = status_of(scored)
        stepped = scored.status <= FIRST  # late and duplicate readings change nothing
        published = table["published_status"]
        candidates = stepped & (codes != published[scored.slots])
        if len(part) > 1 and candidates.any():
            # A stream with several readings in the batch: its later readings compare with
            # what its earlier ones publish, so check those in order below.
            _, which, counts = np.unique(scored.slots, return_inverse=True, return_counts=True)
            candidates |= stepped & (counts[which] > 1)
        for i in np.flatnonzero(candidates):
            slot, code = scored.slots[i], int(codes[i])
            if published[slot] == code:
                continue
            if published[slot] == 0:  # first status: a new stream
                self.announce(part.streams[i])
                self.available(part.streams[i], True)
            published[slot] = code
            table["status_since"][slot] = part.ts[i]
            table["state_sent_at"][slot] = part.received[i]
            features = route.features
            self.state(
                route,
                part.streams[i],
                STATUS_NAMES[code],
                since=part.ts[i],
                alert_id=raised_ids.get(int(i)),
                score=float(scored.score[i]),
                value=by_feature(features, values[i]),
                expected=by_feature(features, scored.expected[i]),
            )
        if self.state_refresh_s > 0:
            self._refresh(route, part, scored, values, stepped)

    def _refresh(
        self, route: Route, part: Routed, scored: Scored, values: F64, stepped: Bools
    ) -> None:
        """Republish the state of streams whose last one is ``state_refresh_s`` old, with
        their latest score and reading (the status, its start and alert as they were)."""
        table = route.pipeline.table
        received = np.asarray(part.received, dtype=np.float64)
        sent = table["state_sent_at"]
        due = np.flatnonzero(stepped & (received - sent[scored.slots] >= self.state_refresh_s))
        if not due.size:
            return
        # a stream's last reading in the batch is the one to show
        _, last = np.unique(scored.slots[due][::-1], return_index=True)
        manifest, features = route.pipeline.bundle.manifest, route.features
        for i in due[::-1][last].tolist():
            slot, stream = int(scored.slots[i]), part.streams[i]
            code = int(table["published_status"][slot])
            if code == 0:
                continue
            active = code == STATUS_CODES["alert"]
            alert = alert_id(manifest.name, stream, float(table["raised_ts"][slot]))
            since = float(table["status_since"][slot])
            sent[slot] = received[i]
            self.state(
                route,
                stream,
                STATUS_NAMES[code],
                # (NaN: restored from a snapshot older than the column; this is all we know)
                since=since if math.isfinite(since) else float(part.ts[i]),
                alert_id=alert if active else None,
                feedback=self.feedback_of(alert) if active and self.feedback_of else None,
                score=float(scored.score[i]),
                value=by_feature(features, values[i]),
                expected=by_feature(features, scored.expected[i]),
            )

    def accepted(self, route: Route, event: AlertEvent) -> None:
        """An alert an operator cleared as the stream's new normal: the cleared event, the
        stream's state, and the recording's alert log, as for any clear."""
        now = time.time()
        self._alert(route, event, topic=None, received=now, now=now)
        if self.publish_state:
            table = route.pipeline.table
            slot = table.slot_of[event.stream]
            table["published_status"][slot] = STATUS_CODES["normal"]
            table["status_since"][slot] = now
            self.state(route, event.stream, "normal", since=now)
        self.flush()

    def state(
        self,
        route: Route,
        stream: str,
        status: str,
        *,
        since: float,
        alert_id: str | None = None,
        feedback: dict[str, object] | None = None,
        score: float | None = None,
        value: dict[str, float | None] | None = None,
        expected: dict[str, float | None] | None = None,
    ) -> None:
        """Queue a stream's retained state (rendered only when it is sent)."""
        manifest = route.pipeline.bundle.manifest
        render = partial(
            state_payload,
            stream=stream,
            status=status,
            since=since,
            route=route.name,
            model=manifest.name,
            model_version=manifest.version,
            alert_id=alert_id,
            feedback=feedback,
            score=score,
            value=value,
            expected=expected,
        )
        self.states.put(state_topic(self.prefix, stream), render)
        self.counters.states_published += 1

    def available(self, stream: str, available: bool) -> None:
        """The stream's retained availability (``online`` / ``offline``)."""
        if self.publish_state:
            payload = ONLINE if available else OFFLINE
            self.states.put(availability_topic(self.prefix, stream), lambda: payload)

    def evicted(self, route: Route, stream: str, now: float) -> None:
        if self.publish_state:
            self.state(route, stream, "evicted", since=now)
            self.states.put(availability_topic(self.prefix, stream), lambda: REMOVAL_PAYLOAD)
        if self.discovery is not None:
            for topic in self.discovery.removed(stream):
                self.states.put(topic, lambda: REMOVAL_PAYLOAD)  # the entities go away

    # nodata

    def nodata(self, route: Route, silence: Silence, now: float) -> None:
        self.counters.nodata_raised += 1
        log.warning(
            "nodata", stream=silence.stream, route=route.name, silent_s=round(now - silence.last)
        )
        self._nodata_event("raised", route, silence, now)
        self.available(silence.stream, False)

    def data_returned(self, route: Route, silence: Silence, now: float) -> None:
        self.counters.nodata_cleared += 1
        log.info("nodata cleared", stream=silence.stream, route=route.name)
        self._nodata_event("cleared", route, silence, now)
        self.available(silence.stream, True)

    def _nodata_event(self, event: str, route: Route, silence: Silence, now: float) -> None:
        payload = nodata_payload(
            event=event,
            stream=silence.stream,
            route=route.name,
            last=silence.last,
            period_s=silence.period_s,
            now=now,
        )
        self._pending.append((nodata_topic(self.prefix, silence.stream), payload))

    # Home Assistant

    def announce(self, stream: str) -> None:
        """Home Assistant discovery for one stream (retained, so once is enough)."""
        if self.discovery is None:
            return
        for topic, render in self.discovery.stream(self.prefix, stream):
            self.states.put(topic, render)
        self.counters.discovery_published += 1

    def bridge_info(self, routes: Sequence[Route], features: dict[str, Any], now: float) -> bool:
        """``<prefix>/bridge/info`` (retained), if what it says has changed since the last
        one (its time aside); True if published."""
        described = [describe_route(route) for route in routes]
        if (described, features) == self._bridge_said:
            return False
        self._bridge_said = (described, features)
        payload = bridge_info_payload(
            version=sensord.__version__,
            prefix=self.prefix,
            routes=described,
            features=features,
            now=now,
        )
        self.states.put(bridge_info_topic(self.prefix), lambda: payload)
        return True

    def announce_all(self, routes: list[Route]) -> None:
        """Discovery for the instance and every stream with state (restored ones too), at
        start."""
        if self.discovery is not None:
            topic, payload = self.discovery.bridge(self.prefix)
            self.states.put(topic, lambda: payload)
        for route in routes:
            for stream in route.pipeline.table.slot_of:
                self.announce(stream)
