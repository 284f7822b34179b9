"""The daemon on a real broker: alerts, the waves invariant, order, bad input, snapshots."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from sensord.cli.broker import LocalBroker
from sensord.core.bundle import Bundle
from sensord.core.engine import Engine
from sensord.core.pipeline import ARRIVAL_COLUMNS, Pipeline
from sensord.core.sample import Sample
from sensord.offline.synthetic import generate
from tests.integration.conftest import mqtt_client, running, scored, settings_for, wait_for

T0 = 1_700_000_000.0
STEP = 300.0


def series(stream_seed: int, n: int) -> np.ndarray:
    return generate(n, seed=stream_seed).values


def test_anomaly_raises_then_clears_and_clean_stream_stays_quiet(
    broker: LocalBroker, bundle: Bundle, tmp_path: Path
) -> None:
    spiky, clean = series(11, 150), series(12, 150)
    spiky[105] += 8.0  # once its tails speak (100 values)
    with (
        running(settings_for(broker, bundle, tmp_path)) as daemon,
        mqtt_client(broker, subscribe="sensord/#") as client,
    ):
        sent_spike_at = 0.0
        for k in range(150):
            if k == 105:
                sent_spike_at = time.time()
            client.publish_json("sensors/spiky/value", {"value": spiky[k], "ts": T0 + k * STEP})
            client.publish_json("sensors/clean/value", {"value": clean[k], "ts": T0 + k * STEP})
        assert wait_for(lambda: scored(daemon) == 300)
        assert wait_for(lambda: len(client.on("sensord/alerts/")) >= 2)
        alerts = client.json_on("sensord/alerts/")
        assert [(a["event"], a["stream"]) for a in alerts] == [
            ("raised", "spiky"),
            ("cleared", "spiky"),
        ]
        raised, cleared = alerts
        assert raised["ts"] == T0 + 105 * STEP and raised["schema"] == 2
        assert raised["alert_id"] == cleared["alert_id"]
        assert raised["topic"] == "sensors/spiky/value"
        assert raised["model"] == {"name": "synthetic", "version": bundle.manifest.version}
        assert raised["value"]["value"] == pytest.approx(spiky[105])
        # an operator's view: the error in the sensor's units, a message, severity while up
        expected = raised["expected"]["value"]
        assert raised["error"]["value"] == pytest.approx(spiky[105] - expected)
        assert raised["error_scaled"] > 0 and raised["severity"] in ("warning", "critical")
        assert raised["message"].startswith("spiky: anomaly (")
        assert raised["duration_s"] is None
        assert cleared["severity"] is None and cleared["message"].startswith("spiky: back to")
        assert cleared["duration_s"] == pytest.approx(cleared["ts"] - raised["ts"])
        alert_state = next(
            s for s in client.json_on("sensord/state/spiky") if s["status"] == "alert"
        )
        assert alert_state["score"] == pytest.approx(raised["score"])
        assert alert_state["value"]["value"] == pytest.approx(spiky[105])
        assert set(raised) >= {
            "expected",
            "error",
            "score",
            "threshold",
            "severity",
            "received_at",
            "published_at",
            "raised_at",
        }
        arrived = client.on("sensord/alerts/")[0].at
        assert arrived - sent_spike_at < 2.0  # published → alert on the wire, within a bound
        states = {m.topic: m for m in client.on("sensord/state/")}
        assert states["sensord/state/clean"].retain is False  # live, to a subscriber
        assert [s["status"] for s in client.json_on("sensord/state/spiky")] == [
            "warming_up",
            "normal",
            "alert",
            "normal",
        ]
    with mqtt_client(broker, subscribe="sensord/state/#") as late:
        assert wait_for(lambda: len(late.on("sensord/state/")) >= 2)
        retained = {m.topic: m for m in late.on("sensord/state/")}
        assert retained["sensord/state/clean"].retain
        assert late.json_on("sensord/state/spiky")[-1]["status"] == "normal"


def test_thousand_interleaved_streams_score_as_each_alone(
    broker: LocalBroker, bundle: Bundle, tmp_path: Path
) -> None:
    streams, steps = 1000, 12
    values = np.stack([series(100 + i, steps) for i in range(streams)])
    settings = settings_for(
        broker, bundle, tmp_path, batching={"max_batch": 700, "max_delay_ms": 20}
    )
    with running(settings) as daemon, mqtt_client(broker) as client:
        for k in range(steps):
            for i in range(streams):
                client.publish_json(
                    f"sensors/s{i}/value", {"value": values[i, k], "ts": T0 + k * STEP}
                )
        assert wait_for(lambda: scored(daemon) == streams * steps, timeout=60)
        assert daemon.stats()["late"] == 0 and daemon.stats()["duplicate"] == 0
        table = daemon.routes[0].pipeline.table
        assert daemon.counters.batches < streams * steps / 10  # really batched
        alone = Pipeline(Engine(bundle))
        for i in range(0, streams, 37):
            alone = Pipeline(Engine(bundle))
            alone.process(
                [Sample(f"s{i}", T0 + k * STEP, values[i, k : k + 1]) for k in range(steps)]
            )
            mine, theirs = table.slot_of[f"s{i}"], alone.table.slot_of[f"s{i}"]
            for column in alone.table.specs:  # the core's; the publisher's are the daemon's
                if column in ARRIVAL_COLUMNS:  # when readings arrived: the daemon's own clock
                    continue
                np.testing.assert_allclose(
                    table[column][mine],
                    alone.table[column][theirs],
                    atol=1e-5,
                    rtol=1e-5,
                    err_msg=column,
                )


def test_fast_stream_keeps_its_order_across_batches(
    broker: LocalBroker, bundle: Bundle, tmp_path: Path
) -> None:
    n = 400
    values = series(21, n)
    settings = settings_for(
        broker, bundle, tmp_path, batching={"max_batch": 64, "max_delay_ms": 50}
    )
    with running(settings) as daemon, mqtt_client(broker) as client:
        for k in range(n):
            client.publish_json("sensors/fast/value", {"value": values[k], "ts": T0 + k})
        assert wait_for(lambda: scored(daemon) == n, timeout=30)
        assert daemon.stats()["late"] == 0 and daemon.stats()["duplicate"] == 0
        assert daemon.counters.batches < n  # several samples of the stream per batch
        alone = Pipeline(Engine(bundle))
        alone.process([Sample("fast", T0 + k, values[k : k + 1]) for k in range(n)])
        table = daemon.routes[0].pipeline.table
        np.testing.assert_allclose(
            table["prediction"][table.slot_of["fast"]],
            alone.table["prediction"][alone.table.slot_of["fast"]],
            atol=1e-6,
        )


BAD = [
    ("sensors/a/value", b"\xff\xfe\x00\x01garbage", "malformed"),
    ("sensors/a/value", b"", "empty"),
    ("sensors/a/value", b"9" * 70_000, "too_large"),
    ("sensors/a/value", b"NaN", "non_finite"),
    ("sensors/a/value", b"Infinity", "non_finite"),
    ("sensors/a/value", b"1e400", "non_finite"),
    ("sensors/a/value", b"[" * 3000 + b"]" * 3000, "malformed"),
    ("sensors/a/value", b'{"value": [1, 2, 3]}', "wrong_fields"),
    ("sensors/a/value", b'{"value": 1, "ts": "teatime"}', "bad_timestamp"),
    ("sensors/bad id/value", b"1.0", "bad_stream_id"),
    ("sensors/$x/value", b"1.0", "bad_stream_id"),
    ("sensors/" + "x" * 200 + "/value", b"1.0", "bad_stream_id"),
]


def test_bad_input_is_counted_by_reason_and_good_input_still_scored(
    broker: LocalBroker, bundle: Bundle, tmp_path: Path
) -> None:
    good = series(31, 60)
    with running(settings_for(broker, bundle, tmp_path)) as daemon, mqtt_client(broker) as client:
        for k in range(60):
            client.publish_json("sensors/good/value", {"value": good[k], "ts": T0 + k * STEP})
            topic, payload, _ = BAD[k % len(BAD)]
            client.publish(topic, payload)
        assert wait_for(lambda: scored(daemon) == 60, timeout=20)
        assert wait_for(lambda: sum(daemon.stats()["rejected"].values()) == 60, timeout=10)
        rejected = daemon.stats()["rejected"]
        expected: dict[str, int] = {}
        for k in range(60):
            reason = BAD[k % len(BAD)][2]
            expected[reason] = expected.get(reason, 0) + 1
        assert rejected == expected
        # the stream a bad payload named was never created
        assert set(daemon.routes[0].pipeline.table.slot_of) == {"good"}


def test_duplicates_and_late_readings_are_dropped(
    broker: LocalBroker, bundle: Bundle, tmp_path: Path
) -> None:
    with running(settings_for(broker, bundle, tmp_path)) as daemon, mqtt_client(broker) as client:
        for ts in (1.0, 2.0, 2.0, 3.0, 1.5, 4.0):
            client.publish_json("sensors/d/value", {"value": 20.0 + ts, "ts": T0 + ts})
        # The last reading may come in a later batch than the dropped ones: wait for both.
        assert wait_for(
            lambda: (
                daemon.stats()["duplicate"] + daemon.stats()["late"] == 2 and scored(daemon) == 4
            )
        ), daemon.stats()


def test_stream_cap_rejects_new_streams_and_keeps_old_ones(
    broker: LocalBroker, bundle: Bundle, tmp_path: Path
) -> None:
    settings = settings_for(broker, bundle, tmp_path)
    settings.routes[0].max_streams = 3
    with running(settings) as daemon, mqtt_client(broker) as client:
        for i in range(5):
            client.publish_json(f"sensors/c{i}/value", {"value": 20.0, "ts": T0})
        for i in range(5):
            client.publish_json(f"sensors/c{i}/value", {"value": 20.1, "ts": T0 + 1})
        assert wait_for(lambda: daemon.stats()["rejected"].get("stream_cap") == 4)
        # Rejections are counted before the batch they came in is scored: wait for both.
        assert wait_for(lambda: scored(daemon) == 6)
        assert set(daemon.routes[0].pipeline.table.slot_of) == {"c0", "c1", "c2"}


def test_state_survives_a_restart_through_the_snapshot(
    broker: LocalBroker, bundle: Bundle, tmp_path: Path
) -> None:
    values = series(41, 40)
    settings = settings_for(broker, bundle, tmp_path)
    with running(settings) as daemon, mqtt_client(broker) as client:
        for k in range(40):
            client.publish_json("sensors/keep/value", {"value": values[k], "ts": T0 + k})
        assert wait_for(lambda: scored(daemon) == 40)
        table = daemon.routes[0].pipeline.table
        before = {
            c: table[c][table.slot_of["keep"]].copy()
            for c in ("h", "c", "prediction", "steps", "last_ts")
        }
    assert (tmp_path / f"{daemon.routes[0].name}.npz").exists()
    with running(settings) as again:
        table = again.routes[0].pipeline.table
        for column, value in before.items():
            np.testing.assert_array_equal(table[column][table.slot_of["keep"]], value)


def test_corrupt_snapshot_is_set_aside(broker: LocalBroker, bundle: Bundle, tmp_path: Path) -> None:
    settings = settings_for(broker, bundle, tmp_path)
    with running(settings) as daemon:
        name = daemon.routes[0].name
    (tmp_path / f"{name}.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with running(settings) as again:
        assert len(again.routes[0].pipeline.table) == 0
    assert (tmp_path / f"{name}.npz.rejected").exists()


def test_reload_keeps_stream_state(broker: LocalBroker, bundle: Bundle, tmp_path: Path) -> None:
    values = series(51, 30)
    with running(settings_for(broker, bundle, tmp_path)) as daemon, mqtt_client(broker) as client:
        for k in range(30):
            client.publish_json("sensors/r/value", {"value": values[k], "ts": T0 + k})
        assert wait_for(lambda: scored(daemon) == 30)
        pipeline = daemon.routes[0].pipeline
        h_before = pipeline.table["h"][pipeline.table.slot_of["r"]].copy()
        daemon.request_reload()
        assert wait_for(lambda: daemon.counters.reloads == 1)
        np.testing.assert_array_equal(pipeline.table["h"][pipeline.table.slot_of["r"]], h_before)
        client.publish_json("sensors/r/value", {"value": values[0], "ts": T0 + 100})
        assert wait_for(lambda: scored(daemon) == 31)
        assert pipeline.table["steps"][pipeline.table.slot_of["r"]] == 31


def test_idle_streams_are_evicted_and_marked(
    broker: LocalBroker, bundle: Bundle, tmp_path: Path
) -> None:
    settings = settings_for(broker, bundle, tmp_path)
    settings.routes[0].idle_ttl_s = 0.5
    with running(settings) as daemon, mqtt_client(broker, subscribe="sensord/state/#") as c:
        c.publish_json("sensors/gone/value", {"value": 20.0, "ts": T0})
        assert wait_for(lambda: daemon.counters.evicted == 1, 10)
        assert "gone" not in daemon.routes[0].pipeline.table.slot_of
        assert wait_for(lambda: c.json_on("sensord/state/gone")[-1]["status"] == "evicted")


def test_metrics_endpoint_counts_everything(
    broker: LocalBroker, bundle: Bundle, tmp_path: Path
) -> None:
    import urllib.request

    with running(settings_for(broker, bundle, tmp_path)) as daemon, mqtt_client(broker) as client:
        for k in range(5):
            client.publish_json("sensors/m/value", {"value": 20.0 + k, "ts": T0 + k})
        client.publish("sensors/m/value", b"NaN")
        client.publish("sensors/bad id/value", b"1")
        assert wait_for(
            lambda: scored(daemon) == 5 and sum(daemon.stats()["rejected"].values()) == 2
        )
        assert daemon.metrics is not None
        url = f"http://127.0.0.1:{daemon.metrics.port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
    lines = set(text.splitlines())
    assert "sensord_readings_received_total 7.0" in lines
    assert "sensord_readings_scored_total 4.0" in lines
    assert "sensord_readings_first_total 1.0" in lines
    assert 'sensord_readings_rejected_total{reason="non_finite"} 1.0' in lines
    assert 'sensord_readings_rejected_total{reason="bad_stream_id"} 1.0' in lines
    assert "sensord_streams 1.0" in lines
