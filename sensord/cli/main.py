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

from sensord import __version__, logs
from sensord.cli import clusterconfig, compiling, demo, simulate, training
from sensord.cli import models as climodels
from sensord.cli.arguments import CommandParser, SubParsers, positive_int
from sensord.cli.extras import require_cluster_extra, require_plot_extra
from sensord.core.alert import AlertPolicy
from sensord.core.bundle import load_bundle
from sensord.core.detect import DEFAULT_THRESHOLD, DETECTOR_KINDS, DetectorSettings
from sensord.core.engine import Engine
from sensord.core.pipeline import PipelineSettings
from sensord.errors import BundleError, ConfigError, SensordError
from sensord.offline.report import describe_bundle, describe_events, describe_replay

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
    commands = parser.add_subparsers(
        title="commands", required=True, metavar="COMMAND", parser_class=CommandParser
    )
    training.add_command(commands)
    _add_inspect(commands)
    _add_replay(commands)
    demo.add_command(commands)
    simulate.add_command(commands)
    _add_run(commands)
    _add_check_config(commands)
    _add_cluster_config(commands)
    compiling.add_command(commands)
    climodels.add_commands(commands)  # retrain, promote, models
    return parser


# The defaults of ``sensord replay`` are the core's.
ALERTS = AlertPolicy()
DETECTOR = DetectorSettings()


def _add_inspect(commands: SubParsers) -> None:
    p = commands.add_parser("inspect", help="show and verify a model bundle")
    p.add_argument("bundle", type=Path, help="bundle directory")
    p.add_argument("--json", action="store_true", help="print the manifest as JSON")
    p.set_defaults(command=_inspect)


def _add_replay(commands: SubParsers) -> None:
    from sensord.offline.replay import ENGINES, ENGINES_HELP

    p = commands.add_parser("replay", help="run a CSV through the daemon's core")
    p.add_argument("data", type=Path, help="CSV with the bundle's feature columns")
    p.add_argument("--bundle", type=Path, required=True, help="bundle directory")
    p.add_argument("--out", type=Path, required=True, help="result CSV to write")
    p.add_argument("--plot", type=Path, default=None, help="PNG to draw (needs matplotlib)")
    p.add_argument("--stream", default=None, help="stream to plot (default: the first)")
    p.add_argument(
        "--detector", choices=DETECTOR_KINDS, default=DETECTOR.kind, help="the detector (one)"
    )
    p.add_argument(
        "--threshold", type=float, default=DEFAULT_THRESHOLD, help="score threshold, (0, 1)"
    )
    p.add_argument(
        "--raise-after",
        type=positive_int,
        default=ALERTS.raise_after,
        help="consecutive anomalous samples that raise an alert",
    )
    p.add_argument(
        "--clear-after",
        type=positive_int,
        default=ALERTS.clear_after,
        help="consecutive normal samples that clear it",
    )
    p.add_argument(
        "--warmup",
        type=int,
        default=ALERTS.warmup,
        help="samples after a (re)start before a stream may alert",
    )
    p.add_argument(
        "--max-gap",
        type=float,
        default=None,
        help="seconds without samples after which a stream's state resets",
    )
    p.add_argument("--engine", choices=ENGINES, default=ENGINES[0], help=ENGINES_HELP)
    p.add_argument("--quiet", action="store_true", help="do not list the alerts")
    training.add_out_of_order(p)
    p.set_defaults(command=_replay)


def _add_run(commands: SubParsers) -> None:
    p = commands.add_parser("run", help="run the daemon")
    p.add_argument(
        "--config", type=Path, default=None, help="TOML settings (default: $SENSORD_CONFIG)"
    )
    p.set_defaults(command=_run)


def _add_config_file(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "config",
        type=Path,
        nargs="?",
        default=None,
        help="TOML settings (default: $SENSORD_CONFIG)",
    )


def _add_cluster_config(commands: SubParsers) -> None:
    p = commands.add_parser(
        "cluster-config", help="print the engine's nats-server configuration for a cluster"
    )
    _add_config_file(p)
    clusterconfig.add_options(p)
    p.set_defaults(command=_cluster_config)


def _cluster_config(args: argparse.Namespace) -> int:
    from sensord.config import config_path, load_settings

    path = config_path(args.config)
    settings = load_settings(path)
    listen = clusterconfig.engine_listen(settings, args)
    print(clusterconfig.engine_config(settings, str(path or "settings"), listen), end="")
    return 0


def _add_check_config(commands: SubParsers) -> None:
    p = commands.add_parser("check-config", help="validate settings and bundles, print them")
    _add_config_file(p)
    p.set_defaults(command=_check_config)


def _inspect(args: argparse.Namespace) -> int:
    bundle = load_bundle(args.bundle)
    Engine(bundle)  # verifies the graph's shapes against the manifest
    if args.json:
        print(json.dumps(bundle.manifest.model_dump(mode="json"), indent=2, sort_keys=True))
    else:
        print(describe_bundle(bundle, verified=True))
    return 0


def _replay(args: argparse.Namespace) -> int:
    from sensord.offline.replay import open_pipeline, replay, write_result

    if args.plot is not None:
        require_plot_extra("replay")  # before the file is replayed, not after

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
    pipeline = open_pipeline(args.bundle, settings, args.engine)
    result = replay(args.data, pipeline, out_of_order=args.out_of_order)
    write_result(args.out, result)
    if args.plot is not None:
        from sensord.offline.plot import write_plot

        write_plot(args.plot, result, args.stream)
    if not args.quiet:
        print(describe_events(result.events))
    print(describe_replay(result, pipeline.counters, args.out, args.plot))
    return 0


def _run(args: argparse.Namespace) -> int:
    import signal

    from sensord.config import config_path, load_settings

    settings = load_settings(config_path(args.config))
    if settings.cluster.url is not None:
        require_cluster_extra(str(config_path(args.config) or "settings"))
    from sensord.daemon.loop import Daemon  # after the check: cluster mode imports nats

    logs.configure(
        args.log_level or settings.logging.level, args.log_format or settings.logging.format
    )
    daemon = Daemon(settings, config=config_path(args.config))
    signal.signal(signal.SIGTERM, lambda *_: daemon.request_stop())
    signal.signal(signal.SIGINT, lambda *_: daemon.request_stop())
    signal.signal(signal.SIGHUP, lambda *_: daemon.request_reload())
    daemon.run()
    return 0


def _check_config(args: argparse.Namespace) -> int:
    from sensord.config import config_path, effective_config, load_settings

    path = config_path(args.config)
    settings = load_settings(path)
    if settings.cluster.url is not None:
        require_cluster_extra(str(path or "settings"))
    problems = []
    for i, route in enumerate(settings.routes):
        for key, bundle in (("bundle", route.bundle), ("shadow", route.shadow)):
            if bundle is None:
                continue
            try:
                Engine(load_bundle(bundle))
            except SensordError as exc:
                problems.append(f"routes[{i}].{key}: {str(bundle)!r}: {exc}")
    if problems:
        raise ConfigError(f"{path or 'settings'}: invalid configuration\n" + "\n".join(problems))
    print(json.dumps(effective_config(settings), indent=2))
    print(f"configuration ok: {len(settings.routes)} route(s), bundles verified", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
