"""Adaptive batching (daemon/stages.py ``Linger``): once readings wait, wait a little for
more only while they keep coming, within ``[batching] max_delay_ms``.

Time is a fake clock the linger reads and sleeps on, and readings arrive at given moments
of it (a ``MemoryTransport`` whose poll reads what is due), so each test states exactly
when what arrived and checks how long the linger waited: conditions, not sleeps.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from sensord.config import MqttSettings, Settings
from sensord.config.sections import BatchingSettings
from sensord.core.bundle import Bundle
from sensord.daemon.loop import Daemon
from sensord.daemon.stages import LINGER_STEP, Linger
from sensord.daemon.transport import Message, TransportOptions
from tests.fakes import Acked, MemoryTransport

# Powers of two, so that the fake clock's sums are exact: ~3.9 ms, in steps of ~1 ms.
BUDGET_S = 2.0**-8
STEP_S = BUDGET_S * LINGER_STEP
T0 = 1_700_000_000.0


class Clock:
    """Monotonic time that moves only when slept on."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class Arriving(MemoryTransport):
    """Readings that arrive at moments of ``clock``: a poll reads those due by now."""

    def __init__(self, settings: MqttSettings, options: TransportOptions) -> None:
        super().__init__(settings, options)
        self.clock = Clock()
        self.schedule: list[tuple[float, Message]] = []
        self.polls = 0
        self.read_s = 0.0  # what a poll costs, in the clock's time

    def arrive(self, *moments: float) -> None:
        start = len(self.inbox) + len(self.schedule)
        for k, at in enumerate(moments, start=start):
            self.schedule.append((at, reading(k)))

    def poll(self, timeout: float) -> None:
        self.polls += 1
        due = [m for at, m in self.schedule if at <= self.clock.now]
        self.schedule = [(at, m) for at, m in self.schedule if at > self.clock.now]
        self.inbox.extend(due)
        self.clock.now += self.read_s


def reading(k: int) -> Message:
    """Reading ``k``: stream ``s<k>``'s first, packet id k + 1."""
    payload = orjson.dumps({"value": 20.0 + k % 3, "ts": T0 + k})
    return Message(f"sensors/s{k}/value", payload, T0 + k, 1, k + 1)


def source() -> Arriving:
    return Arriving(MqttSettings(), TransportOptions(prefix="sensord"))


def linger_on(wire: Arriving, budget_s: float = BUDGET_S) -> Linger:
    return Linger(budget_s, clock=wire.clock, sleep=wire.clock.sleep)


def gathered(wire: Arriving, limit: int = 256, budget_s: float = BUDGET_S) -> int:
    """Readings waiting once the linger is over (the first is waiting at time 0)."""
    wire.poll(0.0)
    assert wire.waiting() >= 1, "the linger starts only once a reading waits"
    linger_on(wire, budget_s).gather(wire, limit)
    return wire.waiting()


def test_a_lone_reading_waits_one_step_not_the_budget() -> None:
    wire = source()
    wire.arrive(0.0)
    assert gathered(wire) == 1
    assert wire.clock.slept == [pytest.approx(STEP_S)]


def test_while_readings_keep_coming_it_waits_up_to_the_budget_and_never_past_it() -> None:
    wire = source()
    every = STEP_S / 4  # four arrivals per step, for longer than the budget
    wire.arrive(0.0, *((k + 0.5) * every for k in range(40)))
    assert gathered(wire) == 17  # the first, and the 16 that arrived within the budget
    assert wire.clock.now == pytest.approx(BUDGET_S)
    assert len(wire.clock.slept) == round(1 / LINGER_STEP)  # one read per step, not each
    assert wire.polls == 1 + len(wire.clock.slept)


def test_reading_takes_time_and_the_last_step_is_cut_to_the_budget() -> None:
    wire = source()
    wire.arrive(0.0, *((k + 0.5) * STEP_S / 4 for k in range(40)))
    wire.poll(0.0)
    wire.read_s = STEP_S / 4
    linger_on(wire).gather(wire, 256)
    assert wire.clock.slept == [STEP_S, STEP_S, STEP_S, STEP_S / 4]
    assert wire.clock.now == BUDGET_S + wire.read_s  # the last read, after the budget


def test_it_stops_at_the_first_step_that_brings_nothing() -> None:
    wire = source()
    wire.arrive(0.0, 0.2 * STEP_S, 0.9 * STEP_S, 1.5 * STEP_S)  # then silence
    assert gathered(wire) == 4
    assert wire.clock.now == pytest.approx(3 * STEP_S)  # two steps brought some, one none


def test_a_full_batch_ends_it_at_once() -> None:
    wire = source()
    wire.arrive(*(k * STEP_S / 8 for k in range(100)))
    assert gathered(wire, limit=8) == 9
    assert wire.clock.now == pytest.approx(STEP_S)  # the first step filled it
    full = source()
    full.arrive(*([0.0] * 8))
    assert gathered(full, limit=8) == 8 and full.clock.slept == []


def test_with_no_budget_it_never_waits() -> None:
    wire = source()
    wire.arrive(*(k * STEP_S / 4 for k in range(40)))
    assert gathered(wire, budget_s=0.0) == 1
    assert wire.clock.slept == [] and wire.polls == 1


def test_the_shipped_budget_is_a_few_milliseconds() -> None:
    default = BatchingSettings().max_delay_ms
    assert 0 < default <= 10  # a latency budget, not a batch timer


def daemon_on(bundle: Bundle, state: Path, max_delay_ms: float) -> tuple[Daemon, Arriving]:
    data = {
        "routes": [{"topic": "sensors/+/value", "bundle": str(bundle.path)}],
        "state": {"dir": str(state)},
        "batching": {"max_delay_ms": max_delay_ms},
    }
    daemon = Daemon(Settings.model_validate(data), transport=Arriving)
    wire = daemon.mqtt
    assert isinstance(wire, Arriving)
    wire.start()
    daemon.stages.linger = linger_on(wire, max_delay_ms / 1000.0)
    return daemon, wire


@pytest.mark.parametrize(("max_delay_ms", "batches"), [(0.0, 5), (1000 * BUDGET_S, 1)])
def test_a_turn_scores_what_keeps_arriving_within_the_budget_as_one_batch(
    bundle: Bundle, tmp_path: Path, max_delay_ms: float, batches: int
) -> None:
    daemon, wire = daemon_on(bundle, tmp_path, max_delay_ms)
    wire.arrive(*(k * STEP_S / 2 for k in range(5)))  # five readings within 2 ms
    wire.poll(0.0)
    while wire.waiting() or wire.schedule:
        daemon.stages.turn(0.0)
        wire.clock.sleep(STEP_S / 2)  # the next arrival, when the turn did not wait for it
    assert daemon.counters.batches == batches
    acked = [mid for entry in wire.log if isinstance(entry, Acked) for mid in entry.mids]
    assert acked == [1, 2, 3, 4, 5]  # all acknowledged, in arrival order


def test_an_idle_turn_does_not_linger(bundle: Bundle, tmp_path: Path) -> None:
    daemon, wire = daemon_on(bundle, tmp_path, 1000 * BUDGET_S)
    daemon.stages.turn(0.0)
    assert wire.clock.slept == [] and daemon.counters.batches == 0
