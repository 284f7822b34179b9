"""Cluster mode's scaling: readings per second and CPU per reading with 1, 2 and 4 members
against one engine on this machine, the engine's own share, and the hand-over time.

For each member count (the counts take turns, round after round, each on a fresh engine):

1. a nats-server with JetStream, the partition mapping (``subject_mapping(12)``) and its
   MQTT gateway (the members publish alerts and states through it), started by the run;
2. N ``sensord run`` members (child processes, cluster mode, the default lease of 6 s), each
   ready (systemd READY) and the 12 partitions spread over them;
   (``--pin``: each member's threads on one core of its own, round robin);
3. the members are paused (SIGSTOP), a backlog of S streams x R readings is published
   natively into the engine (``sensors.<stream>.value``, which the mapping sends to
   ``part.<n>.…`` and the readings log keeps) and the members go on (SIGCONT): from then
   until every member's metrics count every reading stepped is the drain. Pausing keeps the
   publisher's own CPU out of the drain, as the engine's store is what members read from;
4. with N >= 2, one member is killed -9 and the time until a live member owns each of its
   partitions is the hand-over time (lease lapse, a turn, restore).

Reported per member count: readings/s over the drain, the members' CPU seconds per 1,000
readings (utime + stime, all members), the engine's, the engine's share of the CPU the
cluster used, the machine's load, and the ratio of readings/s to one member's in the same
round (only same-run ratios mean something on a shared machine).

Each round also measures a **single daemon** on the same backlog (benchmarks/clusterdaemon.py):
its loop in-process, and ``sensord run`` draining it from Mosquitto (``--no-mosquitto``
skips that); the members' CPU per reading is reported as a ratio to each, same round.

    python benchmarks/cluster.py [--members 1,2,4] [--streams 1000] [--per-stream 300]
        [--rounds 3] [--bundle DIR] [--no-mosquitto] [--json F]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import nats

from benchmarks.children import BenchmarkError, DaemonProcess, process_cpu_s
from benchmarks.clusterdaemon import Single, payload, print_versus, single_daemon, versus
from benchmarks.report import machine, machine_load
from sensord.cli.broker import free_port
from sensord.cli.engine import LocalEngine, start_engine
from sensord.cluster.feed import LogSettings, ensure_log
from sensord.cluster.leases import leases_in
from sensord.wire.partition import subject_mapping

PARTITIONS = 12
LEASE_S = 6.0
DRAIN_TIMEOUT_S = 300.0
POLL_S = 0.1  # each member's metrics are read this often during the drain (it costs them)


@dataclass
class Round:
    members: int
    round: int
    readings: int
    seconds: float
    rate: float
    member_cpu_s: float
    engine_cpu_s: float
    handover_s: float | None
    load: float

    @property
    def member_cpu_per_1000(self) -> float:
        return 1000.0 * self.member_cpu_s / self.readings

    @property
    def engine_cpu_per_1000(self) -> float:
        return 1000.0 * self.engine_cpu_s / self.readings

    @property
    def engine_share(self) -> float:
        return self.engine_cpu_s / (self.engine_cpu_s + self.member_cpu_s)


def member_config(folder: Path, engine: LocalEngine, name: str, bundle: Path, port: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "sensord.toml"
    config.write_text(
        f'[mqtt]\nhost = "127.0.0.1"\nport = {engine.mqtt_port}\nprotocol = "3.1.1"\n'
        'client_id = "bench"\n'
        f'[state]\ndir = "{folder / "state"}"\n'
        f'[metrics]\nhost = "127.0.0.1"\nport = {port}\n'
        "[nodata]\nenabled = false\n"
        f'[cluster]\nurl = "{engine.url}"\nmember = "{name}"\npartitions = {PARTITIONS}\n'
        f"lease_s = {LEASE_S}\n"
        f'[[routes]]\ntopic = "sensors/+/value"\nbundle = "{bundle}"\n'
    )
    return config


async def _owners(url: str) -> dict[int, str]:
    nc = await nats.connect(url, max_reconnect_attempts=0)
    try:
        kv = await nc.jetstream().key_value("sensord_leases")
        return {p: owner for p, (owner, _) in (await leases_in(kv, PARTITIONS)).items()}
    finally:
        await nc.close()


def owners(url: str) -> dict[int, str]:
    try:
        return asyncio.run(_owners(url))
    except Exception:
        return {}


def wait_balanced(url: str, names: set[str], timeout: float = 60.0) -> None:
    share = PARTITIONS // len(names)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        counts = list(owners(url).values())
        if len(counts) == PARTITIONS and all(counts.count(n) >= share for n in names):
            return
        time.sleep(0.1)
    raise BenchmarkError(f"partitions not spread over {sorted(names)}: {owners(url)}")


async def _preload(url: str, streams: int, per_stream: int) -> None:
    nc = await nats.connect(url)
    js = nc.jetstream()
    await ensure_log(js, LogSettings())
    for k in range(per_stream):
        for s in range(streams):
            await nc.publish(f"sensors.s{s:05d}.value", payload(s, k))
        await nc.flush()
    target = streams * per_stream
    while (await js.stream_info(LogSettings().stream)).state.messages < target:
        await asyncio.sleep(0.05)
    await nc.close()


def run_round(count: int, round_: int, args: argparse.Namespace, folder: Path) -> Round:
    engine = start_engine(subject_mapping(PARTITIONS), mqtt=True)
    names = [f"m{i}" for i in range(count)]
    daemons = {
        n: DaemonProcess(
            member_config(folder / n, engine, n, args.bundle, port := free_port()),
            port,
            folder / n / "daemon.log",
        )
        for n in names
    }
    try:
        for i, daemon in enumerate(daemons.values()):
            daemon.start()
            if args.pin:  # one core each, round robin (the engine floats)
                cores = sorted(os.sched_getaffinity(0))
                for task in Path(f"/proc/{daemon.pid}/task").iterdir():
                    os.sched_setaffinity(int(task.name), {cores[i % len(cores)]})
        wait_balanced(engine.url, set(names))
        readings = args.streams * args.per_stream
        for daemon in daemons.values():
            os.kill(daemon.pid, signal.SIGSTOP)
        try:
            asyncio.run(_preload(engine.url, args.streams, args.per_stream))
        finally:
            engine_pid = engine.process.pid if engine.process else 0
            cpu0 = {n: process_cpu_s(d.pid) for n, d in daemons.items()}
            engine0 = process_cpu_s(engine_pid)
            started = time.monotonic()
            for daemon in daemons.values():
                os.kill(daemon.pid, signal.SIGCONT)
        deadline = started + DRAIN_TIMEOUT_S
        while sum(d.processed() for d in daemons.values()) < readings:
            if time.monotonic() > deadline:
                raise BenchmarkError(f"the members did not step {readings} readings in time")
            time.sleep(POLL_S)
        seconds = time.monotonic() - started
        member_cpu = sum(process_cpu_s(d.pid) - cpu0[n] for n, d in daemons.items())
        engine_cpu = process_cpu_s(engine_pid) - engine0
        load = machine_load(0.5)
        handover = None
        if count >= 2:
            victim = names[0]
            process = daemons[victim].process
            if process is None:
                raise BenchmarkError(f"member {victim} is not running")
            process.kill()
            killed = time.monotonic()
            live = set(names) - {victim}
            while time.monotonic() - killed < 60:
                now = owners(engine.url)
                if len(now) == PARTITIONS and set(now.values()) <= live:
                    handover = time.monotonic() - killed
                    break
                time.sleep(0.05)
        return Round(
            count,
            round_,
            readings,
            seconds,
            readings / seconds,
            member_cpu,
            engine_cpu,
            handover,
            float(load.get("load_1m", float("nan"))),
        )
    finally:
        for daemon in daemons.values():
            if daemon.process is not None and daemon.process.poll() is None:
                daemon.process.kill()
                daemon.process.wait()
        engine.remove()


def summarise(
    rounds: list[Round], counts: Sequence[int], singles: dict[int, Single]
) -> list[dict[str, Any]]:
    one = {r.round: r.rate for r in rounds if r.members == counts[0]}
    rows = []
    for count in counts:
        mine = [r for r in rounds if r.members == count]
        handovers = [r.handover_s for r in mine if r.handover_s is not None]
        rows.append(
            {
                **versus([(r.round, 1e6 * r.member_cpu_s / r.readings) for r in mine], singles),
                "members": count,
                "rounds": len(mine),
                "readings_per_s": round(statistics.median(r.rate for r in mine)),
                "vs_one": round(statistics.median(r.rate / one[r.round] for r in mine), 3),
                "member_cpu_s_per_1000": round(
                    statistics.median(r.member_cpu_per_1000 for r in mine), 4
                ),
                "engine_cpu_s_per_1000": round(
                    statistics.median(r.engine_cpu_per_1000 for r in mine), 4
                ),
                "engine_share": round(statistics.median(r.engine_share for r in mine), 3),
                "handover_s": round(statistics.median(handovers), 2) if handovers else None,
            }
        )
    return rows


def print_table(
    rows: list[dict[str, Any]], args: argparse.Namespace, singles: dict[int, Single]
) -> None:
    print(
        f"\ncluster scaling: {args.streams} streams x {args.per_stream} readings, "
        f"{PARTITIONS} partitions, lease {LEASE_S} s, {args.rounds} rounds, "
        f"{os.cpu_count()} cores{', a core per member' if args.pin else ''}\n"
    )
    print(
        "| members | readings/s | vs 1 | members' CPU s /1k | engine CPU s /1k "
        "| engine share | hand-over s |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        handover = "-" if r["handover_s"] is None else r["handover_s"]
        print(
            f"| {r['members']} | {r['readings_per_s']:,} | {r['vs_one']:.2f} "
            f"| {r['member_cpu_s_per_1000']:.4f} | {r['engine_cpu_s_per_1000']:.4f} "
            f"| {r['engine_share']:.0%} | {handover} |"
        )
    print_versus(rows, singles)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--members", default="1,2,4")
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--per-stream", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--bundle", type=Path, default=None, help="default: train one")
    parser.add_argument(
        "--pin",
        action="store_true",
        help="each member on one core of its own (round robin): scaling per core, as a "
        "machine with a core per member would see it",
    )
    parser.add_argument(
        "--no-mosquitto",
        dest="mosquitto",
        action="store_false",
        help="measure the single daemon in-process only (not draining Mosquitto too)",
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    counts = [int(c) for c in args.members.split(",")]
    folder = Path(tempfile.mkdtemp(prefix="sensord-cluster-bench-"))
    try:
        if args.bundle is None:
            args.bundle = _train(folder)
        rounds, singles = [], {}
        for round_ in range(args.rounds):
            for count in counts:
                r = run_round(count, round_, args, folder / f"r{round_}-n{count}")
                rounds.append(r)
                print(f"round {round_} members {count}: {r.rate:,.0f}/s", file=sys.stderr)
            singles[round_] = single_daemon(
                round_,
                args.bundle,
                args.streams,
                args.per_stream,
                mosquitto=args.mosquitto,
                folder=folder,
            )
        rows = summarise(rounds, counts, singles)
        print_table(rows, args, singles)
        if args.json is not None:
            result = {
                "machine": machine(),
                "settings": {
                    "streams": args.streams,
                    "per_stream": args.per_stream,
                    "rounds": args.rounds,
                    "partitions": PARTITIONS,
                    "lease_s": LEASE_S,
                    "pinned": args.pin,
                    "mosquitto": args.mosquitto,
                },
                "rows": rows,
                "single_daemon": [asdict(s) for s in singles.values()],
                "rounds": [
                    {
                        **asdict(r),
                        "member_cpu_s_per_1000": r.member_cpu_per_1000,
                        "engine_cpu_s_per_1000": r.engine_cpu_per_1000,
                        "engine_share": r.engine_share,
                    }
                    for r in rounds
                ],
            }
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(result, indent=2))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


def _train(folder: Path) -> Path:
    from sensord.offline.synthetic import generate, write_csv
    from sensord.training.options import TrainOptions
    from sensord.training.train import train_bundle

    write_csv(folder / "history.csv", generate(1200, seed=1))
    out = folder / "bundle"
    train_bundle(folder / "history.csv", out, TrainOptions(name="synthetic"))
    return out


if __name__ == "__main__":
    sys.exit(main())
