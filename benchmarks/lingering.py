"""What the linger (``[batching] max_delay_ms``, daemon/stages.py ``Linger``) does to the
daemon's CPU per reading and to latency at live rates, in-process and on a clock of its
own, so that a busy box changes the figures little.

    python benchmarks/lingering.py [--bundle DIR] [--rates 1000x1,1000x2,1000x5,10x100]
        [--lingers 0,5] [--seconds 10] [--rounds 2] [--json F]

The real daemon's stages (ingest, reorder, the core, publisher, journal, acknowledgements)
take readings from a source whose readings arrive at given moments of a **virtual clock**:
each stream's readings at its rate, at Poisson moments (independent sensors), from a warm
state (every stream past its tails' warm-up). The clock moves only by what the loop does:
a turn's CPU time (``time.process_time``, which a busy box inflates far less than wall
time), the linger's sleeps, and the idle waits for the next arrival. So a batch holds what
arrived while the previous one was scored, as live. What the network costs (paho, the
broker, system calls) is not in it: benchmarks/live.py measures the whole daemon on a real
broker, these figures are the loop's share and move much less between runs.

Per rate and linger: CPU us per reading, the share of a core (CPU over the virtual time),
mean batch, and latency from arrival to scored (p50/p99, virtual ms: the linger's wait,
queueing behind a batch, and scoring); each linger beside the run without it in the same
round, the rounds alternating (medians over rounds).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import orjson

from sensord import logs
from sensord.arrays import F64
from sensord.config import Settings
from sensord.daemon.loop import Daemon
from sensord.daemon.stages import Linger
from sensord.daemon.transport import Ackable, Link, Message, Request
from sensord.offline.synthetic import generate

WARM = 120  # readings per stream before the measured traffic: past the tails' warm-up
WARM_STEP_S = 3600.0  # their step in their own time (no reorder gap before the first)
IDLE_S = 0.5  # the loop's longest idle wait (loop.py IDLE_WAIT_S)
RATES = "1000x1,1000x2,1000x5,10x100"


class VirtualSource:
    """The daemon's readings source on a virtual clock: reading ``i`` arrives at
    ``arrivals[i]``; a poll reads what has arrived by now, an idle poll waits (virtually)
    for the next. Acknowledgements go nowhere."""

    def __init__(self, arrivals: F64, messages: list[Message]) -> None:
        self.arrivals, self.messages = arrivals, messages
        self.link = Link()
        self.now = 0.0
        self.inbox: list[Message] = []
        self.read = 0  # readings that have arrived and were read
        self.taken: list[Message] = []  # by the current turn

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def poll(self, timeout: float) -> None:
        if not self.inbox and timeout > 0 and self.read < len(self.arrivals):
            self.now = max(self.now, min(self.now + timeout, float(self.arrivals[self.read])))
        arrived = int(np.searchsorted(self.arrivals, self.now, side="right"))
        self.inbox.extend(self.messages[self.read : arrived])
        self.read = max(self.read, arrived)

    def waiting(self) -> int:
        return len(self.inbox)

    def take(self, limit: int) -> list[Message]:
        taken, self.inbox = self.inbox[:limit], self.inbox[limit:]
        self.taken.extend(taken)
        return taken

    def take_requests(self) -> list[Request]:
        return []

    def ack(self, messages: Sequence[Ackable]) -> None:
        pass

    @property
    def done(self) -> bool:
        return self.read == len(self.arrivals) and not self.inbox


@dataclass(frozen=True)
class Rate:
    streams: int
    per_stream: float

    @property
    def label(self) -> str:
        return f"{self.streams}x{self.per_stream:g}"


@dataclass
class Run:
    rate: Rate
    linger_ms: float
    readings: int
    scored: int  # of them, by the daemon's own count
    batches: int
    cpu_s: float
    virtual_s: float
    latencies_ms: F64

    def figures(self) -> dict[str, float]:
        p50, p99 = np.percentile(self.latencies_ms, [50, 99])
        return {
            "cpu_us_per_reading": 1e6 * self.cpu_s / self.readings,
            "core_share": self.cpu_s / self.virtual_s,
            "mean_batch": self.readings / self.batches,
            "p50_ms": float(p50),
            "p99_ms": float(p99),
        }


def traffic(rate: Rate, seconds: float, seed: int) -> tuple[F64, list[Message]]:
    """Each stream's readings at Poisson moments at its rate, all streams merged in order
    of arrival; each reading's timestamp is its arrival, after the warm-up's."""
    rng = np.random.default_rng(seed)
    count = rng.poisson(rate.per_stream * seconds, rate.streams)
    streams = np.repeat(np.arange(rate.streams), count)
    moments = rng.uniform(0.0, seconds, len(streams))
    order = np.argsort(moments, kind="stable")
    streams, moments = streams[order], moments[order]
    base = generate(4096, seed=seed).values
    t0 = time.time()
    k = np.zeros(rate.streams, dtype=np.int64)
    messages = []
    for i, (stream, at) in enumerate(zip(streams.tolist(), moments.tolist(), strict=True)):
        value = float(base[(stream * 37 + WARM + k[stream]) % len(base)])
        k[stream] += 1
        payload = orjson.dumps({"value": round(value, 5), "ts": t0 + at})
        messages.append(Message(f"sensors/s{stream}/value", payload, t0 + at, 1, i + 1))
    return moments, messages


def warmed(bundle: Path, state: Path, rate: Rate, linger_ms: float, seed: int) -> Daemon:
    """A daemon whose streams are all past their warm-up (the values just before the
    measured traffic's, WARM_STEP_S apart, ending before it)."""
    settings = Settings(
        mqtt={"host": "127.0.0.1", "port": 1},  # never connected: the source is virtual
        routes=[{"topic": "sensors/+/value", "bundle": str(bundle), "name": "bench"}],
        state={"dir": str(state), "snapshot_interval_s": 0},
        batching={"max_delay_ms": linger_ms},
        nodata={"enabled": False},
        feedback={"enabled": False},
    )
    daemon = Daemon(settings)
    base = generate(4096, seed=seed).values
    t0 = time.time() - WARM_STEP_S * (WARM + 1)
    for k in range(WARM):
        daemon.process(
            [
                Message(
                    f"sensors/s{s}/value",
                    orjson.dumps({"value": float(base[(s * 37 + k) % len(base)]), "ts": t0}),
                    t0,
                    0,
                )
                for s in range(rate.streams)
            ]
        )
        t0 += WARM_STEP_S
    return daemon


def simulate(bundle: Path, rate: Rate, linger_ms: float, seconds: float, seed: int) -> Run:
    """One rate with one linger: the loop's turns until every reading is scored."""
    with tempfile.TemporaryDirectory() as state:
        daemon = warmed(bundle, Path(state), rate, linger_ms, seed)
        arrivals, messages = traffic(rate, seconds, seed)
        source = VirtualSource(arrivals, messages)
        stages = daemon.stages
        stages.source = source
        stages.linger = Linger(linger_ms / 1000.0, clock=source.clock, sleep=source.sleep)
        batches_before, cpu_s = daemon.counters.batches, 0.0
        scored_before = scored(daemon)
        latencies = np.empty(len(messages))
        while not source.done:
            started = time.process_time()
            stages.turn(IDLE_S)
            spent = time.process_time() - started
            cpu_s += spent
            source.sleep(spent)  # the turn took this long: readings arrived meanwhile
            for message in source.taken:
                latencies[message.mid - 1] = source.now - arrivals[message.mid - 1]
            source.taken.clear()
        stages.release(everything=True)
        daemon.durable.close()
    return Run(
        rate=rate,
        linger_ms=linger_ms,
        readings=len(messages),
        scored=scored(daemon) - scored_before,
        batches=daemon.counters.batches - batches_before,
        cpu_s=cpu_s,
        virtual_s=max(source.now, seconds),
        latencies_ms=1000.0 * latencies,
    )


def scored(daemon: Daemon) -> int:
    return sum(route.pipeline.counters.scored for route in daemon.routes)


def rates(text: str) -> list[Rate]:
    pairs = [part.strip().split("x") for part in text.split(",")]
    return [Rate(int(streams), float(per)) for streams, per in pairs]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, help="bundle to score with (default: train one)")
    parser.add_argument("--rates", type=rates, default=rates(RATES), help=f"default {RATES}")
    parser.add_argument(
        "--lingers",
        type=lambda text: [float(v) for v in text.split(",")],
        default=[0.0, 5.0],
        help="max_delay_ms, the first the baseline of the ratios (default 0,5)",
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="virtual seconds of traffic")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", type=Path, help="write the figures here")
    return parser.parse_args(argv)


def summary(runs: list[Run], lingers: Sequence[float]) -> list[dict[str, Any]]:
    """Per rate and linger: the median of each figure over the rounds, and the median of
    the same-round ratios of CPU per reading and mean batch to the first linger's."""
    rows = []
    for label in dict.fromkeys(r.rate.label for r in runs):
        mine = [r for r in runs if r.rate.label == label]
        base = [r.figures() for r in mine if r.linger_ms == lingers[0]]
        for linger_ms in lingers:
            figures = [r.figures() for r in mine if r.linger_ms == linger_ms]
            row: dict[str, Any] = {
                "rate": label,
                "linger_ms": linger_ms,
                "readings": sum(r.readings for r in mine if r.linger_ms == linger_ms),
                "scored": sum(r.scored for r in mine if r.linger_ms == linger_ms),
            }
            for key in figures[0]:
                row[key] = round(statistics.median(f[key] for f in figures), 3)
            for key in ("cpu_us_per_reading", "mean_batch"):
                ratios = [f[key] / b[key] for f, b in zip(figures, base, strict=True)]
                row[f"{key}_ratio"] = round(statistics.median(ratios), 3)
            rows.append(row)
    return rows


def print_table(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print(
        f"\nin-process, virtual clock ({args.seconds:g} s of Poisson traffic per run, medians "
        f"of {args.rounds} rounds); latency: arrival to scored"
    )
    print(
        f"{'rate':>8} {'linger ms':>9} {'CPU us/reading':>15} {'core %':>7} {'batch':>7} "
        f"{'p50 ms':>7} {'p99 ms':>7} {'CPU ratio':>9} {'batch ratio':>11}"
    )
    for row in rows:
        print(
            f"{row['rate']:>8} {row['linger_ms']:>9g} {row['cpu_us_per_reading']:>15.1f} "
            f"{100 * row['core_share']:>7.1f} {row['mean_batch']:>7.1f} {row['p50_ms']:>7.2f} "
            f"{row['p99_ms']:>7.2f} {row['cpu_us_per_reading_ratio']:>9.2f} "
            f"{row['mean_batch_ratio']:>11.2f}"
        )


def train(work: Path) -> Path:
    """The throughput benchmark's bundle: a 2x64 LSTM on generated data."""
    from sensord.offline.synthetic import write_csv
    from sensord.training.options import FitOptions, TrainOptions
    from sensord.training.train import train_bundle

    history = work / "history.csv"
    write_csv(history, generate(1500, seed=0))
    options = TrainOptions(name="bench", fit=FitOptions(epochs=3, hidden=64, layers=2))
    return train_bundle(history, work / "bundle", options).bundle.path


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logs.configure("warning", "console")  # an alert line per alert would be measured too
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        bundle = args.bundle or train(Path(tmp))
        for round_ in range(args.rounds):
            for rate in args.rates:
                for linger_ms in args.lingers:
                    run = simulate(bundle, rate, linger_ms, args.seconds, seed=round_)
                    runs.append(run)
                    f = run.figures()
                    print(
                        f"  round {round_ + 1}, {rate.label}, linger {linger_ms:g} ms: "
                        f"{f['cpu_us_per_reading']:.1f} us/reading, batches of "
                        f"{f['mean_batch']:.1f}, p99 {f['p99_ms']:.2f} ms",
                        flush=True,
                    )
    rows = summary(runs, args.lingers)
    print_table(rows, args)
    if args.json:
        result = {"seconds": args.seconds, "rounds": args.rounds, "rows": rows}
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0 if all(math.isfinite(r["cpu_us_per_reading"]) for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
