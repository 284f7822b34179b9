"""A reading's way through the daemon, as one pipeline of stages:

    source (take) → ingest (route, decode) → admit (stream cap) → reorder (hold after a gap)
    → score (the route's core, and its shadow alike) → sinks (publisher, web board, desk,
    nodata returns, timings) → publish → journal → acknowledge (in arrival order)

The loop (loop.py) calls ``turn`` once a round and never sees a reading. A micro-batch goes
down the stages in one call (``process``); readings held for reordering come back down
from the score stage when their gap fills or their window ends (``release``). A batch's
readings are acknowledged only after its alerts are in the outbox and handed to the outlet
and the batch is journaled, so a crash at any point loses nothing (loop.py says how).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from sensord.arrays import F64
from sensord.core.nodata import returned
from sensord.core.sample import FIRST, Scored
from sensord.daemon.desk import FeedbackDesk
from sensord.daemon.histogram import LoopTimings
from sensord.daemon.ingest import Ingest, Routed
from sensord.daemon.publisher import Publisher
from sensord.daemon.reorder import Reorder
from sensord.daemon.routes import Route
from sensord.daemon.stats import LoopCounters
from sensord.daemon.transport import Message, Pending, Source
from sensord.daemon.web.board import Board
from sensord.durable.journal import Entry
from sensord.durable.store import DurableState

# A linger waits in steps of this share of its budget: a lone reading costs one step.
LINGER_STEP = 0.25


@dataclass
class Linger:
    """Adaptive batching: once readings are waiting, wait a little for more, but only while
    they keep coming, and never past ``budget_s`` from the first.

    At live rates a turn finds a reading or two, and what a batch costs beside its readings
    (the socket, the engine's call, the detector's array operations, publishing, the
    journal, the acknowledgements) is paid by those few: at 1,000 streams x 2/s that was
    ~490 us of CPU per reading. Lingering makes the batch bigger. It sleeps in steps
    rather than waiting on the socket, so what arrives meanwhile is read in one go instead
    of a wake-up per reading, and stops as soon as a step brings nothing new (a lone
    reading waits one step), the batch reaches ``limit``, or the budget is spent. With no
    traffic nothing waits, so nothing is added; under load a batch waits at most the budget,
    and not at all once full. Measured (benchmarks/lingering.py, 5 ms): a third of the
    loop's CPU per reading at 1,000 streams x 2/s, for ~3 ms more latency at the median.
    """

    budget_s: float
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep

    def gather(self, source: Source, limit: int) -> None:
        """Wait while readings keep arriving at ``source`` (some are waiting already)."""
        if self.budget_s <= 0:
            return
        deadline = self.clock() + self.budget_s
        step = self.budget_s * LINGER_STEP
        have = source.waiting()
        while have < limit:
            remaining = deadline - self.clock()
            if remaining <= 0:
                return
            self.sleep(min(step, remaining))
            source.poll(0.0)  # whatever the step brought, in one read
            before, have = have, source.waiting()
            if have == before:
                return  # quiet: nothing came during a whole step


class AckQueue:
    """Acknowledgements in arrival order: a message is acknowledged once it and every
    message before it are scored. Without held readings a batch goes straight through."""

    def __init__(self) -> None:
        self._queue: deque[Pending] = deque()
        self._batch: Sequence[Message] = ()
        self._tokens: dict[int, Pending] = {}

    def __len__(self) -> int:
        return len(self._queue)

    def begin(self, batch: Sequence[Message]) -> None:
        self._batch, self._tokens = batch, {}

    def hold(self, index: int) -> Pending:
        """One more held reading of the current batch's message ``index``."""
        token = self._tokens.get(index)
        if token is None:
            token = self._tokens[index] = Pending(self._batch[index])
        token.held += 1
        return token

    def finish(self) -> list[Message]:
        """The current batch is scored (but for its held readings): what may be acked now."""
        if not self._tokens and not self._queue:  # the usual case: nothing is held
            return list(self._batch)
        for index, message in enumerate(self._batch):
            self._queue.append(self._tokens.get(index) or Pending(message))
        self._batch, self._tokens = (), {}
        return self.ready()

    def ready(self) -> list[Message]:
        out = []
        while self._queue and self._queue[0].held == 0:
            out.append(self._queue.popleft().message)
        return out


@dataclass
class Done:
    """What the scored readings of one pass leave for the last stages."""

    journal: list[Entry] = field(default_factory=list)
    arrived: list[F64] = field(default_factory=list)  # receive times, for the lag
    released: list[Pending] = field(default_factory=list)  # held readings now scored


@dataclass
class Sinks:
    """Where a route's scored readings go, besides the journal."""

    publisher: Publisher  # alerts, states, nodata returns, recording
    timings: LoopTimings
    board: Board | None = None  # the web page
    desk: FeedbackDesk | None = None  # remembers raised alerts, so verdicts may name them

    def scored(self, route: Route, part: Routed, scored: Scored, ts: F64, values: F64) -> None:
        stepped = scored.status <= FIRST
        self.publisher.scored(route, part, scored, ts, values)
        if self.board is not None:
            self.board.scored(route, part, scored, values)
        if self.desk is not None:
            self.desk.scored(scored)
        for back in returned(route.pipeline.table, scored.slots[stepped]):
            self.publisher.data_returned(route, back, time.time())
        self.timings.scored(scored, time.time() - ts[stepped])


class Stages:
    """The stages for every route of one daemon; ``turn`` runs them once."""

    def __init__(
        self,
        source: Source,
        routes: Sequence[Route],
        *,
        ingest: Ingest,
        reorder: Reorder,
        sinks: Sinks,
        durable: DurableState,
        counters: LoopCounters,
        max_batch: int,
        max_delay_s: float,
        broker_window: int | None,
    ) -> None:
        self.source = source
        self.routes = routes
        self.ingest = ingest
        self.reorder = reorder
        self.sinks = sinks
        self.durable = durable
        self.acks = AckQueue()
        self.counters = counters
        self.max_batch = max_batch
        self.linger = Linger(max_delay_s)
        # MQTT 5: the broker sends at most this many readings unacknowledged (None: 3.1.1)
        self.broker_window = broker_window

    def turn(self, idle_s: float) -> None:
        """Score what arrives within ``idle_s`` (a batch), then the held readings due."""
        batch = self.collect(idle_s)
        if batch:
            self.process(batch)
        self.release()

    def collect(self, idle_s: float) -> list[Message]:
        """Up to max_batch readings: wait up to ``idle_s`` for the first, then linger while
        more keep coming, at most max_delay_ms (``Linger``).

        Reading the socket happens here, in the loop's thread: while a batch is scored
        nothing is read, and TCP holds what the broker sends meanwhile.
        """
        source, limit = self.source, self.max_batch
        if not source.waiting():
            # Idle: wake in time to release held readings whose window ends.
            wait = min(idle_s, max(self.reorder.next_due() - time.monotonic(), 0.0))
            if self._broker_blocked():
                self.release(unblock=True)
            source.poll(wait)
        if not source.waiting():
            return []
        self.linger.gather(source, limit)
        return source.take(limit)

    def _broker_blocked(self) -> bool:
        """The broker will send nothing more until we acknowledge: acknowledgements go out
        in arrival order, so a held reading holds back those of every message after it,
        and with MQTT 5 the broker sends at most our Receive Maximum unacknowledged
        (measured: Mosquitto 2.0 then ignores its own max_inflight_messages). Waiting
        longer for older readings is then pointless: none can arrive. (MQTT 3.1.1 does not
        say the broker's window, so there the holds end with their window.)"""
        return self.broker_window is not None and len(self.acks) >= self.broker_window

    def process(self, batch: Sequence[Message]) -> None:
        """Every stage, for a micro-batch: its readings (rejected ones too) acknowledged
        last, after its alerts are handed over and it is journaled."""
        self.counters.batches += 1
        done = Done()
        self.acks.begin(batch)
        now = time.monotonic()
        routed = self.ingest.route_batch(batch)
        for index, (route, arrived) in enumerate(zip(self.routes, routed, strict=True)):
            route.received += len(arrived)
            table = route.pipeline.table
            admitted = self.ingest.admit(
                arrived, route.name, table.slot_of, route.settings.max_streams
            )
            part, tokens = self.reorder.order(index, admitted, table, self.acks.hold, now)
            done.released += tokens
            self._score(route, part, done)
        self._finish(done, self.acks.finish())

    def release(self, everything: bool = False, unblock: bool = False) -> None:
        """Score the held readings whose window ended (all of them, at stop or to unblock
        the broker), and acknowledge what they held back."""
        due = self.reorder.due(time.monotonic(), everything, unblock)
        if not due:
            return
        done = Done()
        for held in due:
            self._score(self.routes[held.route], held.part, done)
            done.released += held.tokens
        self._finish(done, [])

    def _score(self, route: Route, part: Routed, done: Done) -> None:
        if not part:
            return
        ts, values, received = part.arrays()
        scored = route.score(part.streams, ts, values, received)
        self.sinks.scored(route, part, scored, ts, values)
        done.journal.append(Entry(route.name, part.streams, ts, values, received))
        done.arrived.append(received)

    def _finish(self, done: Done, acks: list[Message]) -> None:
        """Publish, journal, then acknowledge what may be (in arrival order)."""
        self.sinks.publisher.flush()
        self.durable.record(done.journal)
        for token in done.released:
            token.release()
        self.source.ack([*acks, *self.acks.ready()] if done.released else acks)
        if done.arrived:  # received → scored, published and acknowledged
            self.sinks.timings.lag_s.observe(time.time() - np.concatenate(done.arrived))
