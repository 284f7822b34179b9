"""Retained states: every change while the broker keeps up; latest-wins while it lags."""

from __future__ import annotations

from dataclasses import dataclass, field

from sensord.daemon.delivery import RetainedStates


@dataclass
class Info:
    """What paho hands back for a publish: acknowledged once the broker says so."""

    done: bool = False

    def is_published(self) -> bool:
        return self.done


@dataclass
class Broker:
    sent: list[tuple[str, bytes]] = field(default_factory=list)
    infos: list[Info] = field(default_factory=list)

    def publish(self, topic: str, payload: bytes) -> Info:
        self.sent.append((topic, payload))
        self.infos.append(Info())
        return self.infos[-1]

    def acknowledge(self) -> None:
        for info in self.infos:
            info.done = True


def test_every_change_goes_out_in_order_while_the_window_has_room() -> None:
    broker = Broker()
    states = RetainedStates(broker.publish, in_flight=4)
    for status in (b"warming_up", b"normal", b"alert", b"normal"):
        states.put("s/a", lambda status=status: status)
        broker.acknowledge()
    assert broker.sent == [("s/a", s) for s in (b"warming_up", b"normal", b"alert", b"normal")]
    assert states.counters.states_superseded == 0 and len(states) == 0


def test_while_the_broker_lags_only_the_newest_state_per_stream_waits() -> None:
    broker = Broker()
    states = RetainedStates(broker.publish, in_flight=2)
    for stream in ("a", "b", "c", "d"):
        states.put(f"s/{stream}", lambda stream=stream: f"{stream}:warming_up".encode())
    states.put("s/c", lambda: b"c:normal")  # replaces c's waiting state
    states.put("s/a", lambda: b"a:normal")  # a's first state is in flight: this one waits
    assert broker.sent == [("s/a", b"a:warming_up"), ("s/b", b"b:warming_up")]
    assert states.counters.states_superseded == 1 and len(states) == 3
    states.flush()  # nothing acknowledged: nothing more goes
    assert len(broker.sent) == 2
    broker.acknowledge()
    states.flush()
    assert broker.sent[2:] == [("s/d", b"d:warming_up"), ("s/c", b"c:normal")]
    states.flush(everything=True)  # at a stop: the rest, in order, whatever the window
    assert broker.sent[4:] == [("s/a", b"a:normal")] and len(states) == 0
