"""Partition leases in NATS KV buckets: each partition owned by one live member at a time.

Two buckets, both with the lease time as their ``ttl`` (the engine drops a key that long
after its last write; nats-server 2.9 has no per-key TTL, and measured there: a key written
once was gone 3.006 to 3.017 s after a write with ``ttl`` = 3 s, and a write renews it):

- ``<name>_members``: one key per live member, rewritten every turn: the members are the
  keys there. A member that dies stops writing and is gone one lease time later. Only one
  live member holds a name (presence.py): a second one refuses to start, and a member
  whose name another took stops (its leases left to the name's holder).
- ``<name>_leases``: key ``p<n>`` holds the member owning partition n. A member claims a
  partition with ``create`` (only one can: the engine refuses a create of a key that
  exists, measured with five at once), renews it with ``update`` at the revision it last
  wrote (so a lease that expired, or that another member took since, cannot be renewed by
  mistake: the engine answers "wrong last sequence"), and lets it go with ``delete`` at that
  revision.

Watchers do not see keys expire (measured on 2.9.10: no event at all), so every member
looks at both buckets on each turn (every third of the lease time) and acts on the plan
(assign.py) for itself.

**Never two owners.** A member counts a partition as its own only until the time it sent
its last successful write plus the lease time less a margin. The engine's expiry counts from
when the write arrived, which is later: so by the time another member can create the lease,
the old owner has stopped counting it as its own, even if it is stuck or cut off and never
learns that it lost it (as long as both machines' clocks run at the same rate).

**Handing over** a partition the plan gives to another member: the owner awaits
``on_release`` (stop consuming it, save its state) before it deletes the lease; the new owner
awaits ``on_claim`` (restore the state) once its create succeeded, before it counts the
partition as its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from nats.errors import Error as NatsError
from nats.js.client import JetStreamContext
from nats.js.errors import (
    BucketNotFoundError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
    NoKeysError,
)
from nats.js.kv import KeyValue

from sensord.cluster.assign import plan
from sensord.cluster.presence import Presence
from sensord.errors import ClusterError, NameTakenError
from sensord.logs import get_logger

log = get_logger(__name__)
Hook = Callable[[int], Awaitable[None]]
Lost = Callable[[int], None]
TURNS_PER_LEASE = 3  # renew three times per lease time: one lost write is not a lost lease
MARGIN = 0.2  # of the lease time: a member stops counting a lease this much before expiry
WARN_EVERY_S = 10.0  # failed turns are counted; logged at most this often


async def _noop(partition: int) -> None:
    del partition


def _ignore(partition: int) -> None:
    del partition


def _always() -> bool:
    return True


@dataclass(frozen=True)
class LeaseSettings:
    member: str
    partitions: int
    lease_s: float = 10.0
    name: str = "sensord"  # the buckets are <name>_members and <name>_leases

    @property
    def turn_s(self) -> float:
        return self.lease_s / TURNS_PER_LEASE


@dataclass
class Held:
    revision: int
    valid_until: float  # local monotonic time: the lease is ours until then


@dataclass
class LeaseKeeper:
    """Keeps this member's leases (see the module's docstring)."""

    js: JetStreamContext
    settings: LeaseSettings
    on_claim: Hook = _noop
    on_release: Hook = _noop
    on_lost: Lost = _ignore  # taken or expired without a release: nothing to save
    alive: Callable[[], bool] = _always  # renew only while the member's loop makes progress
    clock: Callable[[], float] = time.monotonic
    held: dict[int, Held] = field(default_factory=dict)
    members_kv: KeyValue | None = None
    leases_kv: KeyValue | None = None
    presence: Presence | None = None
    failed_turns: int = 0
    _warned_at: float = -float("inf")

    async def open(self) -> None:
        """Bind the two buckets, creating them if this is the first member."""
        self.members_kv = await self._bucket("members")
        self.leases_kv = await self._bucket("leases")

    async def _bucket(self, kind: str) -> KeyValue:
        name = f"{self.settings.name}_{kind}"
        try:
            kv = await self.js.key_value(name)
        except BucketNotFoundError:
            kv = await self.js.create_key_value(bucket=name, ttl=self.settings.lease_s, history=1)
        ttl = (await kv.status()).ttl
        if ttl is None or abs(ttl - self.settings.lease_s) > 1e-3:
            raise ClusterError(
                f"bucket {name}: its lease time is {ttl} s, this member's {self.settings.lease_s}"
                " s: every member must use the same"
            )
        return kv

    def owned(self, now: float | None = None) -> frozenset[int]:
        """The partitions this member owns now."""
        now = self.clock() if now is None else now
        return frozenset(p for p, h in self.held.items() if h.valid_until > now)

    async def turn(self) -> frozenset[int]:
        """One round: say this member lives, look, renew, let go and claim per the plan.
        Nothing while the member's loop is stuck: it is then not alive, and its leases
        lapse, so that another member takes its partitions over."""
        if not self.alive():
            self.failed_turns += 1
            return self.owned()
        members_kv, leases_kv = self._buckets()
        s = self.settings
        await self._presence().renew()
        live = await self._members(members_kv) | {s.member}
        leases = await self._leases(leases_kv)
        planned = plan(live, {p: owner for p, (owner, _) in leases.items()}, s.partitions)
        for partition in sorted(self.held):
            if leases.get(partition, ("", 0))[0] != s.member:
                self._lost(partition, "taken or expired")
        ours = sorted((p, revision) for p, (owner, revision) in leases.items() if owner == s.member)
        # Renewals first: a release waits for its partition's commit (seconds, at worst),
        # and the leases kept must not lapse meanwhile.
        await self._renew([(p, r) for p, r in ours if planned.get(p) == s.member])
        for partition, revision in ours:
            if planned.get(partition) != s.member:
                await self._release(leases_kv, partition, revision, to=planned.get(partition))
        for partition in sorted(p for p, m in planned.items() if m == s.member):
            if partition not in leases:
                await self._claim(leases_kv, partition)
        return self.owned()

    async def run(self, stop: asyncio.Event, after_turn: Callable[[], None] | None = None) -> None:
        """Turn until ``stop``; then let every lease go (a clean stop hands over at once)."""
        await self.open()
        await self._presence().take(stop)  # NameTakenError: another live member has the name
        while not stop.is_set():
            started = self.clock()
            try:
                await self._turn_or_wait()
            except NameTakenError:
                for partition in sorted(self.held):  # the name's leases: its holder's now
                    self._lost(partition, "member name taken")
                raise
            if after_turn is not None:
                after_turn()
            # The next turn is due a turn's time after this one started, not after it
            # ended: a slow turn (a loaded box) must not stretch the time between two
            # renewals past the time a lease is counted valid.
            due_in = max(0.0, started + self.settings.turn_s - self.clock())
            with contextlib.suppress(TimeoutError):  # a turn's wait ended, not the keeper
                await asyncio.wait_for(stop.wait(), due_in)
        try:
            await self.release_all()
        except NatsError as exc:  # the engine is away: the leases lapse by themselves
            log.warning("leases not released", member=self.settings.member, error=str(exc))

    async def _turn_or_wait(self) -> None:
        """A turn; if the engine is away or slow, the next turn tries again. Meanwhile the
        leases this member holds lapse by their own time (``owned`` stops counting them),
        so it never owns a partition it could not renew."""
        try:
            await self.turn()
        except NameTakenError:
            raise
        except Exception as exc:
            if not isinstance(exc, NatsError):
                log.error("lease turn failed", member=self.settings.member, error=repr(exc))
            self.failed_turns += 1
            now = self.clock()
            if now - self._warned_at >= WARN_EVERY_S:
                self._warned_at = now
                log.warning(
                    "lease turn failed",
                    member=self.settings.member,
                    error=str(exc) or type(exc).__name__,
                    failed_turns=self.failed_turns,
                )

    async def release_all(self) -> None:
        _, leases_kv = self._buckets()
        for partition, held in sorted(self.held.items()):
            try:
                await self._release(leases_kv, partition, held.revision, to=None)
            except Exception as exc:
                log.error("partition not released", partition=partition, error=repr(exc))
        await self._presence().release()

    # one lease

    async def _claim(self, kv: KeyValue, partition: int) -> None:
        sent = self.clock()
        try:
            revision = await kv.create(_key(partition), self.settings.member.encode())
        except KeyWrongLastSequenceError:
            return  # another member was quicker, or the old owner's lease is still there
        await self.on_claim(partition)
        self.held[partition] = Held(revision, self._valid_until(sent))
        log.info("partition claimed", member=self.settings.member, partition=partition)

    async def _renew(self, leases: list[tuple[int, int]]) -> None:
        """Renew these leases (partition, revision) all at once: one round trip, not one
        per partition, since the time a turn takes is time a lease is not renewed. Each
        counts as valid from before the first was sent."""
        _, kv = self._buckets()
        sent = self.clock()
        member = self.settings.member.encode()
        renewed = await asyncio.gather(
            *(kv.update(_key(p), member, last=revision) for p, revision in leases),
            return_exceptions=True,
        )
        failed: BaseException | None = None
        for (partition, _), outcome in zip(leases, renewed, strict=True):
            if isinstance(outcome, KeyWrongLastSequenceError):
                self._lost(partition, "renewal refused")
            elif isinstance(outcome, BaseException):
                failed = failed or outcome  # the others' renewals still count
            else:
                if partition not in self.held:  # ours in the bucket, from before a restart
                    await self.on_claim(partition)
                self.held[partition] = Held(outcome, self._valid_until(sent))
        if failed is not None:
            raise failed

    async def _release(self, kv: KeyValue, partition: int, revision: int, to: str | None) -> None:
        await self.on_release(partition)
        self.held.pop(partition, None)
        with contextlib.suppress(KeyWrongLastSequenceError):  # expired or taken meanwhile
            await kv.delete(_key(partition), last=revision)
        log.info("partition released", member=self.settings.member, partition=partition, to=to)

    def _lost(self, partition: int, why: str) -> None:
        if self.held.pop(partition, None) is not None:
            self.on_lost(partition)
            log.warning(
                "partition lease lost", member=self.settings.member, partition=partition, reason=why
            )

    def _valid_until(self, sent: float) -> float:
        return sent + self.settings.lease_s * (1 - MARGIN)

    # looking

    def _buckets(self) -> tuple[KeyValue, KeyValue]:
        if self.members_kv is None or self.leases_kv is None:
            raise ClusterError("the lease keeper is not open")
        return self.members_kv, self.leases_kv

    def _presence(self) -> Presence:
        if self.presence is None:
            members_kv, _ = self._buckets()
            self.presence = Presence(members_kv, self.settings.member, self.settings.lease_s)
        return self.presence

    @staticmethod
    async def _members(kv: KeyValue) -> set[str]:
        try:
            return set(await kv.keys())
        except NoKeysError:
            return set()

    async def _leases(self, kv: KeyValue) -> dict[int, tuple[str, int]]:
        return await leases_in(kv, self.settings.partitions)


async def leases_in(kv: KeyValue, partitions: int) -> dict[int, tuple[str, int]]:
    """partition → (owner, revision) of every lease in the bucket now (also what the tests
    and benchmarks read to see who owns what)."""
    entries = await asyncio.gather(*(_entry(kv, p) for p in range(partitions)))
    return {p: entry for p, entry in enumerate(entries) if entry is not None}


async def _entry(kv: KeyValue, partition: int) -> tuple[str, int] | None:
    """(owner, revision) of a partition's lease; None if it has none. Read all at once by
    ``leases_in``: one round trip per turn instead of one per partition."""
    try:
        entry = await kv.get(_key(partition))
    except KeyNotFoundError:
        return None
    if entry.value and entry.revision is not None:
        return entry.value.decode(), entry.revision
    return None


def _key(partition: int) -> str:
    return f"p{partition}"
