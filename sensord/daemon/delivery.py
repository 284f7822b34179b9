"""How sensord's messages reach the broker: alerts at least once, retained states latest-wins.

**Alerts: the outbox first, then MQTT; forgotten on the broker's PUBACK.** The daemon hands
over each micro-batch's alerts with ``send`` before it acknowledges the readings that raised
them. They are made durable in the outbox (one sync per batch), then published at QoS 1;
paho keeps them across reconnects while the process lives, and the outbox keeps them across
a crash (``replay`` at start). A subscriber may see an alert twice (after a crash, or a lost
PUBACK); the alert's stable id lets it drop the repeat. If the outbox cannot be written
(disk full, read-only), alerts still go out, but without the crash guarantee; that is
logged and counted, never fatal: an input or a disk never stops the daemon.

**Retained states: latest-wins, a bounded number in flight.** A stream's
``<prefix>/state/<stream>`` message is retained: only its newest status matters to a
dashboard. When thousands of streams change status at once (a restart on a backlog: 10,000
streams each go ``warming_up`` then ``normal``), handing every change to paho queued them
all in memory at once (57 MB at 10,000 streams, which Python's allocator then kept;
docs/benchmarks.md). Here each stream has at most one pending state, the newest, which
replaces an older one not yet sent; at most ``in_flight`` are handed to paho at a time, and
more go as the broker acknowledges them. While the broker keeps up, every change is sent at
once, in order; states are only superseded while ``in_flight`` are waiting. A waiting
state is kept as the call that renders it, not as its JSON: orjson's output holds a 4 KiB
buffer however short the text, and 6,000 rendered states waiting at once were 25 MB.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from sensord.daemon.transport import Outlet
from sensord.durable.outbox import Outbox
from sensord.errors import OutboxError
from sensord.figures import counter
from sensord.logs import get_logger

log = get_logger(__name__)
Publish = Callable[[str, bytes], int]  # (topic, payload) -> MQTT packet id
Render = Callable[[], bytes]  # a state's payload, made when it is sent
DEFAULT_IN_FLIGHT = 256


class Sent(Protocol):
    """What a publish hands back (paho's MQTTMessageInfo): acknowledged yet?"""

    def is_published(self) -> bool: ...


PublishState = Callable[[str, bytes], Sent]


class Ledger(Protocol):
    """Alert events the broker confirmed, kept beyond this process (cluster mode: in the
    engine, so that a member replaying a partition it took over raises none twice)."""

    def seen(self, payload: bytes) -> bool: ...

    def confirmed(self, payload: bytes) -> None: ...


@dataclass
class DeliveryCounters:
    alerts_delivered: int = counter(
        "sensord_alerts_delivered", "Alerts the broker acknowledged (PUBACK)."
    )
    # The broker answered with a failure reason code.
    alerts_refused: int = counter(
        "sensord_alerts_refused", "Alerts the broker refused (PUBACK failure)."
    )
    alerts_replayed: int = counter(
        "sensord_alerts_replayed", "Alerts published again from the outbox."
    )
    outbox_errors: int = counter(
        "sensord_outbox_errors", "Alert batches the outbox could not write."
    )
    alerts_repeats: int = counter(
        "sensord_alerts_repeats_withheld",
        "Alert events not published because the ledger says the broker has them (cluster "
        "mode: a partition's readings replayed after a takeover).",
    )


class AlertDelivery:
    """Alerts from the loop to the broker, through the outbox."""

    def __init__(
        self, publish: Publish, outbox: Outbox | None, ledger: Ledger | None = None
    ) -> None:
        self._publish = publish
        self.outbox = outbox
        self.ledger = ledger
        self.counters = DeliveryCounters()
        self._seq_of_mid: dict[int, int] = {}  # in flight: MQTT packet id -> outbox seq
        self._ledger_of_mid: dict[int, bytes] = {}  # in flight: packet id -> payload
        self._outbox_failing = False

    @property
    def in_flight(self) -> int:
        return len(self._seq_of_mid) + len(self._ledger_of_mid)

    def replay(self) -> int:
        """Publish again what the outbox still holds from before a crash or stop."""
        if self.outbox is None:
            return 0
        entries = self.outbox.outstanding()
        for entry in entries:
            self._seq_of_mid[self._publish(entry.topic, entry.payload)] = entry.seq
        self.counters.alerts_replayed += len(entries)
        if entries:
            log.info("outbox: publishing alerts again", alerts=len(entries))
        return len(entries)

    def send(self, alerts: Sequence[tuple[str, bytes]]) -> None:
        """Make these (topic, payload) alerts durable, then publish them."""
        if self.ledger is not None:
            alerts = self._not_repeats(alerts, self.ledger)
        if not alerts:
            return
        seqs: list[int | None] = [None] * len(alerts)
        if self.outbox is not None:
            try:
                seqs = list(self.outbox.add(alerts))
                self._outbox_failing = False
            except OutboxError as exc:
                self._outbox_trouble(exc)
        for (topic, payload), seq in zip(alerts, seqs, strict=True):
            mid = self._publish(topic, payload)
            if seq is not None:
                self._seq_of_mid[mid] = seq
            if self.ledger is not None:
                self._ledger_of_mid[mid] = payload

    def _not_repeats(
        self, alerts: Sequence[tuple[str, bytes]], ledger: Ledger
    ) -> Sequence[tuple[str, bytes]]:
        fresh = [(topic, payload) for topic, payload in alerts if not ledger.seen(payload)]
        self.counters.alerts_repeats += len(alerts) - len(fresh)
        return fresh

    def published(self, mid: int, accepted: bool) -> None:
        """The broker acknowledged packet ``mid`` (paho's on_publish)."""
        payload = self._ledger_of_mid.pop(mid, None)
        seq = self._seq_of_mid.pop(mid, None)
        if seq is None and payload is None:
            return  # not an alert (a retained state, the status), or not kept track of
        if payload is not None and accepted and self.ledger is not None:
            self.ledger.confirmed(payload)
        if accepted:
            self.counters.alerts_delivered += 1
        else:
            # MQTT 5 PUBACK with a failure code (not authorised, quota): sending it again
            # would be refused again. Kept in the log and metrics, dropped from the outbox.
            self.counters.alerts_refused += 1
            log.error("the broker refused an alert (check its ACL for sensord's prefix)")
        if self.outbox is None or seq is None:  # an alert the outbox does not hold
            return
        try:
            self.outbox.done(seq)
        except OutboxError as exc:
            self._outbox_trouble(exc)

    def _outbox_trouble(self, exc: OutboxError) -> None:
        self.counters.outbox_errors += 1
        if not self._outbox_failing:  # once per episode, not per batch
            log.error("outbox failing; alerts still published but not crash-safe", error=str(exc))
        self._outbox_failing = True


def packet_ids(outlet: Outlet) -> Publish:
    """``outlet.publish`` as the outbox needs it: the packet id its PUBACK will name."""

    def publish(topic: str, payload: bytes) -> int:
        return outlet.publish(topic, payload).mid

    return publish


@dataclass
class RetainedCounters:
    states_superseded: int = counter(
        "sensord_states_superseded",
        "Retained stream states replaced by a newer one before the broker could take them.",
    )


class RetainedStates:
    """Pending retained states by topic, fed to ``publish`` as earlier ones complete."""

    def __init__(self, publish: PublishState, in_flight: int = DEFAULT_IN_FLIGHT) -> None:
        self._publish = publish
        self._in_flight = in_flight
        self._pending: dict[str, Render] = {}
        self._sent: deque[Sent] = deque()
        self.counters = RetainedCounters()

    def __len__(self) -> int:
        return len(self._pending)

    def put(self, topic: str, render: Render) -> None:
        """The newest state on ``topic``; ``render()`` makes its payload when it is sent.

        Sent now if the window has room and nothing waits ahead of it; else it waits,
        replacing an older state of the same topic that is still waiting.
        """
        if self._pending.pop(topic, None) is not None:
            self.counters.states_superseded += 1
        if not self._pending and self._room():
            self._sent.append(self._publish(topic, render()))
        else:
            self._pending[topic] = render

    def flush(self, everything: bool = False) -> None:
        """Hand waiting states to paho while the window has room (all of them with
        ``everything``, at a stop: paho then sends them in order before ``offline``)."""
        sent = self._sent
        while self._pending and (everything or self._room()):
            topic = next(iter(self._pending))
            sent.append(self._publish(topic, self._pending.pop(topic)()))

    def _room(self) -> bool:
        sent = self._sent
        while sent and sent[0].is_published():
            sent.popleft()
        return len(sent) < self._in_flight
