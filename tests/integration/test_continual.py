"""Continual learning on a real broker: a daemon with recording and continual retraining on
records its readings, retrains by itself in a child process once the route is due, the gate
promotes the candidate, and the daemon hot-swaps it keeping every stream's state."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
from structlog.testing import capture_logs

from sensord.cli.broker import LocalBroker
from sensord.cli.main import main
from sensord.config import load_settings
from sensord.daemon.loop import Daemon
from sensord.daemon.retrainchild import CHILD_LOG
from sensord.offline.synthetic import generate
from sensord.ops.models import current_version, read_decisions
from sensord.training.options import FitOptions, TrainOptions
from sensord.training.train import train_bundle
from tests.integration.conftest import mqtt_client, running, scored, wait_for

T0 = 1_700_000_000.0
STEP = 300.0
STREAMS = ("m1", "m2", "m3")
ROWS = 500  # per stream; the route is due once they are all scored (every_rows)
CHANGE = 150  # the plant changes at this reading
MORE = 40  # readings per stream after the swap
# What a swap refits for the new model (core/swap.py); every other column carries over.
REFITTED = {"h", "c", "prediction", "spread", "center", "scale", "seen_min", "seen_max"}


def drifted(seed: int) -> npt.NDArray[np.float64]:
    """The plant as before, then changed: its daily cycle half a day later and wider."""
    values = generate(ROWS, seed=seed).values.copy()
    later = generate(ROWS, seed=seed, start=1.7e9 + 43_200.0).values * 1.8 - 16.0
    values[CHANGE:] = later[CHANGE:]
    return values


def write_config(tmp_path: Path, broker: LocalBroker) -> Path:
    state = tmp_path / "state"
    current = state / "models" / "temp" / "current"
    path = tmp_path / "sensord.toml"
    path.write_text(
        f'[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\nprotocol = "{broker.protocol}"\n'
        'client_id = "sensord-continual-test"\nreconnect_min_s = 0.5\nreconnect_max_s = 2\n'
        f'[state]\ndir = "{state}"\n'
        f'[[routes]]\ntopic = "sensors/+/value"\nname = "temp"\nbundle = "{current}"\n'
        '[alerts]\nprefix = "sensord"\n[batching]\nmax_delay_ms = 2\n'
        "[metrics]\nport = 0\n[record]\nenabled = true\n"
        "[retrain]\nmin_rows = 100\nepochs = 40\nexclude_margin_s = 0\n"
        f"continual = true\nevery_rows = {ROWS}\nmin_interval_s = 0\n"
    )
    return path


def child_output(config: Path) -> str:
    path = config.parent / "state" / "models" / "temp" / CHILD_LOG
    return path.read_text()[-3000:] if path.exists() else "(no child output)"


def metric(daemon: Daemon, sample: str) -> float | None:
    assert daemon.metrics is not None
    url = f"http://127.0.0.1:{daemon.metrics.port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(sample + " "):
                return float(line.rsplit(" ", 1)[1])
    return None


def test_the_daemon_retrains_by_itself_and_swaps_keeping_stream_state(
    broker: LocalBroker, history_csv: Path, tmp_path: Path
) -> None:
    fit = FitOptions(epochs=30, hidden=8, layers=1, window=32, seed=7)  # knows the old plant
    live = train_bundle(history_csv, tmp_path / "plant", TrainOptions(name="plant", fit=fit)).bundle
    config = write_config(tmp_path, broker)
    assert main(["promote", str(live.path), "--route", "temp", "--config", str(config)]) == 0
    route_dir = config.parent / "state" / "models" / "temp"
    series = {stream: drifted(seed) for seed, stream in enumerate(STREAMS, start=31)}
    with (
        capture_logs() as logs,
        running(load_settings(config), config) as daemon,
        mqtt_client(broker, subscribe="sensord/state/#") as client,
    ):
        continual = daemon.continual
        assert continual is not None, "continual retraining is on in the config"
        for k in range(ROWS):
            for stream, values in series.items():
                client.publish_json(
                    f"sensors/{stream}/value", {"value": values[k], "ts": T0 + k * STEP}
                )
        assert wait_for(lambda: scored(daemon) == ROWS * len(STREAMS), 60), "not all scored"
        assert wait_for(lambda: continual.running == "temp" or bool(continual.history), 10), (
            f"no retrain started after {ROWS} readings per stream: {continual.figures()}"
        )
        route, table = daemon.routes[0], daemon.routes[0].pipeline.table
        before = {name: column.copy() for name, column in table.columns.items()}
        slots = [table.slot_of[s] for s in STREAMS]
        assert route.pipeline.bundle.manifest.version == live.manifest.version, "swapped early"

        assert wait_for(lambda: bool(continual.history), 60), (
            f"the retrain child did not end within 60 s:\n{child_output(config)}"
        )
        (attempt,) = continual.history
        decision = read_decisions(route_dir)[-1]
        assert attempt.outcome == "promoted", (
            f"{attempt}\n{json.dumps(decision, indent=1)}\n{child_output(config)}"
        )
        new_version = attempt.ended.version
        assert new_version == decision["candidate"]["version"] == current_version(route_dir)
        assert attempt.rows == ROWS * len(STREAMS) and attempt.ended.cpu_s > 0.5, attempt

        # The daemon sees `current` move and swaps the new bundle in: same table, same state.
        assert wait_for(lambda: route.pipeline.bundle.manifest.version == new_version, 10), (
            "the promoted bundle was not swapped in"
        )
        assert daemon.routes[0] is route and route.pipeline.table is table, "state not kept"
        for name, column in table.columns.items():
            if name not in REFITTED:
                assert np.array_equal(column[slots], before[name][slots], equal_nan=True), name
        assert not np.array_equal(table["h"][slots], before["h"][slots]), "LSTM state not refitted"

        # Counted and logged, and in the metrics.
        promoted = 'sensord_retrains_total{outcome="promoted",route="temp"}'
        assert metric(daemon, promoted) == 1.0, "the promotion is not in the metrics"
        cpu = metric(daemon, 'sensord_retrain_cpu_seconds_total{route="temp"}')
        assert cpu == attempt.ended.cpu_s, f"CPU seconds in the metrics: {cpu}"
        finished = [e for e in logs if e["event"] == "retrain finished"]
        assert [e["outcome"] for e in finished] == ["promoted"], finished
        assert finished[0]["rows"] == ROWS * len(STREAMS) and finished[0]["cpu_s"] > 0

        # The streams go on where they were: no new warm-up, scored by the new model.
        states_before = len(client.on("sensord/state/"))
        for k in range(ROWS, ROWS + MORE):
            for stream, values in series.items():
                value = values[k % ROWS]
                client.publish_json(
                    f"sensors/{stream}/value", {"value": value, "ts": T0 + k * STEP}
                )
        total = (ROWS + MORE) * len(STREAMS)
        assert wait_for(lambda: scored(daemon) == total, 30), "the readings after the swap"
        later: list[dict[str, Any]] = [
            orjson.loads(m.payload) for m in client.on("sensord/state/")[states_before:]
        ]
        assert all(s["status"] != "warming_up" for s in later), "streams warmed up again"
        steps = table["steps"][slots]
        assert (steps == before["steps"][slots] + MORE).all(), steps
