"""The alert outbox: durable until acknowledged, replayed after a crash, torn tails cut."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sensord.daemon.delivery import AlertDelivery
from sensord.durable.outbox import Outbox
from sensord.errors import OutboxError


def alerts(n: int, start: int = 0) -> list[tuple[str, bytes]]:
    return [(f"sensord/alert/s{i}", f'{{"alert_id": "a{i}"}}'.encode()) for i in range(start, n)]


def test_outstanding_alerts_survive_a_reopen_and_done_ones_do_not(tmp_path: Path) -> None:
    path = tmp_path / "outbox.log"
    box = Outbox(path)
    seqs = box.add(alerts(5))
    box.done(seqs[1])
    box.done(seqs[3])
    box.close()  # as a crash would leave it: no cleanup

    again = Outbox(path)
    assert [(e.topic, e.payload) for e in again.outstanding()] == [
        alerts(5)[0],
        alerts(5)[2],
        alerts(5)[4],
    ]
    assert again.counters.replayed == 3
    # New alerts get new sequence numbers, after the replayed ones.
    (seq,) = again.add(alerts(6, 5))
    assert seq > max(e.seq for e in again.outstanding() if e.seq != seq)


def test_the_log_is_emptied_once_everything_is_delivered(tmp_path: Path) -> None:
    path = tmp_path / "outbox.log"
    box = Outbox(path)
    for seq in box.add(alerts(3)):
        box.done(seq)
    assert path.stat().st_size == 0
    assert Outbox(path).outstanding() == []


def test_a_torn_tail_is_cut_and_what_came_before_counts(tmp_path: Path) -> None:
    path = tmp_path / "outbox.log"
    box = Outbox(path)
    box.add(alerts(2))
    box.close()
    whole = path.read_bytes()
    other = Outbox(tmp_path / "other.log")
    other.add(alerts(3, 2))
    other.close()
    third = (tmp_path / "other.log").read_bytes()
    for cut in range(1, len(third)):  # a crash at every byte of a third record's append
        path.write_bytes(whole + third[:cut])
        again = Outbox(path)
        assert [e.payload for e in again.outstanding()] == [p for _, p in alerts(2)]
        assert path.stat().st_size == len(whole)
        again.close()


def test_a_damaged_record_ends_the_read_and_never_yields_garbage(tmp_path: Path) -> None:
    path = tmp_path / "outbox.log"
    box = Outbox(path)
    box.add(alerts(3))
    box.close()
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF  # flip bits inside the last record's payload
    path.write_bytes(bytes(data))
    assert [e.payload for e in Outbox(path).outstanding()] == [p for _, p in alerts(2)]


def test_a_long_outage_compacts_the_log(tmp_path: Path) -> None:
    path = tmp_path / "outbox.log"
    box = Outbox(path, compact_bytes=2_000)
    kept = box.add(alerts(1))
    for _ in range(30):  # many alerts delivered while the first one is not
        for seq in box.add(alerts(3)):
            box.done(seq)
    assert box.counters.compactions > 0
    assert path.stat().st_size < 2_000
    box.add(alerts(2, 1))
    box.close()
    assert Outbox(path).outstanding()[0].seq == kept[0]
    assert len(Outbox(path).outstanding()) == 2


def test_alerts_are_durable_before_they_are_published(tmp_path: Path) -> None:
    """A process killed right after send() (before any PUBACK) leaves its alerts on disk."""
    path = tmp_path / "outbox.log"
    code = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from sensord.daemon.delivery import AlertDelivery\n"
        "from sensord.durable.outbox import Outbox\n"
        "d = AlertDelivery(lambda t, p: 1, Outbox(Path(sys.argv[1])))\n"
        "d.send([('sensord/alert/x', b'one'), ('sensord/alert/y', b'two')])\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(path)], check=False)
    assert done.returncode == -9
    assert [(e.topic, e.payload) for e in Outbox(path).outstanding()] == [
        ("sensord/alert/x", b"one"),
        ("sensord/alert/y", b"two"),
    ]


def test_delivery_forgets_an_alert_on_puback_and_replays_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "outbox.log"
    sent: list[tuple[str, bytes]] = []

    def publish(topic: str, payload: bytes) -> int:
        sent.append((topic, payload))
        return 100 + len(sent)  # the MQTT packet id paho would give

    delivery = AlertDelivery(publish, Outbox(path))
    delivery.send(alerts(3))
    delivery.published(101, True)
    delivery.published(103, False)  # refused by the broker: counted, not retried
    delivery.published(999, True)  # not an alert of ours (a retained state)
    assert delivery.counters.alerts_delivered == 1
    assert delivery.counters.alerts_refused == 1

    sent.clear()
    restarted = AlertDelivery(publish, Outbox(path))
    assert restarted.replay() == 1
    assert sent == [alerts(3)[1]]


def test_an_outbox_that_cannot_be_written_does_not_stop_alerts(tmp_path: Path) -> None:
    sent: list[str] = []
    box = Outbox(tmp_path / "outbox.log")
    delivery = AlertDelivery(lambda topic, payload: sent.append(topic) or len(sent), box)
    os.close(box._fd)  # the disk goes away under it: every write now fails
    with pytest.raises(OutboxError, match=r"outbox\.log: cannot write alerts"):
        box.add(alerts(1))
    delivery.send(alerts(2))
    assert sent == [topic for topic, _ in alerts(2)]  # published all the same
    assert delivery.counters.outbox_errors == 1
