"""Where a cluster member's CPU goes while it drains a backlog: cProfile in each of its
threads (the scoring loop's and the engine thread's), the top costs per reading.

A nats-server with the partition mapping and its MQTT gateway is started, S streams x R
readings are published natively into the readings log, then one member (the daemon's own
parts, in this process) claims the 12 partitions and drains them; each thread has a
cProfile of its own from its start to the last reading acknowledged. Reported per thread:
the functions with the most own time, their calls per reading (noise-free) and own
microseconds per reading (cProfile's overhead included: compare calls, and times only
between runs of this script).

    python benchmarks/clusterprofile.py --bundle DIR [--streams 1000] [--per-stream 100]
        [--top 25] [--out PREFIX]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.cluster import PARTITIONS, _preload
from benchmarks.clusterdaemon import inprocess_us
from sensord import logs
from sensord.cli.engine import LocalEngine, start_engine
from sensord.config import Settings
from sensord.daemon.loop import Daemon
from sensord.wire.partition import subject_mapping

DRAIN_TIMEOUT_S = 300.0


def member_settings(engine: LocalEngine, bundle: Path, state: Path) -> Settings:
    return Settings(
        mqtt={"host": "127.0.0.1", "port": engine.mqtt_port, "protocol": "3.1.1"},
        routes=[{"topic": "sensors/+/value", "bundle": str(bundle)}],
        state={"dir": str(state)},
        nodata={"enabled": False},
        cluster={"url": engine.url, "member": "m0", "partitions": PARTITIONS},
    )


class ThreadProfiles:
    """A cProfile per thread started after ``install``, each enabled at its first event."""

    def __init__(self, cpu: bool = False) -> None:
        self.cpu = cpu  # time each thread's CPU (slower to profile) instead of wall time
        self.profiles: dict[str, cProfile.Profile] = {}
        self._lock = threading.Lock()

    def install(self) -> None:
        threading.setprofile(self._first_event)

    def _first_event(self, *_: Any) -> None:
        profile = cProfile.Profile(time.thread_time) if self.cpu else cProfile.Profile()
        with self._lock:
            self.profiles[threading.current_thread().name] = profile
        profile.enable()  # replaces this hook in this thread

    def stats(self) -> dict[str, pstats.Stats]:
        """Once the threads ended (a profile is read safely only then)."""
        threading.setprofile(None)
        return {name: pstats.Stats(profile) for name, profile in self.profiles.items()}


class Breakdown:
    """The loop thread's CPU split by the calls it makes each turn (wrapped: the time of
    each call, its thread's CPU clock before and after)."""

    def __init__(self, daemon: Daemon) -> None:
        self.seconds: dict[str, float] = {}
        source = daemon.source
        self._wrap("stages.process (scoring, acks included)", daemon.stages, "process")
        self._wrap("source.ack", source, "ack")
        self._wrap("source: the member's readings taken", source, "_between_batches")
        self._wrap("mqtt.poll (paho reads: PUBACKs)", daemon.mqtt, "poll")
        self._wrap("mqtt.write", daemon.mqtt, "write")
        self._wrap("states.flush", daemon.states, "flush")

    def _wrap(self, name: str, owner: object, attribute: str) -> None:
        inner = getattr(owner, attribute)
        self.seconds[name] = 0.0
        seconds = self.seconds

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.thread_time()
            try:
                return inner(*args, **kwargs)
            finally:
                seconds[name] += time.thread_time() - started

        setattr(owner, attribute, timed)


def thread_cpu_s(native_id: int, kind: str = "all") -> float:
    """A thread's CPU seconds so far: user + system ("all"), or "user" or "system" alone."""
    fields = Path(f"/proc/self/task/{native_id}/stat").read_text().rsplit(")", 1)[1].split()
    user, system = int(fields[11]), int(fields[12])
    ticks = {"all": user + system, "user": user, "system": system}[kind]
    return ticks / os.sysconf("SC_CLK_TCK")


def drain(
    engine: LocalEngine, bundle: Path, readings: int, folder: Path, profiles: ThreadProfiles | None
) -> dict[str, float]:
    """One member drains ``readings``; its threads' profiles include its start and stop
    (claiming and letting go of the partitions: small beside the drain). Returned: each
    thread's CPU seconds from the first reading acknowledged to the last."""
    daemon = Daemon(member_settings(engine, bundle, folder))
    breakdown = Breakdown(daemon)
    if profiles is not None:
        profiles.install()
    loop = threading.Thread(target=daemon.run, name="scoring-loop")
    loop.start()
    acked = daemon.source.link.counters
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while acked.acked == 0 and time.monotonic() < deadline:
        time.sleep(0.001)
    threads = {t.name: t.native_id for t in threading.enumerate() if t.native_id is not None}
    first = {name: thread_cpu_s(tid) for name, tid in threads.items()}
    first_system = {name: thread_cpu_s(tid, "system") for name, tid in threads.items()}
    parts = dict(breakdown.seconds)
    batches, waves = daemon.counters.batches, daemon.timings.wave_size.count
    counted = acked.acked
    while acked.acked < readings and time.monotonic() < deadline:
        time.sleep(0.01)
    cpu = {name: thread_cpu_s(tid) - first[name] for name, tid in threads.items()}
    cpu |= {
        f"  {name}: system": thread_cpu_s(tid, "system") - first_system[name]
        for name, tid in threads.items()
    }
    parts = {f"  {name}": s - parts[name] for name, s in breakdown.seconds.items()}
    counted = acked.acked - counted
    batches = daemon.counters.batches - batches
    waves = daemon.timings.wave_size.count - waves
    print(
        f"acknowledged {acked.acked} of {readings}; readings per batch "
        f"{counted / max(batches, 1):.1f}, per wave {counted / max(waves, 1):.1f}"
    )
    stats = daemon.stats()
    print(
        "alerts raised",
        stats.get("raised"),
        "publishes",
        {k: v for k, v in stats.items() if "publish" in k or "ledger" in k},
    )
    daemon.request_stop()
    loop.join(60)
    return {name: 1e6 * s / counted for name, s in {**cpu, **parts}.items() if s > 0}


def report(stats: pstats.Stats, name: str, readings: int, top: int) -> None:
    rows = []
    total = 0.0
    for func, figures in stats.get_stats_profile().func_profiles.items():
        total += figures.tottime
        calls = int(figures.ncalls.split("/")[0])  # "total/primitive" when recursive
        where = f"{Path(figures.file_name).name}:{figures.line_number}({func})"
        rows.append((figures.tottime, calls, figures.cumtime, where))
    rows.sort(reverse=True)
    calls = sum(row[1] for row in rows)
    print(
        f"\n### {name}: {1e6 * total / readings:.1f} us own time and "
        f"{calls / readings:.1f} calls per reading in all\n"
    )
    print("| function | calls/reading | own us/reading | cum us/reading |")
    print("|---|---|---|---|")
    for tottime, calls, cumtime, where in rows[:top]:
        print(
            f"| {where} | {calls / readings:.3f} | {1e6 * tottime / readings:.2f} "
            f"| {1e6 * cumtime / readings:.2f} |"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--per-stream", type=int, default=100)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--out", type=Path, default=None, help="write each thread's .prof")
    parser.add_argument("--no-profile", action="store_true", help="each thread's CPU alone")
    parser.add_argument("--cpu", action="store_true", help="profile thread CPU, not wall time")
    args = parser.parse_args(argv)
    logs.configure("warning", "console")
    readings = args.streams * args.per_stream
    engine = start_engine(subject_mapping(PARTITIONS), mqtt=True)
    try:
        asyncio.run(_preload(engine.url, args.streams, args.per_stream))
        profiles = None if args.no_profile else ThreadProfiles(args.cpu)
        with tempfile.TemporaryDirectory() as folder:
            cpu = drain(engine, args.bundle, readings, Path(folder), profiles)
    finally:
        engine.remove()
    print("\n| thread | CPU us per reading |\n|---|---|")
    for name, us in cpu.items():
        print(f"| {name} | {us:.2f} |")
    print(f"| all | {sum(us for name, us in cpu.items() if not name.startswith(' ')):.2f} |")
    if profiles is None:
        inprocess = inprocess_us(args.bundle, args.streams, args.per_stream)
        print(f"\na single daemon's loop in-process on the same readings: {inprocess:.2f} us")
        return 0
    for name, stats in profiles.stats().items():
        report(stats, name, readings, args.top)
        if args.out is not None:
            stats.dump_stats(f"{args.out}-{name}.prof")
    return 0


if __name__ == "__main__":
    sys.exit(main())
