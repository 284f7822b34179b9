"""The loop closed on a real broker: record → operator feedback → retrain → promote →
the daemon reloads the new bundle by itself, keeping every stream's state."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import orjson
import pytest

from sensord.cli.broker import LocalBroker
from sensord.cli.main import main
from sensord.offline.synthetic import generate
from sensord.ops.history import load_readings
from sensord.ops.models import current_version, read_decisions
from sensord.training.options import FitOptions, TrainOptions
from sensord.training.train import train_bundle
from tests.integration.conftest import mqtt_client, running, scored, settings_for, wait_for

T0 = 1_700_000_000.0
STEP = 300.0
STREAMS = ("m1", "m2", "m3")
ROWS = 500


CHANGE = 150  # the plant changes at this reading


def drifted(seed: int) -> np.ndarray:
    """The plant as before, then changed: its daily cycle half a day later and wider."""
    values = generate(ROWS, seed=seed).values.copy()
    later = generate(ROWS, seed=seed, start=1.7e9 + 43_200.0).values * 1.8 - 16.0
    values[CHANGE:] = later[CHANGE:]
    return values


def write_config(tmp_path: Path, settings_toml: str) -> Path:
    path = tmp_path / "sensord.toml"
    path.write_text(settings_toml)
    return path


def test_record_feedback_retrain_promote_reload_keeps_stream_state(
    broker: LocalBroker,
    history_csv: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    state = tmp_path / "state"
    # A small network that has learnt the plant before the change (its daily cycle).
    fit = FitOptions(epochs=30, hidden=8, layers=1, window=32, seed=7)
    live = train_bundle(history_csv, tmp_path / "plant", TrainOptions(name="plant", fit=fit)).bundle
    current = state / "models" / "temp" / "current"
    config = write_config(
        tmp_path,
        f'[state]\ndir = "{state}"\n'
        f'[[routes]]\ntopic = "sensors/+/value"\nname = "temp"\nbundle = "{current}"\n'
        "[retrain]\nmin_rows = 100\nepochs = 40\nexclude_margin_s = 600\n",
    )
    assert main(["promote", str(live.path), "--route", "temp", "--config", str(config)]) == 0
    assert current_version(current.parent) == live.manifest.version

    settings = settings_for(
        broker,
        live,
        state,
        routes=[{"topic": "sensors/+/value", "name": "temp", "bundle": str(current)}],
        record={"enabled": True},
        retrain={"min_rows": 100, "epochs": 40},
    )
    series = {stream: drifted(seed) for seed, stream in enumerate(STREAMS, start=31)}
    with (
        running(settings) as daemon,
        mqtt_client(broker, subscribe="sensord/#") as client,
    ):
        for k in range(ROWS):
            for stream, values in series.items():
                client.publish_json(
                    f"sensors/{stream}/value", {"value": values[k], "ts": T0 + k * STEP}
                )
        assert wait_for(lambda: scored(daemon) == ROWS * len(STREAMS), timeout=60)
        # The old model calls the new regime anomalous; an operator says it is not.
        raised = [a for a in client.json_on("sensord/alerts/") if a["event"] == "raised"]
        assert raised, "the drift should look anomalous to the model trained before it"
        for alert in raised:
            client.publish_json(
                f"sensord/feedback/{alert['stream']}",
                {"alert_id": alert["alert_id"], "verdict": "false_positive", "by": "test"},
            )
        assert wait_for(lambda: daemon.stats()["feedback_accepted"] == len(raised))
        # Recorded after scoring, in the same batch: wait for the last batch's rows too.
        assert wait_for(lambda: daemon.stats()["recorded_rows"] == ROWS * len(STREAMS))
        recording = load_readings(state / "records" / "temp", live.features)
        assert len(recording.streams) == ROWS * len(STREAMS)  # every reading, once

        route = daemon.routes[0]
        table = route.pipeline.table
        before = {s: int(table["steps"][table.slot_of[s]]) for s in STREAMS}
        alert_count = {s: int(table["alerts_raised"][table.slot_of[s]]) for s in STREAMS}
        live_error = daemon.stats()["routes"]["temp"]["live"]["mean_abs_error"]

        assert main(["retrain", "--config", str(config)]) == 0  # trains while it runs
        (decision,) = read_decisions(current.parent)[-1:]
        assert decision["decision"] == "promoted", json.dumps(decision, indent=2)
        new_version = decision["candidate"]["version"]
        assert current_version(current.parent) == new_version != live.manifest.version
        assert decision["candidate"]["mae"] < decision["live"]["mae"]
        assert decision["false_positives_relearnt"] >= 1

        # The daemon sees `current` move and swaps the bundle in, by itself.
        assert wait_for(
            lambda: daemon.stats()["routes"]["temp"]["live"]["version"] == new_version, 10
        )
        assert daemon.routes[0] is route and route.pipeline.table is table  # state kept
        after = {s: int(table["steps"][table.slot_of[s]]) for s in STREAMS}
        assert after == before
        assert {s: int(table["alerts_raised"][table.slot_of[s]]) for s in STREAMS} == alert_count
        # The streams go on from where they were: no new warm-up, scored by the new model.
        states_before = len(client.on("sensord/state/"))
        more = 60
        for k in range(ROWS, ROWS + more):
            for stream, values in series.items():
                value = values[k % ROWS]
                client.publish_json(
                    f"sensors/{stream}/value", {"value": value, "ts": T0 + k * STEP}
                )
        total = (ROWS + more) * len(STREAMS)
        assert wait_for(lambda: scored(daemon) == total, timeout=60)

        def live_figures() -> dict[str, float]:
            return dict(daemon.stats()["routes"]["temp"]["live"])

        # Counted afresh for the new model (just after the core, so wait for the last batch).
        assert wait_for(lambda: live_figures()["scored"] == more * len(STREAMS))
        figures = live_figures()
        assert figures["mean_abs_error"] < live_error
        later = [orjson.loads(m.payload) for m in client.on("sensord/state/")[states_before:]]
        assert all(s["status"] != "warming_up" for s in later)
        assert all(int(table["steps"][table.slot_of[s]]) == before[s] + more for s in STREAMS)
    printed = capsys.readouterr().out
    assert "promoted" in printed
    with capsys.disabled():  # the decision, for a reader running with -s
        print("\n" + printed + json.dumps(decision, indent=1))
        print(
            f"daemon MAE: old model over the run {live_error:.4f}, "
            f"new model after the swap {figures['mean_abs_error']:.4f}"
        )
