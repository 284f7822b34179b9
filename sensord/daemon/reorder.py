"""Readings that arrive out of order after a reconnect: held briefly and put back in order.

What happens (measured with a plain paho subscriber, a broker restarted under load): when a
publisher's connection comes back, paho sends what it queued while disconnected from its
CONNACK handler, but the application's new publishes go out as soon as the socket is open.
A stream's newest reading reaches the broker, and so sensord, some tens of milliseconds
before the 25 older ones that were queued. The core drops a reading older than its stream's
last as late, so the older ones would be lost, and a fault in them never seen.

So a reading that arrives after a gap in its stream's own time (its timestamp more than
``gap_factor`` times the stream's longest recent step past its last, core/gaps.py) is held,
with every later reading of that stream, for at most ``window_s``: released in timestamp
order as soon as the gap is filled, or when the window ends (then whatever older one comes
later is late, as before). A reading with no gap before it passes straight through: in
normal running nothing waits. Held readings are acknowledged only once scored, and
acknowledgements keep arrival order (``AckQueue``, stages.py), so a crash while holding
loses nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from sensord.core.gaps import after_gap
from sensord.core.state import StateTable
from sensord.daemon.ingest import Routed
from sensord.daemon.transport import Pending
from sensord.figures import counter

RELEASE_TICKS = 4  # holds end on ticks of a quarter window (Reorder._release_at)


@dataclass
class ReorderCounters:
    readings_held: int = counter(
        "sensord_readings_held",
        "Readings held after a gap in their stream, for older ones to arrive (reordered).",
    )
    holds_expired: int = counter(
        "sensord_reorder_holds_expired",
        "Holds released by the end of the reorder window, the gap not filled.",
    )
    holds_unblocked: int = counter(
        "sensord_reorder_holds_unblocked",
        "Holds released early because the broker could send nothing more: sensord's "
        "Receive Maximum of readings waited for acknowledgements behind them.",
    )


@dataclass
class _Held:
    ts: float
    values: list[float]
    received: float
    topic: str
    token: Pending


@dataclass
class _Holding:
    until: float  # monotonic time at which it is released whatever is missing
    newest: float = -math.inf  # the newest held timestamp
    readings: list[_Held] = field(default_factory=list)


@dataclass
class Released:
    """Readings of one route to score now, with the tokens to release once they are."""

    route: int
    part: Routed
    tokens: list[Pending]


Hold = Callable[[int], Pending]  # message index in the current batch -> its token


class Reorder:
    """The reorder stage between ingest and the core, for every route of one daemon."""

    def __init__(self, routes: int, window_s: float, gap_factor: float) -> None:
        self.window_s = window_s
        self.gap_factor = gap_factor
        self._held: list[dict[str, _Holding]] = [{} for _ in range(routes)]
        self.counters = ReorderCounters()

    def __len__(self) -> int:
        return sum(len(h.readings) for route in self._held for h in route.values())

    def next_due(self) -> float:
        """When the earliest hold ends (inf: nothing held)."""
        return min((h.until for r in self._held for h in r.values()), default=math.inf)

    def order(
        self, route: int, part: Routed, table: StateTable, hold: Hold, now: float
    ) -> tuple[Routed, list[Pending]]:
        """What of ``part`` to score now (with the tokens of held readings it releases);
        the rest is held."""
        holding = self._held[route]
        if self.window_s <= 0 or not part:
            return part, []
        slots = np.fromiter((table.slot_of.get(s, -1) for s in part.streams), np.intp, len(part))
        known = slots >= 0
        gaps = np.zeros(len(part), dtype=bool)
        if known.any():
            ts = np.asarray(part.ts)
            previous = _previous_ts(slots, ts, table["last_ts"])
            mine = slots[known]
            gaps[known] = after_gap(
                previous[known],
                table["log_long_step"][mine],
                table["steps"][mine],
                ts[known],
                self.gap_factor,
            )
        if not holding and not gaps.any():
            return part, []  # nothing out of line: straight through
        return self._split(route, part, gaps, table=table, hold=hold, now=now)

    def _split(
        self,
        route: int,
        part: Routed,
        gaps: npt.NDArray[np.bool_],
        *,
        table: StateTable,
        hold: Hold,
        now: float,
    ) -> tuple[Routed, list[Pending]]:
        holding = self._held[route]
        f = part.features
        now_part = Routed(f)
        touched: set[str] = set()
        for i, stream in enumerate(part.streams):
            values = part.values[i * f : (i + 1) * f]
            if stream in holding or gaps[i]:
                entry = holding.setdefault(stream, _Holding(self._release_at(now)))
                token = hold(part.messages[i])
                entry.readings.append(
                    _Held(part.ts[i], values, part.received[i], part.topics[i], token)
                )
                self.counters.readings_held += 1
                if part.ts[i] < entry.newest or len(entry.readings) == 1:
                    touched.add(stream)  # only an older reading can fill the gap
                entry.newest = max(entry.newest, part.ts[i])
            else:
                now_part.add(stream, part.topics[i], part.ts[i], values, part.received[i])
        tokens: list[Pending] = []
        for stream in touched:
            if self._filled(holding[stream], table, stream):
                tokens += self._take(holding.pop(stream), stream, now_part)
        return now_part, tokens

    def _release_at(self, now: float) -> float:
        """When a hold made now ends: after the window, at the next tick of a quarter
        window. A stream released alone steps its held readings one wave each (about
        0.4 ms a wave with the channels detector, whatever its size); released on a common
        tick, the streams whose holds ended share those waves."""
        tick = self.window_s / RELEASE_TICKS
        return math.ceil((now + self.window_s) / tick) * tick

    def _filled(self, holding: _Holding, table: StateTable, stream: str) -> bool:
        """No gap left between the stream's last reading and the held ones."""
        slot = table.slot_of.get(stream)
        if slot is None:
            return True
        last = float(table["last_ts"][slot])
        step = math.exp(float(table["log_long_step"][slot]))
        for ts in sorted(h.ts for h in holding.readings):
            if ts <= last:
                continue  # older than the stream's last: late whatever we do
            if ts - last > self.gap_factor * step:
                return False
            last = ts
        return True

    @staticmethod
    def _take(holding: _Holding, stream: str, into: Routed) -> list[Pending]:
        ordered = sorted(holding.readings, key=lambda h: h.ts)
        for h in ordered:
            into.add(stream, h.topic, h.ts, h.values, h.received)
        return [h.token for h in ordered]

    def discard(self, session: int) -> int:
        """Forget the held readings that came in messages of ``session`` and release their
        tokens (cluster mode: a partition let go or lost, whose next owner reads them again
        from the engine's log); how many."""
        gone = 0
        for holding in self._held:
            for stream, entry in list(holding.items()):
                keep = [h for h in entry.readings if h.token.message.session != session]
                for h in entry.readings:
                    if h.token.message.session == session:
                        h.token.release()
                gone += len(entry.readings) - len(keep)
                if not keep:
                    del holding[stream]
                elif len(keep) != len(entry.readings):
                    entry.readings, entry.newest = keep, max(h.ts for h in keep)
        return gone

    def due(self, now: float, everything: bool = False, unblock: bool = False) -> list[Released]:
        """Holds whose window has ended (or all of them: stopping, or ``unblock``ing the
        broker), in timestamp order per stream."""
        everything = everything or unblock
        out = []
        for route, holding in enumerate(self._held):
            ended = [s for s, h in holding.items() if everything or h.until <= now]
            if not ended:
                continue
            part: Routed | None = None
            tokens: list[Pending] = []
            for stream in ended:
                entry = holding.pop(stream)
                if part is None:
                    part = Routed(len(entry.readings[0].values))
                tokens += self._take(entry, stream, part)
                self.counters.holds_expired += not everything
                self.counters.holds_unblocked += unblock
            assert part is not None
            out.append(Released(route, part, tokens))
        return out


def _previous_ts(
    slots: npt.NDArray[np.intp], ts: npt.NDArray[np.float64], last_ts: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Each reading's predecessor in its stream: the one before it in this part, or for
    the first the stream's last stepped (``slots`` -1: a new stream; its entries are
    meaningless). A part holds several readings of a fast stream; measured against the last
    stepped one, its third would look like a gap."""
    previous = np.where(slots >= 0, last_ts[np.maximum(slots, 0)], np.nan)
    order = np.argsort(slots, kind="stable")  # stable: arrival order within a stream
    same = slots[order][1:] == slots[order][:-1]
    previous[order[1:][same]] = ts[order[:-1][same]]
    return previous
