"""One cluster member's engine side, in a thread of its own with an asyncio loop.

It connects to the engine (NATS with JetStream) and keeps this member's partition leases
(leases.py). For each partition it claims it makes a record (partition.py), restores the
partition's state into the scoring loop (handover.py) and starts its reader (reader.py); it
commits each owned partition's state every ``checkpoint_s`` and when it lets one go
(checkpoint.py), drops a lost one's streams unsaved, and keeps the alert ledger (ledger.py).

The scoring loop's thread owns the pipelines, so whatever touches them (restore, save,
drop) is a job this thread posts and the loop runs between two batches (bridge.py): the two
threads share only that job queue and the partitions' records, under one lock.

**What the loop sees.** ``take`` hands out readings of partitions whose lease holds now
(``LeaseKeeper.owned``); a partition whose lease lapsed (the engine was away, or this
member was stuck) keeps its readings queued until the lease is renewed or lost, so a state
is never stepped past a gap. The keeper renews only while the loop calls ``run_jobs``
(``alive``): a loop that hangs loses its partitions to the other members.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from nats.aio.client import Client
from nats.errors import Error as NatsError

from sensord.cluster.bridge import LoopBridge, LoopSide
from sensord.cluster.bulk import install
from sensord.cluster.checkpoint import Checkpoint
from sensord.cluster.counters import ClusterCounters
from sensord.cluster.engine import Connection, Trouble
from sensord.cluster.feed import LogSettings, Reading, ensure_log
from sensord.cluster.handover import PartitionStates
from sensord.cluster.leases import LeaseKeeper, LeaseSettings
from sensord.cluster.ledger import AlertLedger
from sensord.cluster.partition import FIRST_GENERATION, M, OwnedPartition, OwnedPartitions
from sensord.cluster.presence import member_name
from sensord.cluster.reader import Readers
from sensord.config.cluster import ClusterSettings
from sensord.errors import NameTakenError, SensordError
from sensord.logs import get_logger

__all__ = ["FIRST_GENERATION", "LoopSide", "Member", "member_name"]

log = get_logger(__name__)
T = TypeVar("T")
RETRY_S = 0.5  # after a failed start
BULK_TRIES, BULK_WAIT_S = 100, 0.01  # putting the bulk parser in place (bulk.py)
LEDGER_RETRY_S = 1.0
ALIVE_S_OF_LEASE = 0.5  # the loop is alive if it ran jobs within this share of the lease time


@dataclass
class _Engine:
    """The member's parts that need the engine: made once it answered."""

    states: PartitionStates
    ledger: AlertLedger
    keeper: LeaseKeeper
    readers: Readers
    checkpoint: Checkpoint


class Member:
    """See the module's docstring."""

    def __init__(self, settings: ClusterSettings, fetch_batch: int = 256) -> None:
        self.settings = settings
        self.name = member_name(settings.member)
        self.fetch_batch = fetch_batch
        self.counters = ClusterCounters()
        self.log_settings = LogSettings(settings.log_stream, settings.log_max_age_s)
        self.parts = OwnedPartitions()
        self.bridge = LoopBridge()
        self.ledger: AlertLedger | None = None
        self._trouble = Trouble(self.name, self.counters)
        self._connection = Connection(settings, self.name, self._trouble)
        self.connected = self._connection.connected
        self.started = threading.Event()  # buckets, log and ledger ready
        self.named = threading.Event()  # this member holds its name (presence.py)
        self.refused: NameTakenError | None = None  # another live member has the name
        self._side: LoopSide | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ledger_due: asyncio.Event | None = None
        self._engine: _Engine | None = None
        self._dropping: set[OwnedPartition] = set()  # lost; their streams being forgotten
        self._generations = itertools.count(FIRST_GENERATION)

    # the loop's side

    @property
    def wake_fd(self) -> int:
        """Readable when readings or jobs wait (the loop's select watches it)."""
        return self.bridge.wake_fd

    def start(self, side: LoopSide) -> None:
        self._side = side
        self._thread = threading.Thread(target=self._main, name="sensord-cluster", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 20.0) -> None:
        """Let every partition go (their states saved; the loop's jobs run meanwhile)."""
        loop, stop, thread = self._loop, self._stop, self._thread
        if thread is None:
            return
        if loop is not None and stop is not None:
            try:
                loop.call_soon_threadsafe(stop.set)
            except RuntimeError:  # a member that ended (refused its name) closed its loop
                if not loop.is_closed():
                    raise
        deadline = time.monotonic() + timeout_s
        while thread.is_alive() and time.monotonic() < deadline:
            self.bridge.run_jobs(wait_s=0.05)
        if thread.is_alive():
            log.error(
                "cluster member did not stop in time; its leases lapse by themselves",
                waiting_in=self._waiting_in(),
            )
        self.bridge.close()

    def run_jobs(self, wait_s: float = 0.0) -> int:
        """Run what the engine side asked of the loop (between two batches)."""
        return self.bridge.run_jobs(wait_s)

    def clear_wake(self) -> None:
        self.bridge.clear_wake()

    def take(self, limit: int) -> list[tuple[int, list[Reading]]]:
        """Up to ``limit`` readings of partitions owned now, an even share of each, as
        (generation, its readings in log order)."""
        return self.parts.take(limit)

    def ack(self, messages: Sequence[M]) -> list[M]:
        """Record the readings' positions as their partitions' progress (the position a
        commit saves a state with: checkpoint.py); the other messages back."""
        return self.parts.ack(messages)

    def partition_of(self, generation: int) -> int | None:
        return self.parts.partition_of(generation)

    def owned(self) -> list[int]:
        return self.parts.owned()

    def seen(self, payload: bytes) -> bool:
        """The alert ledger's answer (delivery.Ledger): False until it is open, when no
        partition is owned yet."""
        return self.ledger.seen(payload) if self.ledger is not None else False

    def confirmed(self, payload: bytes) -> None:
        """Written to the engine at once: until then a takeover would raise it again."""
        if self.ledger is not None:
            self.ledger.confirmed(payload)
            loop, due = self._loop, self._ledger_due
            if loop is not None and due is not None:
                loop.call_soon_threadsafe(due.set)

    # the engine's side (its own thread)

    def _main(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._stop = asyncio.Event()
        self._ledger_due = asyncio.Event()
        try:
            self._loop.run_until_complete(self._run(self._stop))
        except Exception as exc:
            log.error("cluster member stopped on an error", error=repr(exc))
        finally:
            self._loop.close()

    async def _run(self, stop: asyncio.Event) -> None:
        nc = await self._connection.open(stop)
        if nc is None:
            return
        try:
            await self._serve(nc, stop)
        finally:
            await self._connection.close(nc)

    async def _serve(self, nc: Client, stop: asyncio.Event) -> None:
        await _bulk_parser(nc)
        engine = await self._open(nc, stop)
        if engine is None:
            return
        self._engine, self.ledger = engine, engine.ledger
        self.started.set()
        log.info("cluster member started", member=self.name, partitions=self.settings.partitions)
        side_tasks = [
            asyncio.create_task(engine.checkpoint.run(stop, self.settings.checkpoint_s)),
            asyncio.create_task(self._ledger_writes(stop, engine.ledger)),
        ]
        try:
            await engine.keeper.run(stop, after_turn=self._after_turn)
        except NameTakenError as exc:  # its partitions dropped as lost: the name's holder's
            log.error("cluster member stops", member=self.name, reason=str(exc))
            await asyncio.gather(*(p.dropping for p in self._dropping if p.dropping))
            self.refused = exc  # the loop raises it (``sensord run`` exits EX_CONFIG)
        finally:
            for task in side_tasks:
                task.cancel()
            self._after_turn()
            with contextlib.suppress(NatsError, TimeoutError):
                await engine.ledger.write()

    async def _open(self, nc: Client, stop: asyncio.Event) -> _Engine | None:
        """The readings log, the buckets and the ledger, tried until the engine has them."""
        js = nc.jetstream()
        s = self.settings
        while not stop.is_set():
            try:
                await ensure_log(js, self.log_settings)
                states = PartitionStates(js, s.name)
                await states.open()
                ledger = AlertLedger(js, s.name, s.log_max_age_s)
                await ledger.open()
                keeper = LeaseKeeper(
                    js,
                    LeaseSettings(self.name, s.partitions, s.lease_s, s.name),
                    on_claim=self._claim,
                    on_release=self._release,
                    on_lost=self._lost,
                    alive=self._alive,
                )
                await keeper.open()
                return self._assemble(nc, states, ledger, keeper)
            except (NatsError, SensordError) as exc:  # the engine, or buckets that do not fit
                self._trouble("cluster member cannot start; retrying", exc)
                await asyncio.sleep(RETRY_S)
        return None

    def _assemble(
        self, nc: Client, states: PartitionStates, ledger: AlertLedger, keeper: LeaseKeeper
    ) -> _Engine:
        readers = Readers(
            nc,
            self.parts,
            self.bridge,
            self.counters,
            self._trouble,
            log_settings=self.log_settings,
            prefetch=self.settings.prefetch,
            fetch_batch=self.fetch_batch,
        )
        self.parts.on_taken = lambda parts: self._in_engine_thread(readers.room_made, parts)
        checkpoint = Checkpoint(
            states,
            self.parts,
            readers=readers,
            bridge=self.bridge,
            side=self._loop_side(),
            counters=self.counters,
            owns=lambda partition: partition in keeper.owned(),
            trouble=self._trouble,
        )
        return _Engine(states, ledger, keeper, readers, checkpoint)

    def _alive(self) -> bool:
        return self.bridge.alive(self.settings.lease_s * ALIVE_S_OF_LEASE)

    def _after_turn(self) -> None:
        if self._engine is None:
            return
        keeper = self._engine.keeper
        if keeper.presence is not None and keeper.presence.held:
            self.named.set()
        self.counters.lease_turns_failed = keeper.failed_turns
        self.parts.leases({p: h.valid_until for p, h in keeper.held.items()})
        self.counters.owned = len(self.parts.owned())

    # a partition claimed, let go, lost (the keeper's hooks)

    async def _claim(self, partition: int) -> None:
        """Its record made, its state restored in the loop, its reader started: before
        the keeper counts it as owned."""
        started = time.monotonic()
        engine = self._running()
        for lost in [p for p in self._dropping if p.partition == partition]:
            if lost.dropping is not None:
                await lost.dropping  # a lost claim of it goes before the new one comes
        data = await engine.states.load(partition)
        await engine.ledger.load()
        part = OwnedPartition(partition, next(self._generations))
        self.parts.add(part)
        side = self._loop_side()

        def restore() -> None:  # in the loop's thread: part.acked is the loop's to write
            part.after = part.acked = side.restore(partition, part.generation, data)

        try:
            await self.bridge.in_loop(restore)
            await engine.readers.start(part)
        except BaseException:
            await self._drop(part)
            raise
        self.counters.claimed += 1
        self.counters.handover_s = time.monotonic() - started
        log.info(
            "partition taken",
            member=self.name,
            partition=partition,
            after=part.after,
            state=data is not None,
            took_s=round(self.counters.handover_s, 3),
        )

    async def _release(self, partition: int) -> None:
        """Committed and forgotten here, before the keeper deletes its lease."""
        part = self.parts.get(partition)
        if part is not None:
            await self._running().checkpoint.commit(part, release=True)
            self.parts.forget(part)
        self.counters.released += 1

    def _lost(self, partition: int) -> None:
        """Taken or expired without a release: its streams go unsaved (the next owner goes
        on from its last saved state)."""
        self.counters.lost += 1
        part = self.parts.get(partition)
        if part is None:
            return
        self.parts.disown(part)
        part.dropping = asyncio.get_running_loop().create_task(self._drop(part))
        self._dropping.add(part)
        part.dropping.add_done_callback(lambda _: self._dropping.discard(part))

    async def _drop(self, part: OwnedPartition) -> None:
        await self._running().readers.stop(part)
        side = self._loop_side()
        try:
            await self.bridge.in_loop(lambda: side.drop(part.partition, part.generation))
        except Exception as exc:
            log.error("dropping a partition failed", partition=part.partition, error=repr(exc))
        self.parts.forget(part)

    # the alert ledger

    async def _ledger_writes(self, stop: asyncio.Event, ledger: AlertLedger) -> None:
        """The ledger's keys as soon as the broker confirmed their events (a failed write
        is tried again after ``LEDGER_RETRY_S``)."""
        due = self._ledger_due
        while not stop.is_set() and due is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(due.wait(), LEDGER_RETRY_S)
            due.clear()
            try:
                await ledger.write()
            except NatsError as exc:
                self._trouble("writing the alert ledger failed", exc)

    # plumbing

    def _in_engine_thread(self, call: Callable[[T], None], arg: T) -> None:
        """``call(arg)`` soon in the engine thread's loop (from the loop's thread), unless
        that loop has ended (the member stopping)."""
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # closed meanwhile
                loop.call_soon_threadsafe(call, arg)

    def _running(self) -> _Engine:
        if self._engine is None:
            raise RuntimeError("the member is not started")
        return self._engine

    def _loop_side(self) -> LoopSide:
        if self._side is None:
            raise RuntimeError("the member is not started")
        return self._side

    def _waiting_in(self) -> list[str]:
        """Where the engine thread's tasks wait (for the log, when it is stuck)."""
        if self._loop is None:
            return []
        out = []
        with contextlib.suppress(RuntimeError):  # the set changed while read: a best effort
            for task in list(asyncio.all_tasks(self._loop)):
                frames = task.get_stack()
                where = [f"{f.f_code.co_name}:{f.f_lineno}" for f in frames[-3:]]
                out.append(f"{task.get_name()} " + " > ".join(where))
        return out


async def _bulk_parser(nc: Client) -> None:
    """The connection's bulk parser (bulk.py), put in place while nothing is half-read:
    the partitions' feeds take their readings through it (else through nats-py's
    callbacks, one by one, as a feed also does when it cannot be put in place)."""
    for _ in range(BULK_TRIES):
        if install(nc) is not None:
            return
        await asyncio.sleep(BULK_WAIT_S)
    log.warning("nats-py's parser could not be replaced: readings come one by one")
