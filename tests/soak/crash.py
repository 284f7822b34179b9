"""Crash runs: numbered readings stream in while the daemon is killed -9, the broker is
killed -9 (persistence on) and the network to the broker is cut; then every (stream, seq)
must have been stepped at least once, every expected alert must have arrived, and the final
stream state must match a daemon that never crashed.

    python -m tests.soak.crash --bundle BUNDLE_DIR [--daemon-kills 20] [--broker-kills 3]
        [--outage-s 60] [--streams 20] [--steps 1500] [--rate 400] [--json OUT]

Without --bundle a bundle is trained first (needs the train extra). The suite runs short
versions of the same scenario (tests/integration/test_crash.py).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from sensord.config import load_settings
from sensord.core.bundle import Bundle, load_bundle
from sensord.core.engine import Engine
from sensord.core.pipeline import Pipeline
from sensord.durable.snapshots import restore
from tests.soak.harness import (
    AlertCollector,
    Feed,
    Link,
    Mosquitto,
    Publisher,
    TracedDaemon,
    wait_until,
    workdir,
    write_config,
)

BROKER_WINDOW_S = 2.0


@dataclass
class Scenario:
    streams: int = 10
    steps: int = 400
    rate: float = 400.0  # readings per second, all streams together
    daemon_kills: int = 3
    broker_kills: int = 0
    outage_s: float = 0.0
    broker_graceful: bool = False  # restart the broker with SIGTERM instead of kill -9
    snapshot_interval_s: float = 1.0
    seed: int = 1
    settle_s: float = 60.0  # after publishing, how long the daemon may take to catch up


@dataclass
class Outcome:
    published: int = 0
    acknowledged_by_broker: bool = False
    stepped_total: int = 0
    stepped_unique: int = 0
    missing: int = 0
    missing_examples: list[str] = field(default_factory=list)
    # Missing readings published within BROKER_WINDOW_S of a broker kill -9: Mosquitto's
    # persistence is a periodic save, and what it accepted since the last one is gone.
    missing_near_broker_kill: int = 0
    stepped_twice: int = 0  # (stream, seq) stepped more than once, for either reason below
    journal_replayed: int = 0  # steps of readings replayed from the journal at a start
    stepped_again_live: int = 0  # steps beyond the first that were not journal replays
    alerts_expected: int = 0
    alerts_received: int = 0  # raised alerts received, repeats included
    alerts_expected_received: int = 0
    alerts_unexpected: int = 0
    alert_repeats: int = 0
    daemon_kills: int = 0
    daemon_starts: int = 0
    broker_kills: int = 0
    broker_restarts: int = 0
    outage_s: float = 0.0
    final_exit: int | None = None
    snapshots_set_aside: int = 0
    state_max_prediction_diff: float = float("nan")
    state_median_prediction_diff: float = float("nan")
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return (
            self.missing == self.missing_near_broker_kill
            and self.alerts_expected_received == self.alerts_expected
            and self.final_exit == 0
            and self.snapshots_set_aside == 0
        )


def run(scenario: Scenario, bundle: Bundle, log: bool = False, keep: Path | None = None) -> Outcome:
    """One crash run; ``keep``: copy its folder (logs, trace, broker data) there."""
    started = time.monotonic()
    rng = random.Random(scenario.seed)
    feed = Feed(scenario.streams, scenario.steps)
    with workdir() as folder:
        broker = Mosquitto(folder / "broker")
        broker.start()
        link = Link(broker.host, broker.port) if scenario.outage_s else None
        config = write_config(
            folder, link.port if link else broker.port, bundle, scenario.snapshot_interval_s
        )
        settings = load_settings(config)
        daemon = TracedDaemon(config, folder / "trace.txt")
        collector = AlertCollector(broker.host, broker.port)
        publisher = Publisher(broker.host, broker.port, feed, scenario.rate)
        outcome = Outcome()
        try:
            daemon.start()
            wait_until(lambda: any(e.get("event") == "ready" for e in daemon.events()), 20)
            publisher.start()
            broker_kill_steps = _chaos(
                scenario,
                rng=rng,
                daemon=daemon,
                broker=broker,
                link=link,
                publisher=publisher,
                log=log,
            )
            wait_until(publisher.all_acknowledged, scenario.settle_s)
            outcome.acknowledged_by_broker = publisher.all_acknowledged()
            expected_steps = {
                (feed.name(s), k) for s in range(feed.streams) for k in range(feed.steps)
            }
            settled = _Settled(daemon, expected_steps, lossy=broker.kills > 0)
            wait_until(settled, scenario.settle_s, 0.5)
            # Alerts are expected of the readings delivered: a broker killed -9 loses what
            # it accepted since its last save (counted below, as missing near its kill).
            lost = expected_steps - set(daemon.stepped()) if broker.kills else set()
            reference, expected_alerts = feed.reference(settings, bundle, lost)
            wait_until(lambda: expected_alerts <= set(collector.raised_ids()), 15, 0.2)
            time.sleep(1.0)  # let repeats, if any, arrive too
            outcome.final_exit = daemon.stop()
        finally:
            if daemon.process is not None and daemon.process.poll() is None:
                daemon.kill9()
            publisher.close()
            collector.close()
            if link is not None:
                link.cut()
            broker.stop()
        stepped = daemon.stepped()
        counts = Counter(stepped)
        missing = sorted(expected_steps - set(counts))
        received = collector.raised_ids()
        outcome.published = publisher.sent
        outcome.stepped_total = len(stepped)
        outcome.stepped_unique = len(counts)
        outcome.missing = len(missing)
        outcome.missing_examples = [f"{s}#{k}" for s, k in missing[:10]]
        window = BROKER_WINDOW_S * scenario.rate / scenario.streams
        outcome.missing_near_broker_kill = sum(
            1 for _, k in missing if any(abs(k - at) <= window for at in broker_kill_steps)
        )
        outcome.stepped_twice = sum(1 for n in counts.values() if n > 1)
        outcome.journal_replayed = sum(
            int(str(e.get("stepped", 0)))
            for e in daemon.events(every_start=True)
            if e.get("event") == "journal replayed"
        )
        outcome.stepped_again_live = len(stepped) - len(counts) - outcome.journal_replayed
        outcome.alerts_expected = len(expected_alerts)
        outcome.alerts_received = len(received)
        outcome.alerts_expected_received = len(expected_alerts & set(received))
        outcome.alerts_unexpected = len(set(received) - expected_alerts)
        outcome.alert_repeats = len(received) - len(set(received))
        outcome.daemon_kills, outcome.daemon_starts = daemon.kills, daemon.starts
        outcome.broker_kills = broker.kills
        outcome.broker_restarts = broker.starts - 1
        outcome.outage_s = scenario.outage_s
        outcome.snapshots_set_aside = sum(
            1
            for e in daemon.events(every_start=True)
            if e.get("event") == "snapshot set aside; streams start afresh"
        )
        diffs = _state_diffs(folder / "state", settings, bundle, reference, feed)
        if diffs.size:
            outcome.state_max_prediction_diff = float(diffs.max())
            outcome.state_median_prediction_diff = float(np.median(diffs))
        if keep is not None:
            shutil.copytree(folder, keep, dirs_exist_ok=True)
    outcome.seconds = round(time.monotonic() - started, 1)
    return outcome


class _Settled:
    """Every expected reading stepped; or, after a broker was killed -9 (which loses what
    it accepted since its last save), nothing more stepped for ``QUIET_S``."""

    QUIET_S = 5.0

    def __init__(self, daemon: TracedDaemon, expected: set[tuple[str, int]], lossy: bool) -> None:
        self.daemon, self.expected, self.lossy = daemon, expected, lossy
        self._count, self._since = -1, time.monotonic()

    def __call__(self) -> bool:
        stepped = self.daemon.stepped()
        if self.expected <= set(stepped):
            return True
        if len(stepped) != self._count:
            self._count, self._since = len(stepped), time.monotonic()
        return self.lossy and time.monotonic() - self._since >= self.QUIET_S


def _chaos(
    scenario: Scenario,
    *,
    rng: random.Random,
    daemon: TracedDaemon,
    broker: Mosquitto,
    link: Link | None,
    publisher: Publisher,
    log: bool,
) -> list[float]:
    """Kill things at random moments while the feed is being published; return the feed
    steps being published when the broker was killed -9."""
    duration = scenario.streams * scenario.steps / scenario.rate
    events = [(rng.uniform(0.05, 0.9) * duration, "daemon") for _ in range(scenario.daemon_kills)]
    events += [(rng.uniform(0.1, 0.8) * duration, "broker") for _ in range(scenario.broker_kills)]
    if link is not None:
        events.append((0.3 * duration, "outage"))
    start = time.monotonic()
    broker_kills: list[float] = []
    for at, what in sorted(events):
        time.sleep(max(0.0, start + at - time.monotonic()))
        if log:
            print(f"  {time.monotonic() - start:6.1f}s  {what}", flush=True)
        if what == "daemon":
            daemon.kill9()
            time.sleep(rng.uniform(0.1, 1.0))
            daemon.start()
        elif what == "broker":
            if scenario.broker_graceful:
                broker.stop()
            else:
                broker_kills.append((time.monotonic() - start) * scenario.rate / scenario.streams)
                broker.kill9()
            time.sleep(rng.uniform(0.2, 1.0))
            broker.start()
        elif link is not None:
            link.cut()
            time.sleep(scenario.outage_s)
            link.restore()
    publisher.done.wait(timeout=duration * 3 + scenario.outage_s + 30)
    return broker_kills


def _state_diffs(
    state: Path, settings: object, bundle: Bundle, reference: Pipeline, feed: Feed
) -> np.ndarray:
    """Per stream, the largest difference between the crashed run's final prediction and
    the clean run's (scaled units)."""
    snapshots = list(state.glob("*.npz"))
    if not snapshots:
        return np.array([])
    crashed = Pipeline(Engine(bundle), reference.settings)
    restore(snapshots[0], crashed)
    out = []
    for s in range(feed.streams):
        name = feed.name(s)
        a = crashed.table["prediction"][crashed.table.slot_of[name]]
        b = reference.table["prediction"][reference.table.slot_of[name]]
        out.append(float(np.max(np.abs(a - b))))
    return np.asarray(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, help="bundle directory (default: train one)")
    parser.add_argument("--streams", type=int, default=20)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--rate", type=float, default=400.0)
    parser.add_argument("--daemon-kills", type=int, default=20)
    parser.add_argument("--broker-kills", type=int, default=3)
    parser.add_argument("--outage-s", type=float, default=60.0)
    parser.add_argument("--snapshot-interval-s", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    bundle = load_bundle(args.bundle) if args.bundle else _train_bundle()
    base = {
        "streams": args.streams,
        "steps": args.steps,
        "rate": args.rate,
        "snapshot_interval_s": args.snapshot_interval_s,
    }
    kills, broker_kills = args.daemon_kills, args.broker_kills
    runs = {
        "daemon kill -9": Scenario(**base, daemon_kills=kills, seed=args.seed),
        "broker kill -9": Scenario(
            **base, daemon_kills=0, broker_kills=broker_kills, seed=args.seed + 1
        ),
        "both kill -9": Scenario(
            **base, daemon_kills=kills, broker_kills=broker_kills, seed=args.seed + 2
        ),
        "broker SIGTERM": Scenario(
            **base,
            daemon_kills=kills,
            broker_kills=broker_kills,
            broker_graceful=True,
            seed=args.seed + 3,
        ),
        "network outage": Scenario(
            **base, daemon_kills=0, outage_s=args.outage_s, seed=args.seed + 4
        ),
    }
    results = {}
    for name, scenario in runs.items():
        print(f"{name}: {asdict(scenario)}", flush=True)
        results[name] = run(scenario, bundle, log=True)
        print(f"  -> {asdict(results[name])}", flush=True)
    _table(results)
    if args.json:
        args.json.write_text(
            json.dumps({k: {**asdict(v), "ok": v.ok} for k, v in results.items()}, indent=2)
        )
    return 0 if all(r.ok for r in results.values()) else 1


def _table(results: dict[str, Outcome]) -> None:
    head = (
        f"{'run':16} {'published':>9} {'stepped':>8} {'missing':>7} {'at kill':>7} "
        f"{'replayed':>8} "
        f"{'again':>5} "
        f"{'alerts exp/recv':>15} {'extra':>5} {'repeats':>7} {'restarts d/b':>12} "
        f"{'pred diff max':>13} {'s':>6}"
    )
    print(head)
    for name, r in results.items():
        print(
            f"{name:16} {r.published:>9} {r.stepped_unique:>8} {r.missing:>7} "
            f"{r.missing_near_broker_kill:>7} "
            f"{r.journal_replayed:>8} {r.stepped_again_live:>5} "
            f"{f'{r.alerts_expected}/{r.alerts_expected_received}':>15} "
            f"{r.alerts_unexpected:>5} {r.alert_repeats:>7} "
            f"{f'{r.daemon_kills}/{r.broker_restarts}':>12} {r.state_max_prediction_diff:>13.4f} "
            f"{r.seconds:>6}"
        )


def _train_bundle() -> Bundle:
    """The tests' bundle: the default network on generated history (the train extra)."""
    from sensord.offline.synthetic import generate, write_csv
    from sensord.training.options import TrainOptions
    from sensord.training.train import train_bundle

    folder = Path(tempfile.mkdtemp(prefix="sensord-crash-bundle-"))
    write_csv(folder / "history.csv", generate(1200, seed=1))
    return train_bundle(
        folder / "history.csv", folder / "bundle", TrainOptions(name="synthetic")
    ).bundle


if __name__ == "__main__":
    sys.exit(main())
