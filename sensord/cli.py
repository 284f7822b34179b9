"""The ``sensord`` command.

Every command reports a user's mistake as one line, ``sensord: error: <what>: <why>``, and
exits 1 (2 for a malformed command line); ``--debug`` adds the traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from sensord import __version__, climodels, logs
from sensord.alert import AlertPolicy
from sensord.bundle import load_bundle
from sensord.detect import DEFAULT_THRESHOLD, DETECTOR_KINDS, DetectorSettings
from sensord.engine import Engine
from sensord.errors import BundleError, ConfigError, SensordError, missing_train_extra
from sensord.pipeline import PipelineSettings
from sensord.report import describe_bundle, describe_events, describe_replay

# Exit codes (sysexits.h where one fits): systemd's RestartPreventExitStatus= names the two
# that a restart cannot fix (deploy/sensord.service).
EXIT_ERROR = 1  # bad input, training failed, broker gone at start of a command, ...
EXIT_BAD_BUNDLE = 65  # EX_DATAERR: a bundle that cannot be trusted or read
EXIT_BAD_CONFIG = 78  # EX_CONFIG: settings that do not validate
EXIT_INTERRUPTED = 130

Command = Callable[[argparse.Namespace], int]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logs.configure(args.log_level or "info", args.log_format or "auto")
    command: Command = args.command
    try:
        return command(args)
    except SensordError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"sensord: error: {exc}", file=sys.stderr)
        return exit_code(exc)
    except KeyboardInterrupt:
        print("sensord: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def exit_code(error: SensordError) -> int:
    """The process exit code for an error: distinct for a bad bundle and a bad config."""
    if isinstance(error, BundleError):
        return EXIT_BAD_BUNDLE
    if isinstance(error, ConfigError):
        return EXIT_BAD_CONFIG
    return EXIT_ERROR


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sensord", description="Streaming anomaly detection for sensor streams."
    )
    parser.add_argument("--version", action="version", version=f"sensord {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument(
        "--log-level",
        default=None,
        choices=logs.LEVELS,
        help="log level (default: the config's, else info)",
    )
    parser.add_argument(
        "--log-format",
        default=None,
        choices=("auto", "console", "json"),
        help="log format (default: the config's, else auto)",
    )
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")
    _add_train(commands)
    _add_inspect(commands)
    _add_replay(commands)
    _add_demo(commands)
    _add_run(commands)
    _add_check_config(commands)
    _add_simulate(commands)
    climodels.add_commands(commands)  # retrain, promote, models
    return parser


def _add_train(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = commands.add_parser("train", help="fit a model on a history CSV and write a bundle")
    p.add_argument("data", type=Path, help="CSV: timestamp, feature columns[, stream]")
    p.add_argument("--out", type=Path, required=True, help="bundle directory to write")
    p.add_argument("--name", default="model", help="model name (letters, digits, _ . -)")
    p.add_argument(
        "--model-version",
        dest="model_version",
        default=None,
        help="model version (default: first 12 hex digits of the graph's sha256)",
    )
    p.add_argument(
        "--features",
        default=None,
        help="comma-separated feature columns (default: all but timestamp, stream)",
    )
    p.add_argument("--epochs", type=_positive_int, default=150, help="most epochs to run")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same bundle)")
    p.add_argument("--hidden", type=_positive_int, default=64, help="LSTM hidden size")
    p.add_argument("--layers", type=_positive_int, default=2, help="LSTM layers")
    p.add_argument("--dropout", type=float, default=0.1, help="dropout between layers")
    p.add_argument("--learning-rate", type=float, default=3e-3, help="Adam learning rate")
    p.add_argument("--window", type=_positive_int, default=64, help="training window, rows")
    p.add_argument(
        "--patience",
        type=_positive_int,
        default=15,
        help="stop after this many epochs without a better validation loss",
    )
    p.add_argument(
        "--validation-fraction",
        type=float,
        default=0.2,
        help="last fraction of each stream's rows kept for validation",
    )
    p.add_argument(
        "--time-of-day",
        choices=("auto", "on", "off"),
        default="auto",
        help="time-of-day inputs: auto adds them when the data spans >= 2 days sampled at "
        "least hourly",
    )
    p.add_argument(
        "--transform",
        choices=("none", "asinh"),
        default="none",
        help="value transform after scaling (asinh compresses spikes)",
    )
    _add_out_of_order(p)
    p.set_defaults(command=_train)


def _add_inspect(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = commands.add_parser("inspect", help="show and verify a model bundle")
    p.add_argument("bundle", type=Path, help="bundle directory")
    p.add_argument("--json", action="store_true", help="print the manifest as JSON")
    p.set_defaults(command=_inspect)


def _add_replay(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = commands.add_parser("replay", help="run a CSV through the daemon's core")
    p.add_argument("data", type=Path, help="CSV with the bundle's feature columns")
    p.add_argument("--bundle", type=Path, required=True, help="bundle directory")
    p.add_argument("--out", type=Path, required=True, help="result CSV to write")
    p.add_argument("--plot", type=Path, default=None, help="PNG to draw (needs matplotlib)")
    p.add_argument("--stream", default=None, help="stream to plot (default: the first)")
    p.add_argument("--detector", choices=DETECTOR_KINDS, default=DetectorSettings().kind)
    p.add_argument(
        "--threshold", type=float, default=DEFAULT_THRESHOLD, help="score threshold, (0, 1)"
    )
    p.add_argument(
        "--raise-after",
        type=_positive_int,
        default=1,
        help="consecutive anomalous samples that raise an alert",
    )
    p.add_argument(
        "--clear-after",
        type=_positive_int,
        default=5,
        help="consecutive normal samples that clear it",
    )
    p.add_argument(
        "--warmup", type=int, default=10, help="samples after a (re)start before a stream may alert"
    )
    p.add_argument(
        "--max-gap",
        type=float,
        default=None,
        help="seconds without samples after which a stream's state resets",
    )
    p.add_argument("--quiet", action="store_true", help="do not list the alerts")
    _add_out_of_order(p)
    p.set_defaults(command=_replay)


def _add_demo(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = commands.add_parser("demo", help="live demo: broker, simulated sensors, daemon, alerts")
    p.add_argument("--out", type=Path, default=Path("sensord-demo"), help="working directory")
    p.add_argument(
        "--host",
        default=None,
        help="broker to use (default: 127.0.0.1:1883 if it answers, else start one)",
    )
    p.add_argument("--port", type=int, default=1883)
    p.add_argument("--streams", type=_positive_int, default=20, help="simulated sensors")
    p.add_argument("--rate", type=float, default=100.0, help="messages per second, in all")
    p.add_argument("--duration", type=float, default=30.0, help="seconds of traffic")
    p.add_argument("--anomalies", type=int, default=4, help="anomalies to inject")
    p.add_argument(
        "--offline",
        action="store_true",
        help="no MQTT: train on a generated series and replay it with anomalies",
    )
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(command=_demo)


def _add_run(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = commands.add_parser("run", help="run the daemon")
    p.add_argument(
        "--config", type=Path, default=None, help="TOML settings (default: $SENSORD_CONFIG)"
    )
    p.set_defaults(command=_run)


def _add_check_config(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = commands.add_parser("check-config", help="validate settings and bundles, print them")
    p.add_argument(
        "config",
        type=Path,
        nargs="?",
        default=None,
        help="TOML settings (default: $SENSORD_CONFIG)",
    )
    p.set_defaults(command=_check_config)


def _add_simulate(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = commands.add_parser("simulate", help="publish synthetic sensor streams to a broker")
    p.add_argument("--host", default="localhost")
    p.add_argument("--port", type=int, default=1883)
    p.add_argument("--protocol", choices=("5", "3.1.1"), default="5")
    p.add_argument("--topic", default="sensors/{stream}/value", help="topic template with {stream}")
    p.add_argument("--streams", type=_positive_int, default=10)
    p.add_argument("--rate", type=float, default=100.0, help="messages per second, in all")
    p.add_argument("--duration", type=float, default=30.0, help="seconds")
    p.add_argument("--anomalies", type=int, default=3, help="spikes/dips to inject")
    p.add_argument(
        "--min-index",
        type=int,
        default=40,
        help="no anomaly in a stream's first N samples (its warm-up)",
    )
    p.add_argument("--qos", type=int, choices=(0, 1, 2), default=1)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(command=_simulate)


def _train(args: argparse.Namespace) -> int:
    try:
        from sensord.training.fit import FitOptions
        from sensord.training.progress import train_with_progress
        from sensord.training.train import TrainOptions
    except ImportError as exc:
        raise missing_train_extra("train", exc.name) from None

    options = TrainOptions(
        name=args.name,
        version=args.model_version,
        features=[f.strip() for f in args.features.split(",")] if args.features else None,
        validation_fraction=args.validation_fraction,
        out_of_order=args.out_of_order,
        time_of_day=args.time_of_day,
        transform=args.transform,
        fit=FitOptions(
            epochs=args.epochs,
            hidden=args.hidden,
            layers=args.layers,
            dropout=args.dropout,
            learning_rate=args.learning_rate,
            window=args.window,
            patience=args.patience,
            seed=args.seed,
        ),
    )
    report = train_with_progress(args.data, args.out, options)
    print(describe_bundle(report.bundle, verified=True))
    print(f"trained in {report.seconds:.1f} s; parity {report.parity:.1e} (tolerance 1e-5)")
    return 0


def _inspect(args: argparse.Namespace) -> int:
    bundle = load_bundle(args.bundle)
    Engine(bundle)  # verifies the graph's shapes against the manifest
    if args.json:
        print(json.dumps(bundle.manifest.model_dump(mode="json"), indent=2, sort_keys=True))
    else:
        print(describe_bundle(bundle, verified=True))
    return 0


def _replay(args: argparse.Namespace) -> int:
    from sensord.replay import open_pipeline, replay, write_result

    try:
        settings = PipelineSettings(
            detector=DetectorSettings(kind=args.detector, threshold=args.threshold),
            alerts=AlertPolicy(
                raise_after=args.raise_after, clear_after=args.clear_after, warmup=args.warmup
            ),
            max_gap_s=args.max_gap,
        )
    except ValueError as exc:
        raise SensordError(f"replay options: {exc}") from None
    pipeline = open_pipeline(args.bundle, settings)
    result = replay(args.data, pipeline, out_of_order=args.out_of_order)
    write_result(args.out, result)
    if args.plot is not None:
        from sensord.plot import write_plot

        write_plot(args.plot, result, args.stream)
    if not args.quiet:
        print(describe_events(result.events))
    print(describe_replay(result, pipeline.counters, args.out, args.plot))
    return 0


def _demo(args: argparse.Namespace) -> int:
    if args.offline:
        from sensord.demo import run_offline_demo

        return run_offline_demo(args.out, rows=1500, seed=args.seed)
    from sensord.livedemo import LiveDemo

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


def _run(args: argparse.Namespace) -> int:
    import signal

    from sensord.config import config_path, load_settings
    from sensord.daemon import Daemon

    settings = load_settings(config_path(args.config))
    logs.configure(
        args.log_level or settings.logging.level, args.log_format or settings.logging.format
    )
    daemon = Daemon(settings)
    signal.signal(signal.SIGTERM, lambda *_: daemon.request_stop())
    signal.signal(signal.SIGINT, lambda *_: daemon.request_stop())
    signal.signal(signal.SIGHUP, lambda *_: daemon.request_reload())
    daemon.run()
    return 0


def _check_config(args: argparse.Namespace) -> int:
    from sensord.config import config_path, effective_config, load_settings

    path = config_path(args.config)
    settings = load_settings(path)
    problems = []
    for i, route in enumerate(settings.routes):
        try:
            Engine(load_bundle(route.bundle))
        except SensordError as exc:
            problems.append(f"routes[{i}].bundle: {str(route.bundle)!r}: {exc}")
    if problems:
        raise ConfigError(f"{path or 'settings'}: invalid configuration\n" + "\n".join(problems))
    print(json.dumps(effective_config(settings), indent=2))
    print(f"configuration ok: {len(settings.routes)} route(s), bundles verified", file=sys.stderr)
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from sensord.simulate import Injected, SimulationPlan, simulate
    from sensord.timestamps import format_timestamp

    plan = SimulationPlan(
        streams=args.streams,
        rate=args.rate,
        duration_s=args.duration,
        anomalies=args.anomalies,
        min_index=args.min_index,
        topic=args.topic,
        seed=args.seed,
        qos=args.qos,
    )

    def show(event: Injected) -> None:
        print(
            f"{format_timestamp(event.ts)} injected {event.kind} on {event.stream} "
            f"(sample {event.index}, value {event.value:.3f})",
            flush=True,
        )

    report = simulate(plan, args.host, args.port, args.protocol, on_anomaly=show)
    print(
        f"sent {report.sent} messages in {report.seconds:.1f} s "
        f"({report.sent / max(report.seconds, 1e-9):.0f}/s), {len(report.injected)} anomalies"
    )
    return 0


def _add_out_of_order(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out-of-order",
        choices=("error", "drop"),
        default="error",
        help="a row not after its stream's previous one: an error (default), or dropped and "
        "counted as the daemon drops a late reading",
    )


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


if __name__ == "__main__":
    sys.exit(main())
