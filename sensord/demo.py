"""``sensord demo``: sensord end to end.

The live demo (the default) uses the broker at 127.0.0.1:1883 if one answers, else starts
one (Mosquitto if installed, else an embedded amqtt broker); trains a small demo bundle (or
reuses the one from a previous run); starts the real daemon (``sensord run``) as a child
process; runs the simulator with anomalies injected; prints alerts as they arrive on MQTT;
then stops the daemon with SIGTERM and says which anomalies were caught.

``--offline`` does the same without MQTT: train on a generated history, replay a later
stretch with a spike, a dip and a level shift, print the alerts and write the plot.
"""

from __future__ import annotations

from pathlib import Path

from sensord.errors import InputError
from sensord.plot import write_plot
from sensord.replay import ReplayResult, open_pipeline, replay, write_result
from sensord.report import describe_events, describe_replay
from sensord.sample import Outcome
from sensord.synthetic import Anomaly, generate, standard_anomalies, write_csv

# How many rows after an injected anomaly an alert still counts as catching it.
CATCH_WINDOW = 5


def run_offline_demo(out: Path, rows: int, seed: int) -> int:
    from sensord.training.progress import train_with_progress
    from sensord.training.train import TrainOptions

    history = generate(rows, seed=seed)
    later_rows = max(rows // 2, 400)
    later_start = float(history.timestamps[-1]) + 300.0
    later = generate(
        later_rows, seed=seed + 1, start=later_start, anomalies=standard_anomalies(later_rows)
    )
    train_csv, live_csv = out / "history.csv", out / "live.csv"
    write_csv(train_csv, history)
    write_csv(live_csv, later)
    print(
        f"1/3 generated {train_csv} ({rows} clean rows) and {live_csv} ({later_rows} rows "
        "with a spike, a dip and a level shift)"
    )

    report = train_with_progress(train_csv, out / "bundle", TrainOptions(name="demo"))
    t = report.bundle.manifest.training
    print(
        f"2/3 trained {out / 'bundle'} in {report.seconds:.1f} s: {t.epochs_run} epochs, "
        f"validation MAE {t.validation_mae:.3f} vs {t.persistence_mae:.3f} for "
        f"repeat-last-value; ONNX parity {report.parity:.1e}"
    )

    pipeline = open_pipeline(out / "bundle")
    result = replay(live_csv, pipeline)
    write_result(out / "result.csv", result)
    plotted = _plot(out / "plot.png", result)
    print("3/3 replayed through the daemon's core:")
    print(describe_events(result.events))
    print(describe_replay(result, pipeline.counters, out / "result.csv", plotted))
    caught = _caught(later.anomalies, result.outcomes)
    for anomaly, hit in caught:
        print(
            f"  injected {anomaly.kind:<5} at row {anomaly.row}: " + ("caught" if hit else "MISSED")
        )
    return 0 if all(hit for _, hit in caught) else 1


def _plot(path: Path, result: ReplayResult) -> Path | None:
    try:
        write_plot(path, result)
    except InputError as exc:  # e.g. the plot extra (matplotlib) is not installed
        print(f"no plot: {exc}")
        return None
    return path


def _caught(
    anomalies: tuple[Anomaly, ...], outcomes: tuple[Outcome | None, ...]
) -> list[tuple[Anomaly, bool]]:
    raised_rows = {
        i
        for i, o in enumerate(outcomes)
        if o is not None and o.event is not None and o.event.event == "raised"
    }
    return [
        (a, any(a.row <= r <= a.row + a.length - 1 + CATCH_WINDOW for r in raised_rows))
        for a in anomalies
    ]
