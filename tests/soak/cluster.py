"""Cluster runs: numbered readings with spikes at known points stream through a real
nats-server (its MQTT gateway and partition mapping) to several ``sensord run`` members while
one is killed -9, one joins, or the engine restarts. Then every (stream, seq) must have been
stepped, no member still alive must have stepped one twice, the final state of every stream
(saved to the engine when the members stop) must be what one daemon that never failed makes
of the feed, and every expected alert must have arrived once.

    python -m tests.soak.cluster --bundle BUNDLE_DIR [--members 3] [--streams 1000]
        [--steps 200] [--rate 5000] [--kill-at 0.5] [--join-at F] [--restart-at F] [--json OUT]

The suite runs it (tests/cluster/test_failover.py); the closing note's figures come from it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nats
import numpy as np
import orjson

from sensord.cli.engine import LocalEngine, start_engine
from sensord.cluster.feed import LogSettings
from sensord.cluster.handover import PartitionStates, restore, unpack
from sensord.cluster.leases import leases_in
from sensord.config import load_settings
from sensord.core.bundle import Bundle, load_bundle
from sensord.core.engine import Engine
from sensord.core.pipeline import Pipeline
from sensord.wire.partition import subject_mapping
from tests.soak.harness import (
    STEP,
    T0,
    AlertCollector,
    Feed,
    Publisher,
    TracedDaemon,
    wait_until,
    workdir,
)

NAME = "sensord"
# The engine's own loss at a restart: readings its gateway acknowledged at most this long
# before it was told to stop (or while it stopped) that its log had not written yet.
RESTART_WINDOW_S = 2.0
IDLE_S = 0.5  # a member whose trace has not grown for this long has scored all it got


@dataclass
class ClusterScenario:
    members: int = 3
    streams: int = 1000
    steps: int = 200
    rate: float = 5000.0  # readings per second, all streams together
    kill_at: float | None = 0.5  # share of the steps published when a member is killed -9
    join_at: float | None = None  # ... when one more member starts
    restart_at: float | None = None  # ... when the engine restarts (down ``restart_down_s``)
    restart_down_s: float = 3.0
    partitions: int = 12
    lease_s: float = 3.0
    checkpoint_s: float = 1.0
    # Hold the sensors back at the kill's step until the member to be killed has scored
    # all it got (no alert event of its in flight: one published whose PUBACK, or whose
    # ledger write, had not come back would come again from the member that takes its
    # partitions over; at least once, as QoS 1 is). False: kill it while it works, which
    # measures how often that happens. Either way the take-over replays the readings since
    # the partitions' last saved states, alerts among them, which the ledger must withhold.
    pause_for_kill: bool = True
    settle_s: float = 120.0


@dataclass
class ClusterOutcome:
    published: int = 0
    acknowledged_by_engine: bool = False
    stepped_total: int = 0
    stepped_unique: int = 0
    missing: int = 0
    missing_examples: list[str] = field(default_factory=list)
    # Readings the engine acknowledged to the sensor but its readings log never held: an
    # engine stopped while sensors publish acknowledges through its MQTT gateway what the
    # log, which takes the mapped subjects on by itself, may not have written yet.
    # Counted after an engine restart only; the members must lose nothing else.
    lost_by_engine: int = 0
    lost_by_engine_far_from_restart: int = 0
    lost_far_examples: list[str] = field(default_factory=list)
    stepped_twice_by_one_member: int = 0
    stepped_again_after_kill: int = 0  # the dead member's unsaved steps, redone by others
    alerts_expected: int = 0
    alerts_received: int = 0
    alerts_expected_received: int = 0
    alerts_unexpected: int = 0
    alert_repeats: int = 0
    alerts_missing_examples: list[str] = field(default_factory=list)
    repeats_withheld: int = 0  # alert events the ledger kept from going out twice
    handover_s: float | None = None  # kill -> every partition owned by a live member
    first_owned_s: float | None = None  # start -> every partition owned
    partitions_at_end: dict[str, int] = field(default_factory=dict)
    partitions_moved_to_joiner: int = 0
    state_streams: int = 0
    state_max_prediction_diff: float = float("nan")
    exits: list[int] = field(default_factory=list)
    seconds: float = 0.0
    # With the engine down longer than a lease, every member loses its leases and takes
    # its partitions back from their saved states: it steps the readings since once more.
    engine_restarted: bool = False

    def problems(self) -> list[str]:
        out = []
        if not self.acknowledged_by_engine:
            out.append("the engine did not acknowledge every reading")
        if self.missing != self.lost_by_engine:
            out.append(
                f"{self.missing} readings never stepped ({self.lost_by_engine} of them never "
                f"in the engine's log): {self.missing_examples}"
            )
        if self.lost_by_engine_far_from_restart:
            out.append(
                f"{self.lost_by_engine_far_from_restart} readings the engine acknowledged "
                "away from its restart missing from its log: "
                f"{self.lost_far_examples}"
            )
        if self.stepped_twice_by_one_member and not self.engine_restarted:
            out.append(f"{self.stepped_twice_by_one_member} readings stepped twice by a member")
        if self.alerts_expected == 0:
            out.append("no alert was expected: the feed has no spike")
        if self.alerts_expected_received != self.alerts_expected:
            out.append(
                f"{self.alerts_expected - self.alerts_expected_received} expected alerts "
                "never arrived"
            )
        if self.alert_repeats:
            out.append(f"{self.alert_repeats} alerts arrived twice")
        if self.alerts_unexpected:
            out.append(f"{self.alerts_unexpected} alerts a clean run does not raise")
        if self.state_streams != 0 and not self.state_max_prediction_diff < 1e-4:
            out.append(f"final state differs: {self.state_max_prediction_diff}")
        if any(self.exits):
            out.append(f"exit codes {self.exits}")
        return out


def write_member_config(
    folder: Path, engine: LocalEngine, scenario: ClusterScenario, member: str, bundle: Bundle
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "sensord.toml"
    config.write_text(
        f'[mqtt]\nhost = "127.0.0.1"\nport = {engine.mqtt_port}\nprotocol = "3.1.1"\n'
        'client_id = "cluster-test"\nreconnect_min_s = 0.2\nreconnect_max_s = 1\nkeepalive = 5\n'
        f'[state]\ndir = "{folder / "state"}"\n'
        "[limits]\nlog_interval_s = 0\n"
        "[nodata]\nenabled = false\n"
        f'[cluster]\nurl = "{engine.url}"\nmember = "{member}"\n'
        f"partitions = {scenario.partitions}\n"
        f"lease_s = {scenario.lease_s}\ncheckpoint_s = {scenario.checkpoint_s}\n"
        f'[[routes]]\ntopic = "sensors/+/value"\nbundle = "{bundle.path}"\n'
    )
    return config


def idle(daemon: TracedDaemon) -> Callable[[], bool]:
    """True once the daemon's trace has not grown for ``IDLE_S``."""
    seen = {"size": -1, "since": time.monotonic()}

    def check() -> bool:
        size = daemon.trace.stat().st_size if daemon.trace.exists() else 0
        now = time.monotonic()
        if size != seen["size"]:
            seen["size"], seen["since"] = size, now
        return now - seen["since"] >= IDLE_S

    return check


def leases(url: str, partitions: int) -> dict[int, str]:
    """partition -> owner, as the engine's lease bucket says now."""

    async def look() -> dict[int, str]:
        nc = await nats.connect(url, max_reconnect_attempts=0, connect_timeout=2)
        try:
            kv = await nc.jetstream().key_value(f"{NAME}_leases")
            return {p: owner for p, (owner, _) in (await leases_in(kv, partitions)).items()}
        finally:
            await nc.close()

    try:
        return asyncio.run(look())
    except Exception:
        return {}


def logged(url: str, feed: Feed) -> set[tuple[str, int]]:
    """Every (stream, step) the engine's readings log holds."""

    async def read() -> set[tuple[str, int]]:
        nc = await nats.connect(url)
        try:
            js = nc.jetstream()
            total = (await js.stream_info(LogSettings().stream)).state.messages
            sub = await js.subscribe("part.>", ordered_consumer=True)
            out = set()
            for _ in range(total):
                msg = await sub.next_msg(timeout=10)
                stream = msg.subject.split(".")[3]
                step = round((orjson.loads(msg.data)["ts"] - T0) / STEP)
                out.add((stream, step))
            return out
        finally:
            await nc.close()

    return asyncio.run(read())


def saved_states(url: str, partitions: int) -> dict[int, bytes]:
    async def load() -> dict[int, bytes]:
        nc = await nats.connect(url)
        try:
            states = PartitionStates(nc.jetstream(), NAME)
            await states.open()
            out = {}
            for p in range(partitions):
                data = await states.load(p)
                if data is not None:
                    out[p] = data
            return out
        finally:
            await nc.close()

    return asyncio.run(load())


def all_owned(url: str, scenario: ClusterScenario, by: set[str]) -> bool:
    owners = leases(url, scenario.partitions)
    return len(owners) == scenario.partitions and set(owners.values()) <= by


def run(scenario: ClusterScenario, bundle: Bundle, keep: Path | None = None) -> ClusterOutcome:
    started = time.monotonic()
    kill_step = int(scenario.kill_at * scenario.steps) if scenario.kill_at is not None else -1
    feed = Feed(scenario.streams, scenario.steps)
    outcome = ClusterOutcome()
    with workdir() as folder:
        engine = start_engine(subject_mapping(scenario.partitions), mqtt=True)
        assert engine.mqtt_port is not None
        names = [f"m{i}" for i in range(scenario.members + (scenario.join_at is not None))]
        daemons = {
            name: TracedDaemon(
                write_member_config(folder / name, engine, scenario, name, bundle),
                folder / name / "trace.txt",
            )
            for name in names
        }
        settings = load_settings(daemons[names[0]].config)
        collector = AlertCollector("127.0.0.1", engine.mqtt_port, v5=False)
        publisher = Publisher("127.0.0.1", engine.mqtt_port, feed, scenario.rate, v5=False)
        live = set(names[: scenario.members])
        dead: str | None = None
        joiner = names[-1] if scenario.join_at is not None else None
        try:
            assert wait_until(collector.subscribed.is_set, 15), "alert subscriber not subscribed"
            for name in sorted(live):
                daemons[name].start()
            if wait_until(lambda: all_owned(engine.url, scenario, live), 60, 0.2):
                outcome.first_owned_s = round(time.monotonic() - started, 2)
            if scenario.kill_at is not None and scenario.pause_for_kill:
                publisher.pause_at = kill_step
            publisher.start()
            if scenario.kill_at is not None:
                wait_until(lambda: publisher.step >= kill_step, scenario.settle_s, 0.01)
                dead = max(
                    live,
                    key=lambda n: list(leases(engine.url, scenario.partitions).values()).count(n),
                )
                if scenario.pause_for_kill:
                    assert wait_until(publisher.paused.is_set, scenario.settle_s)
                    assert wait_until(idle(daemons[dead]), scenario.settle_s, IDLE_S / 5)
                daemons[dead].kill9()
                killed_at = time.monotonic()
                publisher.resume.set()
                live.discard(dead)
                if wait_until(lambda: all_owned(engine.url, scenario, live), 60, 0.05):
                    outcome.handover_s = round(time.monotonic() - killed_at, 2)
            if joiner is not None and scenario.join_at is not None:
                join_step = int(scenario.join_at * scenario.steps)
                wait_until(lambda: publisher.step >= join_step, scenario.settle_s, 0.01)
                daemons[joiner].start()
                live.add(joiner)
                wait_until(
                    lambda: joiner in leases(engine.url, scenario.partitions).values(), 60, 0.1
                )
            if scenario.restart_at is not None:
                restart_step = int(scenario.restart_at * scenario.steps)
                wait_until(lambda: publisher.step >= restart_step, scenario.settle_s, 0.01)
                stop_began = time.monotonic()
                engine.stop()
                stop_ended = time.monotonic()
                time.sleep(scenario.restart_down_s)  # the outage itself, not a wait for a result
                engine.start()
                outcome.engine_restarted = True
            wait_until(publisher.all_acknowledged, scenario.settle_s)
            outcome.acknowledged_by_engine = publisher.all_acknowledged()
            expected_steps = {
                (feed.name(s), k) for s in range(feed.streams) for k in range(feed.steps)
            }

            in_log = expected_steps
            if outcome.engine_restarted:  # what the engine's log holds, after its restart
                in_log = logged(engine.url, feed)
                lost = expected_steps - in_log
                outcome.lost_by_engine = len(lost)
                acknowledged_at = publisher.acknowledged_at()
                far = sorted(
                    reading
                    for reading in lost
                    if not stop_began - RESTART_WINDOW_S
                    <= acknowledged_at.get(reading, stop_began)
                    <= stop_ended
                )
                outcome.lost_by_engine_far_from_restart = len(far)
                outcome.lost_far_examples = [
                    f"{name}#{k} acknowledged {acknowledged_at[(name, k)] - stop_began:+.2f} s "
                    "from the stop"
                    for name, k in far[:5]
                ]

            def stepped_everything() -> bool:
                done: set[tuple[str, int]] = set()
                for name in live:
                    done.update(daemons[name].stepped())
                if dead is not None:
                    done.update(daemons[dead].stepped())
                return in_log <= done

            wait_until(stepped_everything, scenario.settle_s, 0.5)
            reference, expected_alerts = feed.reference(settings, bundle, expected_steps - in_log)
            wait_until(lambda: expected_alerts <= set(collector.raised_ids()), 30, 0.2)
            time.sleep(1.0)  # let repeats, if any, arrive too
            owners = leases(engine.url, scenario.partitions)
            outcome.partitions_at_end = dict(Counter(owners.values()))
            if joiner is not None:
                outcome.partitions_moved_to_joiner = outcome.partitions_at_end.get(joiner, 0)
            outcome.exits = [daemons[name].stop() for name in sorted(live)]
            outcome.repeats_withheld = sum(
                int(str(e.get("alerts_repeats", 0)))
                for name in live
                for e in daemons[name].events()
                if e.get("event") == "stopped"
            )
            states = saved_states(engine.url, scenario.partitions)
        finally:
            for daemon in daemons.values():
                daemon.close()
            publisher.close()
            collector.close()
            engine.stop()
            if keep is not None:  # its logs, traces and the engine's store, to read
                shutil.copytree(folder, keep, dirs_exist_ok=True)
                shutil.copytree(engine.folder, keep / "engine", dirs_exist_ok=True)
        outcome.published = publisher.sent
        survivors = [Counter(daemons[name].stepped()) for name in sorted(live)]
        every = Counter[tuple[str, int]]()
        for counts in survivors:
            every.update(counts)
        dead_steps = Counter(daemons[dead].stepped()) if dead is not None else Counter()
        stepped_any = set(every) | set(dead_steps)
        missing = sorted(expected_steps - stepped_any)
        outcome.stepped_total = sum(every.values()) + sum(dead_steps.values())
        outcome.stepped_unique = len(stepped_any)
        outcome.missing = len(missing)
        outcome.missing_examples = [f"{s}#{k}" for s, k in missing[:10]]
        outcome.stepped_twice_by_one_member = sum(
            1 for counts in [*survivors, dead_steps] for n in counts.values() if n > 1
        )
        outcome.stepped_again_after_kill = len(set(dead_steps) & set(every))
        received = collector.raised_ids()
        outcome.alerts_expected = len(expected_alerts)
        outcome.alerts_received = len(received)
        outcome.alerts_expected_received = len(expected_alerts & set(received))
        outcome.alerts_unexpected = len(set(received) - expected_alerts)
        outcome.alert_repeats = len(received) - len(set(received))
        outcome.alerts_missing_examples = sorted(expected_alerts - set(received))[:10]
        diffs = _state_diffs(states, reference, feed)
        outcome.state_streams = len(diffs)
        if len(diffs):
            outcome.state_max_prediction_diff = float(np.max(diffs))
        engine.remove()
    outcome.seconds = round(time.monotonic() - started, 1)
    return outcome


def _state_diffs(states: dict[int, bytes], reference: Pipeline, feed: Feed) -> np.ndarray:
    """Per stream, the largest difference between the final prediction the members saved
    to the engine and a clean single run's (scaled units); NaN for a stream no state has."""
    whole = Pipeline(Engine(reference.engine.bundle), reference.settings)
    for partition, data in states.items():
        (name,) = unpack(data, f"partition {partition}").parts
        restore([(name, whole)], data, f"partition {partition}")
    out = []
    for s in range(feed.streams):
        stream = feed.name(s)
        slot = whole.table.slot_of.get(stream)
        if slot is None:
            out.append(float("nan"))
            continue
        a = whole.table["prediction"][slot]
        b = reference.table["prediction"][reference.table.slot_of[stream]]
        out.append(float(np.max(np.abs(a - b))))
    return np.asarray(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--members", type=int, default=3)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--rate", type=float, default=5000.0)
    parser.add_argument("--kill-at", type=float, default=0.5)
    parser.add_argument("--no-kill", action="store_true")
    parser.add_argument("--join-at", type=float, default=None)
    parser.add_argument("--restart-at", type=float, default=None)
    parser.add_argument("--no-pause", action="store_true", help="kill it while it works")
    parser.add_argument("--checkpoint-s", type=float, default=1.0)
    parser.add_argument("--keep", type=Path, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    scenario = ClusterScenario(
        members=args.members,
        streams=args.streams,
        steps=args.steps,
        rate=args.rate,
        kill_at=None if args.no_kill else args.kill_at,
        join_at=args.join_at,
        restart_at=args.restart_at,
        pause_for_kill=not args.no_pause,
        checkpoint_s=args.checkpoint_s,
    )
    outcome = run(scenario, load_bundle(args.bundle), keep=args.keep)
    result = {
        "scenario": asdict(scenario),
        "outcome": asdict(outcome),
        "problems": outcome.problems(),
    }
    print(json.dumps(result, indent=2))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2))
    return 1 if outcome.problems() else 0


if __name__ == "__main__":
    sys.exit(main())
