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

import argparse
from pathlib import Path

from sensord.cli.arguments import SubParsers, positive_int
from sensord.cli.extras import require_train_extra
from sensord.core.sample import Outcome
from sensord.errors import InputError
from sensord.offline.plot import write_plot
from sensord.offline.replay import ReplayResult, open_pipeline, replay, write_result
from sensord.offline.report import describe_events, describe_replay
from sensord.offline.synthetic import Anomaly, generate, standard_anomalies, write_csv

# How many rows after an injected anomaly an alert still counts as catching it.
CATCH_WINDOW = 5


def add_command(commands: SubParsers) -> None:
    p = commands.add_parser("demo", help="live demo: broker, simulated sensors, daemon, alerts")
    p.add_argument("--out", type=Path, default=Path("sensord-demo"), help="working directory")
    p.add_argument(
        "--host",
        default=None,
        help="broker to use (default: 127.0.0.1:1883 if it answers, else start one)",
    )
    p.add_argument("--port", type=int, default=1883, help="broker port")
    p.add_argument("--streams", type=positive_int, default=20, help="simulated sensors")
    p.add_argument("--rate", type=float, default=100.0, help="messages per second, in all")
    p.add_argument("--duration", type=float, default=30.0, help="seconds of traffic")
    p.add_argument("--anomalies", type=int, default=4, help="anomalies to inject")
    p.add_argument(
        "--offline",
        action="store_true",
        help="no MQTT: train on a generated series and replay it with anomalies",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed of data and anomalies")
    p.set_defaults(command=_demo)


def _demo(args: argparse.Namespace) -> int:
    if args.offline:
        return run_offline_demo(args.out, rows=1500, seed=args.seed)
    from sensord.cli.livedemo import LiveDemo

    return LiveDemo(
        args.out,
        host=args.host,
        port=args.port,
        streams=args.streams,
        rate=args.rate,
        duration_s=args.duration,
        anomalies=args.anomalies,
        seed=args.seed,
    ).run()


def run_offline_demo(out: Path, rows: int, seed: int) -> int:
    require_train_extra("demo --offline")
    from sensord.training.options import TrainOptions
    from sensord.training.progress import train_with_progress

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
