"""Which alert events the broker has confirmed, in a NATS KV bucket: a replay raises none twice.

A member that takes a partition over replays its readings since the last saved state; the
alerts those readings raise carry the ids the dead member's did (``model|stream|raised_ts``,
core/alert.py). Before an alert event is published the member looks its key
(``<alert_id>.<event>``) up here; one the broker has confirmed (PUBACK) is not published
again. The member writes a key once the broker confirmed the event, and loads every key
when it claims a partition. Keys go with the bucket's ``ttl`` (the readings log's age: a
replay cannot reach further back).

What stays open: an event the broker confirmed in the milliseconds before a member died,
whose key it had not written yet, comes again after the takeover, with the same id.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field

import orjson
from nats.js.client import JetStreamContext
from nats.js.errors import BucketNotFoundError, NoKeysError
from nats.js.kv import KeyValue

_SAFE = re.compile(r"^[A-Za-z0-9_-]+$")


def key_of(payload: bytes) -> str | None:
    """``<alert_id>.<event>`` of an alert event's payload; None for one without an id."""
    try:
        event = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(event, dict):
        return None
    alert_id, kind = event.get("alert_id"), event.get("event")
    if not isinstance(alert_id, str) or not isinstance(kind, str):
        return None
    if not _SAFE.match(alert_id) or not _SAFE.match(kind):
        return None
    return f"{alert_id}.{kind}"


@dataclass
class AlertLedger:
    """The confirmed alert events this member knows of (see the module's docstring).

    ``seen`` and ``confirmed`` are called by the scoring loop's thread; ``load`` and
    ``write`` by the member's engine thread."""

    js: JetStreamContext
    name: str = "sensord"
    ttl_s: float = 86_400.0
    known: set[str] = field(default_factory=set)
    unwritten: list[str] = field(default_factory=list)  # confirmed, not in the bucket yet
    repeats: int = 0
    _kv: KeyValue | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    async def open(self) -> None:
        bucket = f"{self.name}_alerts"
        try:
            self._kv = await self.js.key_value(bucket)
        except BucketNotFoundError:
            self._kv = await self.js.create_key_value(bucket=bucket, ttl=self.ttl_s, history=1)

    async def load(self) -> int:
        """Every confirmed event in the bucket (before a partition's replay)."""
        try:
            keys = await self._bucket().keys()
        except NoKeysError:
            keys = []
        with self._lock:
            self.known.update(keys)
        return len(keys)

    async def write(self) -> int:
        """Write the events confirmed since the last write (a failed one is kept for the
        next)."""
        with self._lock:
            keys, self.unwritten = self.unwritten, []
        kv = self._bucket()
        for done, key in enumerate(keys):
            try:
                await kv.put(key, b"")
            except BaseException:
                with self._lock:
                    self.unwritten[:0] = keys[done:]
                raise
        return len(keys)

    def seen(self, payload: bytes) -> bool:
        """Whether the broker has confirmed this event already (counted as a repeat)."""
        key = key_of(payload)
        if key is None:
            return False
        with self._lock:
            repeat = key in self.known
        self.repeats += repeat
        return repeat

    def confirmed(self, payload: bytes) -> None:
        """The broker confirmed this event (its PUBACK)."""
        key = key_of(payload)
        if key is None:
            return
        with self._lock:
            self.known.add(key)
            self.unwritten.append(key)

    def _bucket(self) -> KeyValue:
        if self._kv is None:
            raise RuntimeError("AlertLedger.open() was not called")
        return self._kv
