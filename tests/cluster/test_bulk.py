"""The bulk parser (cluster/bulk.py): a bulk subscription's messages come out of each read
whole and in order, however the bytes are cut into reads, with or without headers, with
line ends inside payloads; everything else goes through nats-py as before. First on bytes
fed by hand, then on a real nats-server beside nats-py's own subscriptions."""

from __future__ import annotations

import asyncio
import itertools
import random

import nats
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import ProtocolError
from nats.protocol.parser import Parser

from sensord.cli.engine import LocalEngine
from sensord.cluster.bulk import BulkParser, Raw, install, is_status

BULK, OTHER = 7, 8  # sids
REPLY = b"$JS.ACK.SENSORD_READINGS.c1.1.4711.12.1700000000000000000.3"


def msg(subject: bytes, payload: bytes, reply: bytes = b"", sid: int = BULK) -> bytes:
    middle = b" " + reply if reply else b""
    head = b"MSG %s %d%s %d\r\n" % (subject, sid, middle, len(payload))
    return head + payload + b"\r\n"


def hmsg(subject: bytes, headers: bytes, payload: bytes, reply: bytes = b"") -> bytes:
    middle = b" " + reply if reply else b""
    sizes = b"%d %d" % (len(headers), len(headers) + len(payload))
    return b"HMSG %s %d%s %s\r\n" % (subject, BULK, middle, sizes) + headers + payload + b"\r\n"


GATEWAY = b"NATS/1.0\r\nNmqtt-Pub: 1\r\n\r\n"  # what the MQTT gateway adds to a reading
EXPIRED = b"NATS/1.0 408 Request Timeout\r\n\r\n"


def reading(name: bytes, payload: bytes, headers: bytes | None = None) -> tuple[bytes, Raw]:
    """A reading's message on the wire (MSG, or HMSG with headers) and what the bulk
    handler gets of it."""
    subject = b"part.1.sensors.%s.value" % name
    wire = (
        msg(subject, payload, REPLY) if headers is None else hmsg(subject, headers, payload, REPLY)
    )
    return wire, (subject, REPLY, headers, payload)


STREAM: list[tuple[bytes, Raw | None]] = [  # the wire, and what the bulk handler gets of it
    reading(b"a", b'{"value": 1}'),
    (b"PONG\r\n", None),
    (msg(b"x.other", b"not ours", sid=OTHER), None),
    reading(b"b", b"line\r\nends\r\n"),
    reading(b"c", b"2.5", GATEWAY),
    (b"+OK\r\n", None),
    (msg(b"bare", b""), (b"bare", b"", None, b"")),  # no reply, no payload
    (hmsg(b"_INBOX.x", EXPIRED, b""), (b"_INBOX.x", b"", EXPIRED, b"")),
    reading(b"e", b"x" * 70_000),  # more than a read of nats-py's (32 KiB)
]


class Fed:
    """A bulk parser on an unconnected client, with another subscription beside its own."""

    def __init__(self) -> None:
        self.nc = Client()
        self.parser = BulkParser(self.nc)
        self.got: list[Raw] = []
        self.reads: list[int] = []  # how many messages each handing over held
        self.parser.bulk[BULK] = self._handle
        self.other = Subscription(self.nc, OTHER, "x.other")  # no callback: its queue
        self.nc._subs[OTHER] = self.other

    def _handle(self, raws: list[Raw]) -> None:
        self.got.extend(raws)
        self.reads.append(len(raws))

    def feed(self, chunks: list[bytes]) -> None:
        async def run() -> None:
            for chunk in chunks:
                await self.parser.parse(chunk)

        asyncio.run(run())

    def others(self) -> list[bytes]:
        queue = self.other._pending_queue
        return [queue.get_nowait().data for _ in range(queue.qsize())]


def cut(data: bytes, points: list[int]) -> list[bytes]:
    edges = [0, *sorted(points), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


WIRE = b"".join(wire for wire, _ in STREAM)
EXPECTED = [raw for _, raw in STREAM if raw is not None]


def test_a_bulk_subscriptions_messages_come_whole_and_in_order_and_the_rest_to_nats_py() -> None:
    fed = Fed()
    fed.feed([WIRE])
    assert fed.got == EXPECTED
    assert fed.others() == [b"not ours"]
    assert fed.parser.buf == bytearray()
    assert fed.nc.stats["in_msgs"] == len(EXPECTED) + 1  # nats-py counts its own
    assert fed.reads == [len(EXPECTED)]  # one read: one handing over


@pytest.mark.parametrize("seed", range(40))
def test_however_the_bytes_are_cut_into_reads_the_messages_are_the_same(seed: int) -> None:
    rng = random.Random(seed)
    fed = Fed()
    if seed < 20:  # one cut anywhere, the first 20 at spots inside the lines
        points = [rng.randrange(1, 200) if seed < 10 else rng.randrange(1, len(WIRE))]
    else:
        points = rng.sample(range(1, len(WIRE)), rng.randrange(2, 60))
    fed.feed(cut(WIRE, points))
    assert fed.got == EXPECTED
    assert fed.others() == [b"not ours"]
    assert fed.parser.buf == bytearray()


def test_every_single_cut_of_a_small_stream() -> None:
    small = b"".join(wire for wire, raw in STREAM[:8])
    for point in range(1, len(small)):
        fed = Fed()
        fed.feed(cut(small, [point]))
        assert fed.got == EXPECTED[:-1], point
        assert fed.others() == [b"not ours"], point


def test_a_status_is_told_from_headers_and_a_bad_line_fails_as_in_nats_py() -> None:
    assert is_status(EXPIRED) and is_status(b"NATS/1.0 404 No Messages\r\n\r\n")
    assert not is_status(GATEWAY) and not is_status(None)
    fed = Fed()
    with pytest.raises(ProtocolError):
        fed.feed([msg(b"a", b"1") + b"BOGUS LINE\r\n" + msg(b"b", b"2")])
    assert [raw[0] for raw in fed.got] == [b"a"]  # what came before it was handed over


def test_install_takes_only_nats_pys_parser_and_only_while_it_holds_nothing() -> None:
    nc = Client()
    nc._ps.buf.extend(b"MSG half")  # a message half read: not now
    assert install(nc) is None
    nc._ps.buf.clear()
    parser = install(nc)
    assert isinstance(parser, BulkParser) and nc._ps is parser and install(nc) is parser

    class Other(Parser):
        pass

    nc._ps = Other(nc)  # a nats-py laid out otherwise: feeds keep its callbacks
    assert install(nc) is None


def test_on_a_real_server_beside_nats_pys_own_subscriptions_and_requests(
    engine: LocalEngine,
) -> None:
    payloads = [b"p%d" % i for i in range(2000)] + [b"a\r\nb", b"y" * 100_000, b""]

    async def run() -> None:
        nc = await nats.connect(engine.url)
        parser = install(nc)
        assert parser is not None
        got: list[Raw] = []
        bulk = await nc.subscribe("bulk.>")
        parser.bulk[bulk._id] = got.extend
        theirs: list[bytes] = []

        async def keep(message: Msg) -> None:
            theirs.append(message.data)

        async def answer(message: Msg) -> None:
            await message.respond(message.data.upper())

        await nc.subscribe("theirs", cb=keep)
        await nc.subscribe("ask", cb=answer)
        for i, payload in enumerate(payloads):
            if i % 2:
                await nc.publish(f"bulk.{i}", payload, headers={"Nmqtt-Pub": "1"})
            else:
                await nc.publish(f"bulk.{i}", payload, reply="r.x")
            if i % 100 == 0:
                await nc.publish("theirs", b"%d" % i)
        answered = await nc.request("ask", b"hello", timeout=5)  # new-style: its own inbox
        await nc.flush()  # a PING and its PONG, through the bulk parser
        for _ in range(100):
            if len(got) == len(payloads):
                break
            await asyncio.sleep(0.02)
        assert [raw[3] for raw in got] == payloads
        assert [raw[0] for raw in got] == [b"bulk.%d" % i for i in range(len(payloads))]
        assert all((raw[2] is not None) == (i % 2 == 1) for i, raw in enumerate(got))
        assert all(raw[1] == (b"" if i % 2 else b"r.x") for i, raw in enumerate(got))
        assert answered.data == b"HELLO"
        assert theirs == [b"%d" % i for i in range(0, len(payloads), 100)]
        await nc.close()

    asyncio.run(run())
