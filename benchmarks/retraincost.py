"""What continual learning costs the daemon: each retrain child's CPU and wall time, and the
scoring loop's latency while one runs, beside the same loop's while none does, in one run.

A real Mosquitto on a free port (``set_tcp_nodelay true``: see ``main``); the daemon as
``sensord run --config FILE`` runs it (its loop in a thread of this process, which never
imports torch), with recording and continual retraining on, its route's recording seeded
with ``--history-rows`` readings per stream; a publisher process sending ``--streams``
streams at ``--rate`` readings/s each, each reading when it is due and stamped with its send
time (benchmarks/traffic.py --smooth). The schedule
(``every_rows`` at its least, ``min_interval_s = --idle-s``) puts an idle window before each
retrain, so the same loop scores the same traffic alternately without and with a retrain
child (nice 19, one torch thread) running beside it, until ``--retrains`` have ended.

Every reading's delay is kept where the daemon measures it (its reading-age and lag
histograms, whose values are kept here too): **publish → scored** and **received →
acknowledged**. Each is classed by the phase it was scored in: **idle** (no retrain child),
**retrain** (one running) or **swap** (one ended less than ``SWAP_WINDOW_S`` before: the hot
swap after a promotion happens then); the first ``WARM_S`` are left out. Per retrain:
outcome, the child's CPU seconds (``wait4``), its wall time and the rows that made it due;
per phase: p50/p99/max and the daemon's CPU per reading (this process's CPU: the loop's, in
effect); and each hot swap's time in the loop. The target: a retrain never delays a reading
by more than 50 ms.

    python benchmarks/retraincost.py [--streams 100] [--rate 1] [--retrains 2] [--idle-s 15]
        [--epochs 5] [--history-rows 600] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import numpy.typing as npt

from benchmarks.traffic import BASE_ROWS, FILTER, stream_name
from sensord import logs
from sensord.cli.broker import LOCAL_BROKER_CONFIG, LocalBroker, start_mosquitto, terminate
from sensord.cli.main import main as sensord
from sensord.config import load_settings
from sensord.daemon.continual import Continual
from sensord.daemon.histogram import Histogram
from sensord.daemon.loop import Daemon
from sensord.daemon.routes import Route
from sensord.offline.synthetic import generate, write_csv
from sensord.ops.recording import Recorder, RecordPolicy

REPO = Path(__file__).resolve().parents[1]
ROUTE = "bench"
WARM_S = 3.0  # left out: the streams' first readings, the loop's first batches
SWAP_WINDOW_S = 2.0  # after a child ends, readings still count as the retrain's
SAMPLE_S = 0.25  # the CPU sampler's period
TARGET_MS = 50.0
PLANT_SHIFT = 6.0  # the level the plant has dropped by since the model in service
# When a reading was scored: no retrain child ran ("idle"), one ran ("retrain"), or one had
# ended less than SWAP_WINDOW_S before ("swap": the reload after a promotion is in there).
CLASSES = ("idle", "retrain", "swap")


@dataclass
class Kept:
    """Values of one histogram, each batch with its phase, as the loop observed them."""

    values: list[npt.NDArray[np.float64]] = field(default_factory=list)
    phase: list[str] = field(default_factory=list)
    at: list[float] = field(default_factory=list)


class KeptHistogram(Histogram):
    """The daemon's histogram, and its values kept with the phase they were scored in."""

    def __init__(self, base: Histogram, phase: Callable[[], str], kept: Kept) -> None:
        super().__init__(base.bounds.tolist())
        self._phase, self._kept = phase, kept

    def observe(self, values: npt.ArrayLike) -> None:
        super().observe(values)
        self._kept.values.append(np.array(values, dtype=np.float64).ravel())
        self._kept.phase.append(self._phase())
        self._kept.at.append(time.monotonic())


def retrain_phase(continual: Continual) -> Callable[[], str]:
    """The phase now: "retrain" while a child runs, "swap" for SWAP_WINDOW_S after one
    ended, else "idle"."""

    def phase() -> str:
        if continual.running is not None:
            return "retrain"
        if not continual.history:
            return "idle"
        ended = max(w.ended_at or 0.0 for w in continual.watched.values())
        return "swap" if time.time() - ended < SWAP_WINDOW_S else "idle"

    return phase


def train_live(work: Path) -> Path:
    """The bundle in service: 2x64, as shipped, trained briefly in a child (no torch here),
    on the plant as it was: PLANT_SHIFT above what it reads now, so that a retrain on the
    recording has something to gain and the run sees promotions and their hot swaps."""
    history, out = work / "history.csv", work / "live"
    before = generate(1200, seed=1)
    write_csv(history, replace(before, values=before.values + PLANT_SHIFT))
    command = [sys.executable, "-m", "sensord", "train", str(history), "--out", str(out)]
    command += ["--name", ROUTE, "--epochs", "3", "--threads", "1"]
    subprocess.run(command, check=True, cwd=REPO, capture_output=True)
    return out


def write_config(work: Path, broker: LocalBroker, args: argparse.Namespace) -> Path:
    state = work / "state"
    path = work / "sensord.toml"
    path.write_text(
        f'[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\nprotocol = "{broker.protocol}"\n'
        f'client_id = "sensord-continual-bench"\n[state]\ndir = "{state}"\n'
        f'[[routes]]\ntopic = "{FILTER}"\nname = "{ROUTE}"\n'
        f'bundle = "{state / "models" / ROUTE / "current"}"\n'
        "[record]\nenabled = true\n[nodata]\nenabled = false\n[feedback]\nenabled = false\n"
        f"[retrain]\nmin_rows = 100\nepochs = {args.epochs}\ncontinual = true\n"
        f"every_rows = 10\nmin_interval_s = {args.idle_s}\n"
    )
    return path


def seed_recording(config: Path, streams: int, rows: int, period_s: float) -> None:
    """What the daemon would have recorded before: each stream's ``rows`` readings just
    before the publisher's first (the same series, benchmarks/traffic.py's), ``period_s``
    apart (the live rate's), the last just before now."""
    recorder = Recorder(load_settings(config).records_dir, RecordPolicy())
    base = generate(BASE_ROWS, seed=0).values  # traffic.py's, at its default seed
    ts = time.time() - period_s * np.arange(rows, 0, -1, dtype=np.float64)
    for i in range(streams):
        at = (i * 37 + np.arange(-rows, 0)) % BASE_ROWS  # as traffic.py reads stream i
        recorder.readings(ROUTE, ("value",), [stream_name(i)] * rows, ts, base[at].reshape(-1, 1))
    recorder.close()


@dataclass
class Figures:
    kept: dict[str, Kept]
    cpu: list[tuple[float, float, int, str]]  # (monotonic, process CPU s, stepped, phase)
    swaps_s: list[float]
    started: float
    retrains: list[dict[str, Any]] = field(default_factory=list)


def sample_cpu(daemon: Daemon, phase: Callable[[], str], stop: threading.Event) -> list[Any]:
    """This process's CPU and the readings stepped, every SAMPLE_S, with the phase."""
    samples: list[Any] = []
    route = daemon.routes[0]
    while not stop.wait(SAMPLE_S):
        counters = route.pipeline.counters
        samples.append(
            (time.monotonic(), time.process_time(), counters.scored + counters.first, phase())
        )
    return samples


class TimedDaemon(Daemon):
    """The daemon with each route reload (the hot swap after a promotion) timed."""

    swaps_s: list[float]

    def _reload_route(self, route: Route, live: bool, shadow: bool) -> None:
        started = time.perf_counter()
        super()._reload_route(route, live, shadow)
        self.swaps_s.append(time.perf_counter() - started)


def instrument(daemon: TimedDaemon, figures: Figures) -> Callable[[], str]:
    """Keep the latency histograms' values with their phase, and the swaps' times."""
    assert daemon.continual is not None
    phase = retrain_phase(daemon.continual)
    timings = daemon.timings
    timings.age_s = KeptHistogram(timings.age_s, phase, figures.kept["age"])
    timings.lag_s = KeptHistogram(timings.lag_s, phase, figures.kept["lag"])
    daemon.swaps_s = figures.swaps_s
    return phase


def publisher(broker: LocalBroker, args: argparse.Namespace) -> subprocess.Popen[bytes]:
    """The traffic, far longer than the run needs (ended when the run is)."""
    messages = int(args.streams * args.rate * 3600)
    command = [sys.executable, "-m", "benchmarks.traffic", "--port", str(broker.port)]
    command += ["--count", str(args.streams), "--messages", str(messages)]
    command += ["--rate", str(args.streams * args.rate), "--smooth"]
    return subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL)


def run(config: Path, broker: LocalBroker, args: argparse.Namespace) -> Figures:
    """The daemon scoring the traffic until ``--retrains`` retrains have ended."""
    figures = Figures({"age": Kept(), "lag": Kept()}, [], [], time.monotonic())
    daemon = TimedDaemon(load_settings(config), config=config)
    phase = instrument(daemon, figures)
    continual = daemon.continual
    assert continual is not None
    loop = threading.Thread(target=daemon.run, name="daemon", daemon=True)
    stop = threading.Event()
    samples: list[Any] = []
    sampler = threading.Thread(target=lambda: samples.extend(sample_cpu(daemon, phase, stop)))
    loop.start()
    traffic = publisher(broker, args)
    sampler.start()
    deadline = time.monotonic() + args.timeout_s
    try:
        while len(continual.history) < args.retrains:
            if time.monotonic() > deadline or traffic.poll() is not None:
                raise RuntimeError(f"{len(continual.history)} retrains ended in time")
            time.sleep(0.1)
        time.sleep(SWAP_WINDOW_S + 1.0)  # the last swap, and readings after it
    finally:
        terminate(traffic)
        stop.set()
        sampler.join()
        daemon.request_stop()
        loop.join(timeout=60)
    figures.cpu = samples
    figures.retrains = [asdict_attempt(a) for a in list(continual.history)[: args.retrains]]
    return figures


def asdict_attempt(attempt: Any) -> dict[str, Any]:
    ended = attempt.ended
    return {
        "outcome": ended.outcome,
        "cpu_s": round(ended.cpu_s, 2),
        "wall_s": round(attempt.wall_s, 2),
        "cpu_share": round(ended.cpu_s / attempt.wall_s, 3) if attempt.wall_s else None,
        "rows": attempt.rows,
        "reasons": list(ended.reasons),
    }


def latency(kept: Kept, started: float) -> dict[str, dict[str, float]]:
    """p50/p99/max in milliseconds per phase, past the warm-up."""
    out = {}
    for cls in CLASSES:
        chosen = [
            v
            for v, phase, at in zip(kept.values, kept.phase, kept.at, strict=True)
            if phase == cls and at - started >= WARM_S
        ]
        values = np.concatenate(chosen) * 1e3 if chosen else np.zeros(0)
        out[cls] = {
            "readings": int(values.size),
            "p50_ms": float(np.percentile(values, 50)) if values.size else float("nan"),
            "p99_ms": float(np.percentile(values, 99)) if values.size else float("nan"),
            "max_ms": float(values.max()) if values.size else float("nan"),
        }
    return out


def cpu_per_reading(
    samples: Sequence[tuple[float, float, int, str]], started: float
) -> dict[str, float]:
    """This process's CPU microseconds per stepped reading, per phase (intervals whose two
    ends are in the same phase, past the warm-up)."""
    cpu = dict.fromkeys(CLASSES, 0.0)
    readings = dict.fromkeys(CLASSES, 0)
    for (t0, c0, r0, p0), (_, c1, r1, p1) in itertools.pairwise(samples):
        if p0 == p1 and t0 - started >= WARM_S:
            cpu[p0] += c1 - c0
            readings[p0] += r1 - r0
    return {
        cls: cpu[cls] / readings[cls] * 1e6 if readings[cls] else float("nan") for cls in CLASSES
    }


def summary(figures: Figures, args: argparse.Namespace) -> dict[str, Any]:
    age = latency(figures.kept["age"], figures.started)
    worst = max(age["retrain"]["max_ms"], age["swap"]["max_ms"])
    return {
        "streams": args.streams,
        "rate_per_stream": args.rate,
        "epochs": args.epochs,
        "history_rows": args.history_rows,
        "retrains": figures.retrains,
        "publish_to_scored_ms": age,
        "received_to_acked_ms": latency(figures.kept["lag"], figures.started),
        "cpu_us_per_reading": cpu_per_reading(figures.cpu, figures.started),
        "swaps_ms": [round(s * 1e3, 2) for s in figures.swaps_s],
        "target_ms": TARGET_MS,
        "target_met": bool(worst <= TARGET_MS),
    }


def report(result: dict[str, Any]) -> None:
    print(
        f"{result['streams']} streams x {result['rate_per_stream']:g}/s, retrain epochs "
        f"{result['epochs']}, {result['history_rows']} recorded rows per stream before"
    )
    print(f"{'retrain':<8}{'outcome':<10}{'CPU s':>8}{'wall s':>8}{'CPU/wall':>9}{'rows':>8}")
    for i, r in enumerate(result["retrains"], start=1):
        share = r["cpu_share"] if r["cpu_share"] is not None else float("nan")
        print(
            f"{i:<8}{r['outcome']:<10}{r['cpu_s']:>8.1f}{r['wall_s']:>8.1f}{share:>9.2f}{r['rows']:>8}"
        )
    print(f"\n{'latency, ms':<28}{'readings':>9}{'p50':>8}{'p99':>8}{'max':>8}")
    for label, key in (
        ("publish->scored", "publish_to_scored_ms"),
        ("received->acked", "received_to_acked_ms"),
    ):
        table = result[key]
        for cls in CLASSES:
            row = table[cls]
            print(
                f"{label + ' ' + cls:<28}{row['readings']:>9}"
                f"{row['p50_ms']:>8.2f}{row['p99_ms']:>8.2f}{row['max_ms']:>8.2f}"
            )
        ratios = [table["retrain"][q] / table["idle"][q] for q in ("p50_ms", "p99_ms", "max_ms")]
        print(f"{label + ' retrain/idle':<28}{'':>9}" + "".join(f"{r:>8.2f}" for r in ratios))
    cpu = result["cpu_us_per_reading"]
    print(
        f"\ndaemon CPU per reading: {cpu['idle']:.0f} us idle, {cpu['retrain']:.0f} us while a "
        f"retrain runs ({cpu['retrain'] / cpu['idle']:.2f}x); hot swaps: {result['swaps_ms']} ms"
    )
    verdict = "met" if result["target_met"] else "MISSED"
    age = result["publish_to_scored_ms"]
    print(
        f"target (a retrain delays no reading past {TARGET_MS:g} ms): {verdict}: max "
        f"{age['retrain']['max_ms']:.1f} ms while one ran, {age['swap']['max_ms']:.1f} ms "
        f"around its swap ({age['idle']['max_ms']:.1f} ms with none)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--rate", type=float, default=1.0, help="readings/s per stream")
    parser.add_argument("--retrains", type=int, default=2)
    parser.add_argument("--idle-s", type=float, default=15.0, help="idle window before each")
    parser.add_argument("--epochs", type=int, default=5, help="per retrain")
    parser.add_argument("--history-rows", type=int, default=600, help="recorded per stream")
    parser.add_argument("--timeout-s", type=float, default=1800.0)
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    # Mosquitto's default (set_tcp_nodelay false) batches its small writes to the daemon
    # behind delayed TCP acknowledgements: bursts of readings 20-50 ms late at random
    # moments, retrain or not, which would hide what a retrain does.
    broker = start_mosquitto(extra_config=LOCAL_BROKER_CONFIG + "set_tcp_nodelay true\n")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            live = train_live(work)
            config = write_config(work, broker, args)
            assert sensord(["promote", str(live), "--route", ROUTE, "--config", str(config)]) == 0
            seed_recording(config, args.streams, args.history_rows, 1.0 / args.rate)
            logs.configure("warning", "console")  # (promote set its own)
            result = summary(run(config, broker, args), args)
    finally:
        broker.stop()
    report(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
