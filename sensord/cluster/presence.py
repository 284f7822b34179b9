"""A member's name, held in the engine: one live member per name.

Partitions' leases are held by name (leases.py), so two members with one name would both
count every lease as their own. The name is therefore a key of ``<name>_members`` (the
bucket's ``ttl`` is the lease time) that only one member can hold:

- **Taking it** at the start is a ``create``, which the engine grants to one member only.
  If the key is there, its holder is either live (it rewrites the key every turn, a third
  of the lease time) or gone without deleting it (killed; its key lapses within one lease
  time). So the newcomer looks at the key until one of the two happens: rewritten, the
  name is taken and the member refuses to start (``NameTakenError``); lapsed, it creates it.
- **Keeping it**: every turn an ``update`` at the revision it last wrote. Refused, the key
  lapsed (the engine was away, or this member was stuck) or another member took it; a
  ``create`` tells which. Taken, this member stops rather than fight over the name.
- **Letting it go** at a clean stop: a ``delete`` at that revision (never another's key).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson
from nats.errors import Error as NatsError
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from sensord.errors import NameTakenError
from sensord.logs import get_logger

log = get_logger(__name__)
LOOK_S = 0.1  # how often a newcomer looks at a held name's key
RETRY_S = 0.5  # after the engine did not answer


@dataclass
class Presence:
    """This member's key in the members bucket (see the module's docstring)."""

    kv: KeyValue
    member: str
    lease_s: float
    clock: Callable[[], float] = time.monotonic
    revision: int | None = None
    instance: str = field(default_factory=lambda: uuid.uuid4().hex)

    @property
    def held(self) -> bool:
        return self.revision is not None

    async def take(self, stop: asyncio.Event) -> None:
        """Hold the name, waiting for a dead holder's key to lapse; ``NameTakenError`` if a
        live member holds it. Tried again while the engine does not answer."""
        seen: int | None = None  # the revision of the key found at the start
        while not stop.is_set():
            try:
                self.revision = await self.kv.create(self.member, self._record())
                return
            except KeyWrongLastSequenceError:
                pass
            except NatsError as exc:
                log.warning("member name not taken yet", member=self.member, error=str(exc))
                await asyncio.sleep(RETRY_S)
                continue
            revision, holder = await self._holder()
            if seen is None:
                seen = revision
                log.info("member name held; waiting to see if its holder lives", **holder)
            elif revision is not None and revision != seen:
                raise _taken(self.member, holder)
            await asyncio.sleep(LOOK_S)

    async def renew(self) -> None:
        """Rewrite the key at the revision last written; ``NameTakenError`` if it is another's."""
        try:
            self.revision = await self.kv.update(self.member, self._record(), last=self.revision)
            return
        except KeyWrongLastSequenceError:
            pass
        try:  # lapsed while this member could not write: free, unless another took it
            self.revision = await self.kv.create(self.member, self._record())
        except KeyWrongLastSequenceError:
            self.revision = None
            raise _taken(self.member, (await self._holder())[1]) from None
        log.warning("member name held again after its key lapsed", member=self.member)

    async def release(self) -> None:
        if self.revision is None:
            return
        with contextlib.suppress(KeyWrongLastSequenceError, KeyNotFoundError):
            await self.kv.delete(self.member, last=self.revision)
        self.revision = None

    def _record(self) -> bytes:
        return orjson.dumps(
            {
                "member": self.member,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "instance": self.instance,
                "at": time.time(),
            }
        )

    async def _holder(self) -> tuple[int | None, dict[str, object]]:
        """The key's revision and what its holder wrote (None and {}: gone meanwhile)."""
        try:
            entry = await self.kv.get(self.member)
        except KeyNotFoundError:
            return None, {}
        try:
            record = orjson.loads(entry.value or b"{}")
        except orjson.JSONDecodeError:
            record = {}
        return entry.revision, record if isinstance(record, dict) else {}


def member_name(configured: str | None) -> str:
    """The configured name, or the host's (made safe for a KV key): two members on one
    host without ``member`` set have the same, which ``Presence.take`` refuses."""
    if configured:
        return configured
    host = socket.gethostname().split(".")[0]
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in host) or "sensord"


def _taken(member: str, holder: dict[str, object]) -> NameTakenError:
    where = f" (host {holder.get('host', '?')}, pid {holder.get('pid', '?')})" if holder else ""
    return NameTakenError(
        f"cluster member name {member!r} is already used by a live member{where}: "
        "every member needs its own name; set [cluster] member to a name no other member uses"
    )
