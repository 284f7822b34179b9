"""``sensord demo`` and ``sensord simulate``: showing sensord at work, and feeding it."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from sensord.climodels import positive_int

if TYPE_CHECKING:
    from sensord.climodels import SubParsers


def add_commands(commands: SubParsers) -> None:
    """Register demo and simulate with the ``sensord`` parser."""
    _add_demo(commands)
    _add_simulate(commands)


def _add_demo(commands: SubParsers) -> None:
    p = commands.add_parser("demo", help="live demo: broker, simulated sensors, daemon, alerts")
    p.add_argument("--out", type=Path, default=Path("sensord-demo"), help="working directory")
    p.add_argument(
        "--host",
        default=None,
        help="broker to use (default: 127.0.0.1:1883 if it answers, else start one)",
    )
    p.add_argument("--port", type=int, default=1883)
    p.add_argument("--streams", type=positive_int, default=20, help="simulated sensors")
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


def _add_simulate(commands: SubParsers) -> None:
    p = commands.add_parser("simulate", help="publish synthetic sensor streams to a broker")
    p.add_argument("--host", default="localhost")
    p.add_argument("--port", type=int, default=1883)
    p.add_argument("--protocol", choices=("5", "3.1.1"), default="5")
    p.add_argument("--topic", default="sensors/{stream}/value", help="topic template with {stream}")
    p.add_argument("--streams", type=positive_int, default=10)
    p.add_argument("--rate", type=float, default=100.0, help="messages per second, in all")
    p.add_argument("--duration", type=float, default=30.0, help="seconds")
    p.add_argument(
        "--anomalies",
        type=int,
        default=4,
        help="one-sample anomalies to inject, in turn: spike, dip, in-range spike, in-range dip",
    )
    p.add_argument(
        "--min-index",
        type=int,
        default=110,
        help="no anomaly in a stream's first N samples (the detector's own warm-up is 100)",
    )
    p.add_argument("--qos", type=int, choices=(0, 1, 2), default=1)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(command=_simulate)


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
