"""One cluster member's engine side, in a thread of its own with an asyncio loop.

It connects to the engine (NATS with JetStream), keeps this member's partition leases
(leases.py), reads each owned partition's readings from the readings log (feed.py) into a
queue the scoring loop takes from, saves each owned partition's state to the engine every
``checkpoint_s`` and when it lets a partition go, restores it when it claims one
(handover.py), and keeps the alert ledger (ledger.py).

The scoring loop's thread owns the pipelines, so whatever touches them (restore, save,
drop) is a job this thread posts and the loop runs between two batches (``run_jobs``, called
from the loop's transport): the two threads share only the job queue, the readings queue
and a few dicts swapped whole, under one lock.

**What the loop sees.** ``take`` hands out readings of partitions whose lease holds now
(``LeaseKeeper.owned``); a partition whose lease lapsed (the engine was away, or this
member was stuck) keeps its readings queued until the lease is renewed or lost, so a state
is never stepped past a gap. The keeper renews only while the loop calls ``run_jobs``
(``alive``): a loop that hangs loses its partitions to the other members.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import os
import queue
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import Any, Protocol, TypeVar

import nats
from nats.aio.client import Client
from nats.errors import Error as NatsError

from sensord.cluster.counters import ClusterCounters
from sensord.cluster.feed import LogSettings, PartitionFeed, Reading, ensure_log
from sensord.cluster.handover import PartitionStates
from sensord.cluster.leases import LeaseKeeper, LeaseSettings
from sensord.cluster.ledger import AlertLedger
from sensord.config.sections import ClusterSettings
from sensord.errors import SensordError
from sensord.logs import get_logger

log = get_logger(__name__)
T = TypeVar("T")
FETCH_WAIT_S = 0.5  # a feed's fetch waits this long for a first reading
CHECK_FEED_EVERY = 3  # unanswered requests in a row before asking if the consumer is there
RETRY_S = 0.5  # after a failed fetch, or a failed connection
WARN_EVERY_S = 10.0
LEDGER_RETRY_S = 1.0
ALIVE_S_OF_LEASE = 0.5  # the loop is alive if it ran jobs within this share of the lease time
FIRST_GENERATION = 1 << 32  # generations (a partition's claims) number above MQTT sessions
CLOSE_S = 5.0  # closing a consumer or the connection takes at most this long


class LoopSide(Protocol):
    """What the member asks of the scoring loop (run in the loop's thread)."""

    def restore(self, partition: int, generation: int, data: bytes | None) -> int:
        """Take the partition's saved state (None: none yet); the log position it includes."""
        ...

    def save(self, partition: int, generation: int, release: bool) -> bytes | None:
        """The partition's state as of its last scored reading; its streams forgotten with
        ``release``. None if it cannot be saved now (alerts the broker has not confirmed)."""
        ...

    def drop(self, partition: int, generation: int) -> None:
        """Forget the partition's streams and readings unsaved (its lease was lost)."""
        ...


def member_name(configured: str | None) -> str:
    """The configured name, or the host's (made safe for a KV key)."""
    if configured:
        return configured
    host = socket.gethostname().split(".")[0]
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in host) or "sensord"


class Member:
    """See the module's docstring."""

    def __init__(self, settings: ClusterSettings, fetch_batch: int = 256) -> None:
        self.settings = settings
        self.name = member_name(settings.member)
        self.fetch_batch = fetch_batch
        self.counters = ClusterCounters()
        self.log_settings = LogSettings(settings.log_stream, settings.log_max_age_s)
        self.ledger: AlertLedger | None = None
        self.connected = threading.Event()
        self.started = threading.Event()  # buckets, log and ledger ready
        self._side: LoopSide | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ledger_due: asyncio.Event | None = None
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], concurrent.futures.Future[Any]]]
        self._jobs = queue.SimpleQueue()
        self.states: PartitionStates | None = None
        self._nc: Client | None = None
        self._lock = threading.Lock()
        self._queued: dict[int, deque[Reading]] = {}  # generation -> readings not taken yet
        self._count = 0
        self._partition_of: dict[int, int] = {}  # generation -> partition
        self._valid_until: dict[int, float] = {}  # partition -> monotonic time (swapped whole)
        self._feeds: dict[int, tuple[int, PartitionFeed, asyncio.Task[None]]] = {}
        self._unsaved: dict[int, bytes] = {}  # handed out, not in the engine yet
        self._saving: dict[int, asyncio.Lock] = {}
        self._dropping_of: dict[int, set[asyncio.Task[None]]] = {}
        self._pumping: set[int] = set()  # generations whose readers run
        self._generations = itertools.count(FIRST_GENERATION)
        self._beat = time.monotonic()
        self._warned_at = -float("inf")
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._woken = False
        self.keeper: LeaseKeeper | None = None

    # the loop's side

    @property
    def wake_fd(self) -> int:
        """Readable when readings or jobs wait (the loop's select watches it)."""
        return self._wake_r

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
            loop.call_soon_threadsafe(stop.set)
        deadline = time.monotonic() + timeout_s
        while thread.is_alive() and time.monotonic() < deadline:
            self.run_jobs(wait_s=0.05)
        if thread.is_alive():
            log.error(
                "cluster member did not stop in time; its leases lapse by themselves",
                waiting_in=self._waiting_in(),
            )
        os.close(self._wake_r)
        os.close(self._wake_w)

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

    def run_jobs(self, wait_s: float = 0.0) -> int:
        """Run what the engine side asked of the loop (between two batches)."""
        self._beat = time.monotonic()
        done = 0
        while True:
            try:
                job, future = self._jobs.get(timeout=wait_s) if wait_s else self._jobs.get_nowait()
            except queue.Empty:
                return done
            wait_s = 0.0
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(job())
                except Exception as exc:
                    future.set_exception(exc)
            done += 1

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

    def clear_wake(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.read(self._wake_r, 4096)
        self._woken = False

    def take(self, limit: int) -> list[tuple[int, Reading]]:
        """Up to ``limit`` readings of partitions owned now, each partition's in log order."""
        now = time.monotonic()
        out: list[tuple[int, Reading]] = []
        with self._lock:
            valid = self._valid_until
            for generation, readings in self._queued.items():
                if not readings or valid.get(self._partition_of[generation], 0.0) <= now:
                    continue
                while readings and len(out) < limit:
                    out.append((generation, readings.popleft()))
                if len(out) >= limit:
                    break
            self._count -= len(out)
        return out

    def partition_of(self, generation: int) -> int | None:
        return self._partition_of.get(generation)

    def owned(self) -> list[int]:
        now = time.monotonic()
        return sorted(p for p, until in self._valid_until.items() if until > now)

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
        nc = await self._connect(stop)
        if nc is None:
            return
        self._nc = nc
        try:
            await self._serve(nc, stop)
        finally:
            try:
                await asyncio.wait_for(nc.drain(), CLOSE_S)
            except (NatsError, TimeoutError):
                with contextlib.suppress(NatsError, TimeoutError):
                    await nc.close()

    async def _connect(self, stop: asyncio.Event) -> Client | None:
        s = self.settings
        assert s.url is not None
        while not stop.is_set():
            try:
                return await nats.connect(
                    servers=[u.strip() for u in s.url.split(",")],
                    name=f"sensord-{self.name}",
                    user=s.user,
                    password=s.password.get_secret_value() if s.password else None,
                    user_credentials=str(s.credentials) if s.credentials else None,
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=RETRY_S,
                    connect_timeout=5,
                    error_cb=self._engine_error,
                    disconnected_cb=self._disconnected,
                    reconnected_cb=self._reconnected,
                )
            except (NatsError, OSError) as exc:
                self._trouble("cannot connect to the engine", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), RETRY_S * 4)
        return None

    async def _serve(self, nc: Client, stop: asyncio.Event) -> None:
        self.connected.set()
        js = nc.jetstream()
        s = self.settings
        while not stop.is_set():
            try:
                await ensure_log(js, self.log_settings)
                self.states = PartitionStates(js, s.name)
                await self.states.open()
                self.ledger = AlertLedger(js, s.name, s.log_max_age_s)
                await self.ledger.open()
                self.keeper = LeaseKeeper(
                    js,
                    LeaseSettings(self.name, s.partitions, s.lease_s, s.name),
                    on_claim=self._claim,
                    on_release=self._release,
                    on_lost=self._lost,
                    alive=self._alive,
                )
                await self.keeper.open()
                break
            except (NatsError, SensordError) as exc:  # the engine, or buckets that do not fit
                self._trouble("cluster member cannot start; retrying", exc)
                await asyncio.sleep(RETRY_S)
        if stop.is_set() or self.keeper is None:
            return
        self.started.set()
        log.info("cluster member started", member=self.name, partitions=s.partitions)
        side_tasks = [
            asyncio.create_task(self._checkpoints(stop)),
            asyncio.create_task(self._ledger_writes(stop)),
        ]
        try:
            await self.keeper.run(stop, after_turn=self._after_turn)
        finally:
            for task in side_tasks:
                task.cancel()
            self._after_turn()
            if self.ledger is not None:
                with contextlib.suppress(NatsError, TimeoutError):
                    await self.ledger.write()

    def _alive(self) -> bool:
        return time.monotonic() - self._beat < self.settings.lease_s * ALIVE_S_OF_LEASE

    def _after_turn(self) -> None:
        keeper = self.keeper
        if keeper is None:
            return
        self.counters.lease_turns_failed = keeper.failed_turns
        valid = {p: h.valid_until for p, h in keeper.held.items()}
        with self._lock:
            self._valid_until = valid
        self.counters.owned = len(self.owned())

    # claiming, releasing, losing a partition

    async def _claim(self, partition: int) -> None:
        started = time.monotonic()
        states, ledger = self._parts()
        for dropping in list(self._dropping_of.get(partition, ())):
            await dropping  # a lost generation of it goes before the new one comes
        data = await states.load(partition)
        await ledger.load()
        generation = next(self._generations)
        with self._lock:
            self._partition_of[generation] = partition
            self._queued[generation] = deque()
        side = self._loop_side()
        after = await self._in_loop(partial(side.restore, partition, generation, data))
        try:
            if self._nc is None:
                raise RuntimeError("the member is not connected")
            feed = PartitionFeed(
                self._nc, partition, after, self._sink(generation), self.log_settings
            )
            await feed.open()
        except BaseException:
            await self._forget(generation, partition)
            raise
        self._pumping.add(generation)
        task = asyncio.create_task(self._pump(generation, feed))
        self._feeds[partition] = (generation, feed, task)
        self.counters.claimed += 1
        self.counters.handover_s = time.monotonic() - started
        log.info(
            "partition taken",
            member=self.name,
            partition=partition,
            after=after,
            state=data is not None,
            took_s=round(self.counters.handover_s, 3),
        )

    async def _release(self, partition: int) -> None:
        """Stop reading it, save its state, forget it here (before the lease goes)."""
        states, _ = self._parts()
        entry = self._feeds.pop(partition, None)
        if entry is not None:
            generation, feed, task = entry
            await self._stop_pump(generation, task, feed)
            data = await self._in_loop(partial(self._loop_side().save, partition, generation, True))
            await self._forget(generation, partition, in_loop=False)
            if data is not None:
                self._unsaved[partition] = data
        async with self._saving.setdefault(partition, asyncio.Lock()):
            data = self._unsaved.get(partition)
            if data is not None:
                await states.save(partition, data)
                del self._unsaved[partition]
        self.counters.released += 1

    def _lost(self, partition: int) -> None:
        self.counters.lost += 1
        self._unsaved.pop(partition, None)  # the next owner goes on from the saved state
        entry = self._feeds.pop(partition, None)
        if entry is not None:
            generation, feed, task = entry
            dropping = asyncio.get_running_loop().create_task(
                self._drop(generation, partition, feed, task)
            )
            pending = self._dropping_of.setdefault(partition, set())
            pending.add(dropping)
            dropping.add_done_callback(pending.discard)

    async def _drop(
        self, generation: int, partition: int, feed: PartitionFeed, task: asyncio.Task[None]
    ) -> None:
        await self._stop_pump(generation, task, feed)
        try:
            await self._forget(generation, partition)
        except Exception as exc:
            log.error("dropping a lost partition failed", partition=partition, error=repr(exc))

    async def _forget(self, generation: int, partition: int, in_loop: bool = True) -> None:
        if in_loop:
            await self._in_loop(partial(self._loop_side().drop, partition, generation))
        with self._lock:
            gone = self._queued.pop(generation, deque())
            self._count -= len(gone)
            self._partition_of.pop(generation, None)

    # readings

    async def _stop_pump(
        self, generation: int, task: asyncio.Task[None], feed: PartitionFeed
    ) -> None:
        """Stop a partition's reader. It checks its flag on every round, and is cancelled
        too; a nats-py fetch was seen to swallow the cancellation (the task went on after an
        engine restart), so the wait is bounded: a reader still running ends on its next
        round, and whatever it read meanwhile is not queued (its generation is gone)."""
        self._pumping.discard(generation)
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=CLOSE_S)
        if not done:
            log.warning("a partition's reader did not stop at once", partition=feed.partition)
        elif not task.cancelled() and task.exception() is not None:
            log.error(
                "a partition's reader had failed",
                partition=feed.partition,
                error=repr(task.exception()),
            )
        with contextlib.suppress(Exception):
            await asyncio.wait_for(feed.close(), CLOSE_S)

    async def _pump(self, generation: int, feed: PartitionFeed) -> None:
        """Keep a request for the partition's readings open (they go to the queue as they
        come, at most ``prefetch`` ahead), until its generation is stopped."""
        unanswered = 0
        while generation in self._pumping:
            room = self.settings.prefetch - self._count
            if room <= 0:
                await asyncio.sleep(0.005)
                continue
            try:
                await feed.fetch(min(self.fetch_batch, room), FETCH_WAIT_S)
                unanswered = 0 if feed.answered else unanswered + 1
                if unanswered and unanswered % CHECK_FEED_EVERY == 0 and await feed.gone():
                    log.info("reading consumer gone; reopened", partition=feed.partition)
                    await feed.reopen()
            except Exception as exc:
                self._trouble("reading a partition failed", exc)
                await asyncio.sleep(RETRY_S)
                with contextlib.suppress(Exception):
                    await feed.reopen()

    def _sink(self, generation: int) -> Callable[[Reading], None]:
        """Where a generation's readings go as they come: its queue (none once forgotten)."""

        def queue(reading: Reading) -> None:
            with self._lock:
                queued = self._queued.get(generation)
                if queued is None:
                    return
                queued.append(reading)
                self._count += 1
            self.counters.fetched += 1
            self._wake()

        return queue

    # saving on the way

    async def _checkpoints(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.settings.checkpoint_s)
            if stop.is_set():
                return
            for partition, (generation, _, _) in sorted(self._feeds.items()):
                try:
                    await self._checkpoint(partition, generation)
                except NatsError as exc:
                    self._trouble("saving a partition's state failed", exc)

    async def _checkpoint(self, partition: int, generation: int) -> None:
        states, _ = self._parts()
        async with self._saving.setdefault(partition, asyncio.Lock()):
            if self._feeds.get(partition, (None,))[0] != generation:
                return  # let go or lost meanwhile
            if self.keeper is None or partition not in self.keeper.owned():
                return  # its lease lapsed (the engine away): another member may own it now
            data = await self._in_loop(
                partial(self._loop_side().save, partition, generation, False)
            )
            if data is None:
                self.counters.checkpoints_deferred += 1
                return
            await states.save(partition, data)
            self.counters.checkpoints += 1

    async def _ledger_writes(self, stop: asyncio.Event) -> None:
        """The ledger's keys as soon as the broker confirmed their events (a failed write
        is tried again after ``LEDGER_RETRY_S``)."""
        due = self._ledger_due
        while not stop.is_set() and due is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(due.wait(), LEDGER_RETRY_S)
            due.clear()
            if self.ledger is None:
                continue
            try:
                await self.ledger.write()
            except NatsError as exc:
                self._trouble("writing the alert ledger failed", exc)

    # plumbing

    async def _in_loop(self, job: Callable[[], T]) -> T:
        """Run ``job`` in the scoring loop's thread, between two batches."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._jobs.put((job, future))
        self._wake()
        return await asyncio.wrap_future(future)

    def _wake(self) -> None:
        if not self._woken:
            self._woken = True
            with contextlib.suppress(BlockingIOError, OSError):
                os.write(self._wake_w, b"x")

    def _parts(self) -> tuple[PartitionStates, AlertLedger]:
        if self.ledger is None or self.states is None:
            raise RuntimeError("the member is not started")
        return self.states, self.ledger

    def _loop_side(self) -> LoopSide:
        if self._side is None:
            raise RuntimeError("the member is not started")
        return self._side

    def _trouble(self, what: str, exc: BaseException) -> None:
        self.counters.engine_errors += 1
        now = time.monotonic()
        if now - self._warned_at >= WARN_EVERY_S:
            self._warned_at = now
            log.warning(
                what,
                member=self.name,
                error=str(exc) or type(exc).__name__,
                engine_errors=self.counters.engine_errors,
            )

    async def _engine_error(self, exc: Exception) -> None:
        self._trouble("engine connection error", exc)

    async def _disconnected(self) -> None:
        self.connected.clear()
        log.warning("engine connection lost; reconnecting", member=self.name)

    async def _reconnected(self) -> None:
        self.connected.set()
        log.info("engine connection back", member=self.name)
