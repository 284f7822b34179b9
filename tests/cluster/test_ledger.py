"""The alert ledger in a real engine's KV bucket: what one member confirmed, the member that
takes its partitions over finds, and withholds."""

from __future__ import annotations

import asyncio

import nats
import orjson

from sensord.cli.engine import LocalEngine
from sensord.cluster.ledger import AlertLedger

RAISED = orjson.dumps({"event": "raised", "alert_id": "2b95d8c0-9d2c-5b41-a60e-67ff252bccf6"})
CLEARED = orjson.dumps({"event": "cleared", "alert_id": "2b95d8c0-9d2c-5b41-a60e-67ff252bccf6"})


def test_a_confirmed_alert_is_known_to_the_next_member(engine: LocalEngine) -> None:
    async def test() -> None:
        nc = await nats.connect(engine.url)
        dying = AlertLedger(nc.jetstream(), "t", ttl_s=60)
        await dying.open()
        assert not dying.seen(RAISED)
        dying.confirmed(RAISED)
        assert await dying.write() == 1 and await dying.write() == 0
        taking = AlertLedger(nc.jetstream(), "t", ttl_s=60)  # another member's view
        await taking.open()
        assert not taking.seen(RAISED)  # not loaded yet: a claim loads it first
        assert await taking.load() == 1
        assert taking.seen(RAISED) and not taking.seen(CLEARED)
        assert taking.repeats == 1
        await nc.close()

    asyncio.run(test())
