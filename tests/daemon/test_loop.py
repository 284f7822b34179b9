"""The daemon loop through its transport seam: no broker, the real loop, core and outbox.

The daemon takes its MQTT side as a parameter (``sensord.daemon.transport``); here it is
an in-memory transport, so these tests check the loop's own contract (ingest → core →
sinks → ack) without a network. tests/integration does the same against a real Mosquitto.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import orjson
import pytest

from sensord.config import Settings
from sensord.core.bundle import Bundle
from sensord.core.timestamps import format_timestamp
from sensord.daemon.loop import Daemon
from sensord.daemon.transport import Message
from sensord.offline.synthetic import generate
from tests.fakes import Acked, MemoryTransport, Published

T0 = 1_700_000_000.0
STEP = 300.0


def daemon_for(bundle: Bundle, state: Path, **sections: object) -> Daemon:
    data: dict[str, object] = {
        "routes": [{"topic": "sensors/+/value", "bundle": str(bundle.path), "max_streams": 3}],
        "state": {"dir": str(state)},
        "limits": {"log_interval_s": 0},
        **sections,
    }
    return Daemon(Settings.model_validate(data), transport=MemoryTransport)


def started(bundle: Bundle, state: Path, **sections: object) -> tuple[Daemon, MemoryTransport]:
    """A daemon on an in-memory transport, connected."""
    daemon = daemon_for(bundle, state, **sections)
    assert isinstance(daemon.mqtt, MemoryTransport)
    daemon.mqtt.start()
    return daemon, daemon.mqtt


def reading(stream: str, k: int, value: float, mid: int) -> Message:
    payload = orjson.dumps({"value": value, "ts": T0 + k * STEP})
    return Message(f"sensors/{stream}/value", payload, T0 + k * STEP, 1, mid)


def test_a_batch_is_acknowledged_only_after_its_alerts_are_published(
    bundle: Bundle, tmp_path: Path
) -> None:
    daemon, mqtt = started(bundle, tmp_path)
    values = generate(150, seed=11).values
    values[105] += 8.0  # (past the 100 values a stream's tails need before they speak)
    batches = [[reading("spiky", k, float(values[k]), mid=k + 1)] for k in range(150)]
    for batch in batches:
        daemon.process(batch)
    alerts = [e for e in mqtt.log if isinstance(e, Published) and "/alerts/" in e.topic]
    assert [orjson.loads(a.payload)["event"] for a in alerts] == ["raised", "cleared"]
    raised = alerts[0]
    # the batch of reading 105 (mid 106) is acknowledged after its alert, never before
    at_alert = mqtt.log.index(raised)
    ack_106 = next(i for i, e in enumerate(mqtt.log) if isinstance(e, Acked) and 106 in e.mids)
    assert at_alert < ack_106
    assert daemon.stats()["acked"] == 150 and daemon.stats()["scored"] == 149


def test_the_stream_cap_and_bad_payloads_are_rejected_counted_and_still_acknowledged(
    bundle: Bundle, tmp_path: Path
) -> None:
    daemon, mqtt = started(bundle, tmp_path)
    batch = [reading(f"s{i}", 0, 20.0, mid=i + 1) for i in range(5)]
    batch.append(Message("sensors/bad/value", b"{not json", T0, 1, 6))
    daemon.process(batch)
    stats = daemon.stats()
    assert stats["rejected"] == {"stream_cap": 2, "malformed": 1}
    assert stats["streams"] == 3 and stats["routes"]["route0-synthetic"]["received"] == 5
    assert mqtt.log[-1] == Acked((1, 2, 3, 4, 5, 6))


def test_every_declared_figure_is_in_the_stats(bundle: Bundle, tmp_path: Path) -> None:
    from sensord.daemon.stats import declared_figures

    stats = daemon_for(bundle, tmp_path).stats()
    missing = [f.key for f in declared_figures() if f.key not in stats]
    assert not missing, f"declared but not in stats(): {missing}"
    assert np.isfinite(stats["streams"])
    assert stats["broker_dropped"] is None  # not known until the broker reports it (not -1)


def acked_mids(mqtt: MemoryTransport) -> list[int]:
    return [mid for entry in mqtt.log if isinstance(entry, Acked) for mid in entry.mids]


def resent_after_reconnect(values: np.ndarray) -> list[list[Message]]:
    """What a reconnecting paho publisher does (measured, see daemon/reorder.py): readings
    0-59 in line, then the newest (85) jumps ahead of the 25 it had queued (60-84)."""
    batches = [[reading("s", k, float(values[k]), mid=k + 1)] for k in range(60)]
    batches.append([reading("s", 85, float(values[85]), mid=86)])
    batches.append([reading("s", k, float(values[k]), mid=k + 1) for k in range(60, 85)])
    return batches


def test_readings_a_reconnecting_publisher_sends_out_of_order_are_put_back_in_order(
    bundle: Bundle, tmp_path: Path
) -> None:
    daemon, mqtt = started(bundle, tmp_path)
    for batch in resent_after_reconnect(generate(86, seed=3).values):
        daemon.process(batch)
    stats = daemon.stats()
    assert (stats["scored"], stats["late"], stats["first"]) == (85, 0, 1)
    # 85 waited for the gap to fill and was acknowledged after it was scored, in arrival
    # order: after 1-60, and before the 25 that arrived after it
    assert acked_mids(mqtt) == [*range(1, 61), 86, *range(61, 86)]
    assert len(daemon.stages.reorder) == 0 and len(daemon.stages.acks) == 0


def test_held_readings_of_a_session_that_is_gone_are_forgotten_not_scored_later(
    bundle: Bundle, tmp_path: Path
) -> None:
    """Cluster mode drops a partition's generation (its lease lost, or the partition let
    go): a reading of it held for reordering must not be scored afterwards. Scored into
    the stream's next generation it made the readings replayed there late (seen after an
    engine restart: 291 readings never stepped)."""
    daemon, _ = started(bundle, tmp_path)
    *in_line, jump, resent = resent_after_reconnect(generate(86, seed=3).values)
    for batch in in_line:
        daemon.process(batch)
    gone = 1 << 32  # a cluster generation, in the message's session
    daemon.process([jump[0]._replace(session=gone)])
    reorder, acks = daemon.stages.reorder, daemon.stages.acks
    assert len(reorder) == 1 and len(acks) == 1  # 85 held, its ack waits
    assert reorder.discard(gone + 1) == 0 and len(reorder) == 1
    assert reorder.discard(gone) == 1 and len(reorder) == 0
    assert acks.ready() and len(acks) == 0  # no ack waits behind it now
    daemon.process(resent)  # the replay: 60-84, in order, then nothing held to release
    daemon.stages.release(everything=True)
    assert (daemon.stats()["scored"], daemon.stats()["late"]) == (84, 0)


def test_a_gap_nobody_fills_waits_only_the_window_and_later_readings_are_late(
    bundle: Bundle, tmp_path: Path
) -> None:
    daemon, mqtt = started(bundle, tmp_path, batching={"reorder_window_ms": 20})
    *in_line, jump, resent = resent_after_reconnect(generate(86, seed=3).values)
    for batch in [*in_line, jump]:
        daemon.process(batch)
    assert daemon.stats()["scored"] == 59 and 86 not in acked_mids(mqtt)  # held, not acked
    deadline = time.monotonic() + 10
    while len(daemon.stages.reorder) and time.monotonic() < deadline:
        daemon.stages.release()  # what the loop does on every turn
    assert len(daemon.stages.reorder) == 0, "the held reading was not released within 10 s"
    assert acked_mids(mqtt)[-1] == 86 and daemon.stats()["scored"] == 60
    daemon.process(resent)  # after the window: older than the stream's last, so late
    assert daemon.stats()["late"] == 25


def test_with_the_window_off_the_old_ones_are_dropped_as_late(
    bundle: Bundle, tmp_path: Path
) -> None:
    daemon, mqtt = started(bundle, tmp_path, batching={"reorder_window_ms": 0})
    for batch in resent_after_reconnect(generate(86, seed=3).values):
        daemon.process(batch)
    assert (daemon.stats()["scored"], daemon.stats()["late"]) == (60, 25)
    assert acked_mids(mqtt) == [*range(1, 61), 86, *range(61, 86)]


def test_a_fast_stream_with_several_readings_in_one_batch_is_not_held(
    bundle: Bundle, tmp_path: Path
) -> None:
    """Each reading is measured against the one before it in the batch, not against the
    stream's last stepped one (against which the third of a batch would look like a gap)."""
    daemon, mqtt = started(bundle, tmp_path)
    values = generate(120, seed=4).values
    for start in range(0, 120, 40):
        daemon.process(
            [reading("s", k, float(values[k]), mid=k + 1) for k in range(start, start + 40)]
        )
    stats = daemon.stats()
    assert (stats["readings_held"], stats["scored"]) == (0, 119)
    assert acked_mids(mqtt) == list(range(1, 121))


def test_a_gap_in_a_streams_first_steps_is_not_held(bundle: Bundle, tmp_path: Path) -> None:
    """Over its first few intervals a stream's longest step is not known well enough to
    call a longer one a gap (core/gaps.py MIN_INTERVALS)."""
    daemon, _ = started(bundle, tmp_path)
    values = generate(20, seed=5).values
    for k in (0, 1, 2, 3, 9, 10):
        daemon.process([reading("s", k, float(values[k]), mid=k + 1)])
    assert daemon.stats()["readings_held"] == 0 and daemon.stats()["scored"] == 5


def test_holds_end_early_when_the_broker_window_fills_behind_them(
    bundle: Bundle, tmp_path: Path
) -> None:
    """Acks keep arrival order, so a held reading holds back the acks after it; once our
    Receive Maximum of them wait (MQTT 5), the broker can send nothing more, the older
    readings included, so the holds end at once rather than at the end of the window."""
    window = 20
    daemon, mqtt = started(
        bundle,
        tmp_path,
        batching={"reorder_window_ms": 60_000, "max_batch": 16},
        mqtt={"receive_maximum": window},
    )
    *in_line, jump, _ = resent_after_reconnect(generate(86, seed=3).values)
    for batch in [*in_line, jump]:
        daemon.process(batch)
    others = [reading("other", k, 20.0, mid=1000 + k) for k in range(window - 2)]
    daemon.process(others)
    stages = daemon.stages
    assert len(stages.acks) == window - 1  # 86 and the 18 behind it
    assert stages.collect(0.0) == [] and len(stages.reorder) == 1, "released below the window"
    daemon.process([reading("other", window - 2, 20.0, mid=2000)])
    assert stages.collect(0.0) == [] and len(stages.reorder) == 0, "not released at the window"
    stats = daemon.stats()
    assert (stats["holds_unblocked"], stats["holds_expired"]) == (1, 0)
    assert acked_mids(mqtt)[-window:] == [86, *range(1000, 1018), 2000]


@pytest.mark.slow
def test_with_mqtt_3_the_broker_window_is_unknown_and_holds_wait_their_window(
    bundle: Bundle, tmp_path: Path
) -> None:
    daemon, _ = started(
        bundle, tmp_path, batching={"reorder_window_ms": 60_000}, mqtt={"protocol": "3.1.1"}
    )
    *in_line, jump, _ = resent_after_reconnect(generate(86, seed=3).values)
    for batch in [*in_line, jump]:
        daemon.process(batch)
    daemon.process([reading("other", k, 20.0, mid=1000 + k) for k in range(2000)])
    assert daemon.stages.collect(0.0) == [] and len(daemon.stages.reorder) == 1


def test_bridge_info_says_what_runs_once_and_again_only_on_change(
    bundle: Bundle, tmp_path: Path
) -> None:
    daemon, mqtt = started(bundle, tmp_path, mqtt={"username": "operator", "password": "s3cret-pw"})
    daemon._bridge_info()
    daemon._bridge_info()  # nothing changed: nothing sent
    sent = [e for e in mqtt.log if isinstance(e, Published) and e.topic == "sensord/bridge/info"]
    assert len(sent) == 1 and sent[0].retain
    info = orjson.loads(sent[0].payload)
    assert info["kind"] == "bridge_info" and info["prefix"] == "sensord"
    (route,) = info["routes"]
    manifest = bundle.manifest
    assert (route["model"], route["model_version"]) == (manifest.name, manifest.version)
    assert route["topic"] == "sensors/+/value" and route["detector"] == "channels"
    assert info["features"]["feedback"] is True and info["features"]["metrics"] is False
    text = sent[0].payload.decode()
    assert "s3cret-pw" not in text and "operator" not in text and str(tmp_path) not in text
    daemon.routes[0].shadow = daemon.routes[0].pipeline  # as a reload that adds a shadow
    daemon._bridge_info()
    sent = [e for e in mqtt.log if isinstance(e, Published) and e.topic == "sensord/bridge/info"]
    assert len(sent) == 2
    shadow = orjson.loads(sent[1].payload)["routes"][0]["shadow"]
    assert shadow == {"model": manifest.name, "model_version": manifest.version}


def test_the_state_is_refreshed_with_the_latest_score_and_reading(
    bundle: Bundle, tmp_path: Path
) -> None:
    values = generate(30, seed=6).values

    def states_of(refresh_s: float) -> list[dict[str, object]]:
        daemon, mqtt = started(
            bundle, tmp_path / str(refresh_s), alerts={"state_refresh_s": refresh_s}
        )
        for k in range(30):  # readings 300 s apart
            daemon.process([reading("s", k, float(values[k]), mid=k + 1)])
        return [
            orjson.loads(e.payload)
            for e in mqtt.log
            if isinstance(e, Published) and e.topic == "sensord/state/s"
        ]

    changes = states_of(0)
    assert [s["status"] for s in changes] == ["warming_up", "normal"]
    refreshed = states_of(600)  # every other reading
    assert [s["status"] for s in refreshed[:2]] == ["warming_up", "warming_up"]
    last = refreshed[-1]
    assert last["status"] == "normal" and last["since"] == changes[1]["since"]
    assert last["value"] == {"value": pytest.approx(float(values[28]))}
    assert isinstance(last["score"], float) and last["alert_id"] is None
    assert 14 <= len(refreshed) <= 17  # 2 changes + one every 600 s of 30 readings at 300 s


def test_a_refresh_after_a_snapshot_older_than_the_status_start_column(
    bundle: Bundle, tmp_path: Path
) -> None:
    """A snapshot from before ``status_since`` restores it as NaN: the refresh says the
    reading's time instead of failing (it did: format_timestamp(nan))."""
    daemon, mqtt = started(bundle, tmp_path, alerts={"state_refresh_s": 1})
    values = generate(20, seed=7).values
    for k in range(12):
        daemon.process([reading("s", k, float(values[k]), mid=k + 1)])
    daemon.routes[0].pipeline.table["status_since"][:] = np.nan
    daemon.process([reading("s", 12, float(values[12]), mid=13)])
    last = orjson.loads(
        [e for e in mqtt.log if isinstance(e, Published) and e.topic == "sensord/state/s"][
            -1
        ].payload
    )
    assert last["since"] == format_timestamp(T0 + 12 * STEP)
