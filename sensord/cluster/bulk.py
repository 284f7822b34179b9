"""nats-py's protocol parser with a bulk path: the messages of chosen subscriptions come
out of each read as one list, without a ``Msg``, a queue and a callback per message.

For every message nats-py matches a regex on its buffer, awaits ``_process_msg``, which
decodes the subject and reply, parses the headers into a dict, builds a ``Msg`` and puts it
on the subscription's queue, whose task awaits it and awaits the callback with it.
Measured (cProfile, one member draining a backlog, benchmarks/clusterprofile.py), that was
most of a member's engine thread. A partition's feed needs of a message only its subject,
reply (its position in the log), payload and whether it is a status (the end of a pull
request).

``BulkParser`` is nats-py's ``Parser`` with one change: a MSG or HMSG whose sid is in
``bulk`` is kept as a ``Raw`` (subject, reply, header block, payload: bytes as they came),
and each such sid's list goes to its handler once, at the end of the read it came in (in
the order it came). Every other operation (other subscriptions' messages, PING, INFO,
-ERR, ...) goes through nats-py's own code, in order. ``install`` puts one in place of a
client's parser while that parser holds no partial operation (nothing to carry over); if
it cannot (a nats-py that is laid out otherwise), feeds keep nats-py's callbacks.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from nats.aio.client import Client
from nats.errors import ProtocolError
from nats.protocol.parser import AWAITING_CONTROL_LINE, Parser

from sensord.logs import get_logger

log = get_logger(__name__)

# nats-py's own MSG_RE and HMSG_RE, without their ``\A``: ``match`` at a position anchors
# there, and ``\A`` would match only at the buffer's start.
MSG = re.compile(rb"MSG\s+([^\s]+)\s+([^\s]+)\s+(([^\s]+)[^\S\r\n]+)?(\d+)\r\n")
HMSG = re.compile(rb"HMSG\s+([^\s]+)\s+([^\s]+)\s+(([^\s]+)[^\S\r\n]+)?([\d]+)\s+(\d+)\r\n")
M, H = ord("M"), ord("H")
CRLF = b"\r\n"
BLOCK_END = CRLF + CRLF  # a header block ends with an empty line
STATUS_AT = len(b"NATS/1.0")  # a status header block: ``NATS/1.0 404 No Messages``


# One message as it came: subject, reply, header block (None without one), payload.
Raw = tuple[bytes, bytes, bytes | None, bytes]
BulkHandler = Callable[[list[Raw]], None]


def is_status(headers: bytes | None) -> bool:
    """Whether a header block is the engine's status line (404 no messages, 408 request
    expired, 409 ...), as nats-py tells them: a space after the version."""
    return headers is not None and headers[STATUS_AT : STATUS_AT + 1] == b" "


class BulkParser(Parser):
    """See the module's docstring.

    The bulk subscriptions' messages at the buffer's start are taken in one pass over its
    lines (``_bulk``, most of them). What that does not take (another subscription's
    message, any other operation, a payload with a line end in it, a message not all here
    yet, anything malformed) is taken one operation at a time as nats-py does (``_one``),
    and then the pass goes on.
    """

    def __init__(self, nc: Client) -> None:
        super().__init__(nc)
        self.bulk: dict[int, BulkHandler] = {}  # sid -> its handler

    async def parse(self, data: bytes = b"") -> None:
        self.buf.extend(data)
        got: dict[int, list[Raw]] = {}
        try:
            buf = self.buf
            while buf:
                del buf[: self._bulk(buf, got)]
                if not buf or not await self._one(buf, got):
                    break  # all taken, the rest still coming, or the connection reset
        finally:
            self._hand_over(got)

    def _bulk(self, buf: bytearray, got: dict[int, list[Raw]]) -> int:
        """The bulk subscriptions' messages at the buffer's start; how many bytes they
        took. The buffer is split at its line ends in one call: a message is then its
        control line, its header block's lines (as many as the block has line ends) and its
        payload, which the sizes confirm (else: a line end inside the payload, or a message
        not all here yet; ``_one`` takes it). Once per message: plain steps only."""
        data = bytes(buf)
        pieces = data.split(CRLF)
        last_piece, bulk, i, pos, last = len(pieces) - 1, self.bulk, 0, 0, -1
        raws: list[Raw] = []
        while i < last_piece:  # the last piece: what follows the last line end
            line = pieces[i]
            tokens = line.split(b" ")
            op, count = tokens[0], len(tokens)
            try:  # MSG <subject> <sid> [reply] <size>, HMSG ... [reply] <header size> <size>
                if op == b"MSG" and count in {4, 5}:
                    headers, size, reply = None, int(tokens[-1]), count == 5
                    j = i + 1
                elif op == b"HMSG" and count in {5, 6}:
                    start = pos + len(line) + len(CRLF)
                    header = int(tokens[-2])
                    headers, size, reply = data[start : start + header], int(tokens[-1]), count == 6
                    if header <= 0 or not headers.endswith(BLOCK_END):
                        break  # not all here yet, or not a header block: nats-py says so
                    size -= header
                    j = i + 1 + headers.count(CRLF)
                else:
                    break
                sid = int(tokens[2])
            except ValueError:
                break  # malformed: nats-py's parse says so (_one)
            if j >= last_piece or sid not in bulk or len(pieces[j]) != size:
                break  # not all here yet, not a bulk subscription's, or a line end inside
            if sid != last:
                last, raws = sid, got.setdefault(sid, [])
            raws.append((tokens[1], tokens[3] if reply else b"", headers, pieces[j]))
            pos += len(line) + (len(headers) if headers is not None else 0) + size + 4
            i = j + 1
        return pos

    async def _one(self, buf: bytearray, got: dict[int, list[Raw]]) -> bool:
        """The operation at the buffer's start, as nats-py's parse takes it; False if it
        is not all here yet, or the connection was reset meanwhile."""
        first = buf[0]
        found = MSG.match(buf) if first == M else HMSG.match(buf) if first == H else None
        if found is None:
            end = buf.find(CRLF)
            return end >= 0 and await self._one_line(end + len(CRLF))
        if first == M:
            subject, sid, _, reply, size = found.groups()
            header_size = 0
        else:
            subject, sid, _, reply, header, size = found.groups()
            header_size = int(header)
        start = found.end()
        stop = start + int(size)
        if stop + len(CRLF) > len(buf):
            return False  # its payload is still coming
        headers = bytes(buf[start : start + header_size]) if header_size else None
        payload = bytes(buf[start + header_size : stop])
        del buf[: stop + len(CRLF)]
        number = int(sid)
        if number in self.bulk:
            got.setdefault(number, []).append((subject, reply or b"", headers, payload))
            return True
        await self.nc._process_msg(number, subject, reply or b"", payload, headers)
        return self.buf is buf

    async def _one_line(self, length: int) -> bool:
        """The operation on the buffer's first ``length`` bytes (one line: no message), by
        nats-py's own parse; False if the connection was reset meanwhile (a new buffer)."""
        rest = self.buf
        line = self.buf = bytearray(rest[:length])
        del rest[:length]
        await super().parse()
        if self.buf is not line:
            return False
        if line or self.state != AWAITING_CONTROL_LINE:
            # Not one whole operation after all (cannot happen with nats-py's own parser):
            # a reconnection, rather than a message of a bulk subscription taken by nats-py.
            raise ProtocolError("nats: a line the bulk parser could not hand over")
        self.buf = rest
        return True

    def _hand_over(self, got: dict[int, list[Raw]]) -> None:
        stats = self.nc.stats
        for sid, raws in got.items():
            stats["in_msgs"] += len(raws)
            handler = self.bulk.get(sid)
            if handler is None:
                continue  # unsubscribed meanwhile
            try:
                handler(raws)
            except Exception as exc:  # a handler's bug must not end the connection's reads
                log.error("a bulk subscription's handler failed", sid=sid, error=repr(exc))


def install(nc: Client) -> BulkParser | None:
    """The client's bulk parser, put in place now if its parser holds nothing (else None:
    try again later); None too for a nats-py whose parser is not the one this extends."""
    current = nc._ps
    if isinstance(current, BulkParser):
        return current
    if type(current) is not Parser or current.buf or current.state != AWAITING_CONTROL_LINE:
        return None
    parser = BulkParser(nc)
    nc._ps = parser
    return parser
