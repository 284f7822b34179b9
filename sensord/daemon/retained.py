"""Retained stream states, published latest-wins with a bounded number in flight.

A stream's ``<prefix>/state/<stream>`` message is retained: only its newest status matters
to a dashboard. When thousands of streams change status at once (a restart on a backlog:
10,000 streams each go ``warming_up`` then ``normal``), handing every change to paho queued
them all in memory at once (57 MB at 10,000 streams, which Python's allocator then kept;
docs/benchmarks.md). Here each stream has at most one pending state, the newest, which
replaces an older one not yet sent; at most ``in_flight`` are handed to paho at a time, and
more go as the broker acknowledges them. While the broker keeps up, every change is sent at
once, in order; states are only superseded while ``in_flight`` are waiting. A waiting
state is kept as the call that renders it, not as its JSON: orjson's output holds a 4 KiB
buffer however short the text, and 6,000 rendered states waiting at once were 25 MB.
Alerts do not come through here: every alert event is published as it happens.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from sensord.figures import counter


class Delivery(Protocol):
    """What a publish hands back (paho's MQTTMessageInfo): acknowledged yet?"""

    def is_published(self) -> bool: ...


Publish = Callable[[str, bytes], Delivery]
Render = Callable[[], bytes]
DEFAULT_IN_FLIGHT = 256


@dataclass
class RetainedCounters:
    states_superseded: int = counter(
        "sensord_states_superseded",
        "Retained stream states replaced by a newer one before the broker could take them.",
    )


class RetainedStates:
    """Pending retained states by topic, fed to ``publish`` as earlier ones complete."""

    def __init__(self, publish: Publish, in_flight: int = DEFAULT_IN_FLIGHT) -> None:
        self._publish = publish
        self._in_flight = in_flight
        self._pending: dict[str, Render] = {}
        self._sent: deque[Delivery] = deque()
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
