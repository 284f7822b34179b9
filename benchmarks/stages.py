"""Where a reading's time goes in the core, on both of its paths side by side: each stage of
``Pipeline.process_batch`` timed apart, per reading, for waves of 1, 10, 100 and 1,000
streams, on the numpy reference and on the compiled path (issue 27's "per-stage costs
before/after", and its target of a wave of one reading in <= 40 us in-process).

In-process, two ``Pipeline``s per wave width with the daemon's default settings (the channels
detector, its alert policy) on a real bundle's onnxruntime engine: the reference
(``compiled=False``: step.py, detect/, alert.py) and the compiled path (the default:
core/compiled/). A wave is one reading of every stream at one timestamp, stepped together as
the daemon steps a micro-batch (one ``process_batch`` call). The readings are the synthetic
generator's daily shape in the bundle's units, with noise of each stream's own, every
training interval; both pipelines get the same streams.

The stages are the core's own seams (stageseams.py): at run time, inside this process only,
the methods and module functions that make them are replaced by timing wrappers
(``perf_counter`` around the call, the time of wrapped calls inside it subtracted), so each
stage is the time spent in its own lines, and the stages add up to the wrapped
``process_batch``. The reference's:

- **pipeline**: stream ids to slots, splitting the batch into waves and its outcome columns,
  ``_step_kept``'s own lines, and each stream's bookkeeping (step count, recent readings,
  step gaps, arrival period);
- **checks**: late and duplicate readings dropped; the reset after a gap (``max_gap_s``);
- **error**: the reading against the prediction made a step before (``predict``'s own
  lines), and the observation and score columns (``judge``'s own lines);
- **model**: the engine's inputs and the LSTM state gathered and scattered, and
  onnxruntime's ``Session.run``;
- **assess** and **learn**: the detector's, per part: the error scale, each channel, the
  calibrated tails, and the lines that combine them;
- **alert**: the lifecycle (``advance``), the drivers that hold an alert (``held_scores``,
  ``drive``, the features' shares), and ``trust``;
- **emit**: the outcome columns and an event per transition.

The compiled path's (``CompiledPath.process``):

- **admit and scaling**: ``admit`` (numba: late, duplicate, reset after a gap) and the
  transform (``forward``);
- **engine**: ``_run_engine``'s own lines (inputs, state gathered and scattered), the
  time-of-day features, ``Engine.run``'s own lines and onnxruntime's ``Session.run``;
- **kernel**: every reading's step (numba), timed at ``CompiledPath._run``, which calls
  numba's entry point itself once the kernel is compiled;
- **alert events**: an event per transition (``_events``);
- **the rest**: stream ids to slots, ``process_batch``'s and ``process``'s own lines (the
  batch's order, the scaling's arithmetic, its ``Scored`` columns, the counters), and the
  kernel's output columns (``_outputs``).

Side by side, each compiled group is set against the reference stages it does the work of
(stageseams.REPLACES), and the whole wave unwrapped against the whole wave unwrapped.

The wrappers cost something themselves: each width runs blocks of waves unwrapped and wrapped
on each path, taking turns (and a do-nothing call in the same loop, the floor of a wave's
Python overhead), and reports both totals and their same-repeat ratio, beside what the
wrappers should add from their own cost measured apart. Figures are medians over the repeats,
shares the median of each repeat's own, reference over compiled the median of same-repeat
ratios (these machines are shared and noisy: same-run ratios mean more than absolute
figures). A whole wave's CPU is the process's CPU time (``process_time``) over its block; a
stage's is its wall time times its block's CPU over wall: time the box gave other jobs lands
in the stages in proportion to their time, and this takes it out.

    python benchmarks/stages.py [--bundle DIR] [--widths 1,10,100,1000] [--repeats 7] [--json F]
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from benchmarks.report import machine, machine_load
from benchmarks.runner import write_json
from benchmarks.stagefigures import (
    Block,
    Runs,
    compare,
    print_comparison,
    print_overview,
    print_wave_of_one,
    print_width,
    summarise,
    wave_of_one,
)
from benchmarks.stageseams import Clock, Patch, seams_of, wrapped, wrapper_cost_ns
from sensord.arrays import F64
from sensord.config import Settings
from sensord.core.bundle import Bundle, Manifest, load_bundle
from sensord.core.detect.tail import REFIT_EVERY
from sensord.core.engine import Engine
from sensord.core.pipeline import Pipeline
from sensord.offline.synthetic import DAY_S, generate

WIDTHS = (1, 10, 100, 1000)
T0 = 1.7e9
CYCLE_DAYS = 30  # the readings repeat after this many whole days (the daily phase holds)
# Each stream's noise, in the shape's standard deviations: the synthetic generator's default
# noise (0.15) against its shape's spread (~2.3).
NOISE = 0.065
FEATURE_LAG = 7  # rows between features' shapes, so that several features are not one
PROBE_S = 0.25  # how long a width's waves are timed to size its blocks
MIN_WAVES = 3
PATHS = ("reference", "compiled")


@dataclass(frozen=True)
class Wave:
    ts: F64
    values: F64
    received: F64


class Feed:
    """Readings of ``width`` streams, a wave at a time, every training interval: the
    synthetic generator's daily shape (noise-free) in each feature's units, plus each
    stream's own noise."""

    def __init__(self, manifest: Manifest, width: int, seed: int) -> None:
        self.interval = manifest.training.median_interval_s or 60.0
        rows = max(1, round(CYCLE_DAYS * DAY_S / self.interval))
        shape = generate(rows, interval_s=self.interval, start=T0, noise=0.0).values
        self.shape = (shape - shape.mean()) / shape.std()
        self.center = np.asarray(manifest.scaling.center, dtype=np.float64)
        self.scale = np.asarray(manifest.scaling.scale, dtype=np.float64)
        self.streams = [f"s{i}" for i in range(width)]
        self.rng = np.random.default_rng(seed)
        self.step = 0

    def wave(self) -> Wave:
        width, features = len(self.streams), len(self.center)
        rows = (self.step + FEATURE_LAG * np.arange(features)) % len(self.shape)
        z = self.shape[rows][None, :] + NOISE * self.rng.standard_normal((width, features))
        ts = np.full(width, T0 + self.step * self.interval)
        self.step += 1
        return Wave(ts, self.center + self.scale * z, ts.copy())

    def waves(self, count: int) -> list[Wave]:
        return [self.wave() for _ in range(count)]


class Nothing:
    """A do-nothing ``process_batch``: the floor of a wave's Python overhead."""

    def process_batch(self, streams: Sequence[str], ts: F64, values: F64, received: F64) -> None:
        return None


class Bench:
    """One path's pipeline at one width, its readings and wrappers."""

    def __init__(
        self, bundle: Bundle, width: int, max_gap_s: float | None, *, compiled: bool
    ) -> None:
        route: dict[str, Any] = {"topic": "sensors/+/value", "bundle": str(bundle.path)}
        if max_gap_s is not None:
            route["max_gap_s"] = max_gap_s
        settings = Settings(routes=[route])  # the daemon's defaults, as a route gets them
        # (compiled=True fails loudly if the detector had no compiled path.)
        self.pipeline = Pipeline(
            Engine(bundle), settings.pipeline_settings(settings.routes[0]), compiled=compiled
        )
        self.width = width
        self.feed = Feed(bundle.manifest, width, seed=width)  # the same streams on each path
        self.seams = seams_of(self.pipeline)
        self.clock = Clock([s.key for s in self.seams.stages])
        self.patches: Sequence[Patch] = self.seams.patches

    def warm(self, waves: int) -> None:
        for wave in self.feed.waves(waves):
            self.pipeline.process_batch(self.feed.streams, wave.ts, wave.values, wave.received)

    def join(self, waves: int) -> None:
        """The streams' first ``waves`` waves, a cohort of them joining in each: streams
        that started together would refit their tails on the same wave, one wave in
        REFIT_EVERY carrying every stream's refit (a daemon's streams started apart)."""
        cohorts = max(1, min(REFIT_EVERY, waves))
        cohort = np.arange(self.width) % cohorts
        for k, wave in enumerate(self.feed.waves(waves)):
            joined = np.flatnonzero(cohort <= k)
            streams = [self.feed.streams[i] for i in joined.tolist()]
            self.pipeline.process_batch(
                streams, wave.ts[joined], wave.values[joined], wave.received[joined]
            )

    def waves_for(self, block_s: float) -> int:
        """Waves a block needs to last about ``block_s`` at this width."""
        count, started = 0, time.perf_counter()
        while count < MIN_WAVES or time.perf_counter() - started < PROBE_S:
            self.warm(1)
            count += 1
        per_wave = (time.perf_counter() - started) / count
        return max(MIN_WAVES, round(block_s / per_wave))

    def block(self, waves: int, *, timed: bool) -> Block:
        work = self.feed.waves(waves)
        if not timed:
            return self._run(self.pipeline.process_batch, work, {}, {})
        with wrapped(self.patches, self.clock):
            # The wrapped process_batch, looked up once the wrappers are in.
            run = self.pipeline.process_batch
            return self._run(run, work, self.clock.spent, self.clock.calls)

    def floor(self, waves: int) -> Block:
        work = self.feed.waves(waves)
        self.feed.step -= waves  # no pipeline saw them: the next block takes them up
        return self._run(Nothing().process_batch, work, {}, {})

    def _run(
        self,
        process: Callable[..., object],
        work: list[Wave],
        spent: dict[str, float],
        calls: dict[str, int],
    ) -> Block:
        streams = self.feed.streams
        gc.collect()  # no collection of an earlier block's garbage inside this one
        wall0, cpu0 = time.perf_counter(), time.process_time()
        for wave in work:
            process(streams, wave.ts, wave.values, wave.received)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        readings = len(work) * self.width
        return Block(len(work), readings, wall, cpu, dict(spent), dict(calls))


def measure(bundle: Bundle, args: argparse.Namespace) -> list[dict[str, Runs]]:
    """Each width's blocks on both paths, one repeat at a time: the same repeat of every
    width and path taken within seconds of each other, so a drift in the box's load lands on
    both sides of a ratio."""
    widths: list[dict[str, tuple[Bench, Runs]]] = []
    for width in args.widths:
        pair = {}
        for path in PATHS:
            bench = Bench(bundle, width, args.max_gap_s, compiled=path == "compiled")
            bench.join(args.warmup)
            waves = args.waves or bench.waves_for(args.block_s)
            print(
                f"{path}, width {width}: warmed {args.warmup} waves, {waves} waves a block",
                flush=True,
            )
            pair[path] = (bench, Runs(width, bench.seams, waves))
        widths.append(pair)
    for repeat in range(args.repeats):
        for pair in widths:
            # Alternate which goes first, so that a drift within a repeat favours neither.
            first = repeat % 2 == 0
            for bench, run in [pair[p] for p in (PATHS if first else PATHS[::-1])]:
                for timed in (False, True) if first else (True, False):
                    blocks = run.timed if timed else run.plain
                    blocks.append(bench.block(run.waves, timed=timed))
                run.floors.append(bench.floor(run.waves))
        print(f"repeat {repeat + 1} of {args.repeats} done", flush=True)
    return [{path: run for path, (_, run) in pair.items()} for pair in widths]


def bundle_for(args: argparse.Namespace, work: Path) -> Bundle:
    if args.bundle is not None:
        return load_bundle(args.bundle)
    from benchmarks.operating import train  # the other benchmarks' 2x64 bundle

    return load_bundle(train(work))


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, help="bundle to step (default: train a 2x64 one)")
    parser.add_argument(
        "--widths",
        type=lambda s: [int(w) for w in s.split(",")],
        default=list(WIDTHS),
        help="streams a wave, comma-separated",
    )
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=600, help="waves before timing")
    parser.add_argument("--block-s", type=float, default=0.75, help="seconds a block lasts")
    parser.add_argument("--waves", type=int, help="waves a block (default: from --block-s)")
    parser.add_argument("--max-gap-s", type=float, help="a route's max_gap_s (default: none)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    return parser.parse_args(argv)


def report(rows: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """Print each path's tables, then the two side by side; the wave of one's figures."""
    for path in PATHS:
        for row in rows:
            print_width(row[path])
        print_overview([row[path] for row in rows])
    print_comparison([row["side_by_side"] for row in rows])
    headline = wave_of_one([row["side_by_side"] for row in rows])
    print_wave_of_one(headline)
    return headline


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    load = machine_load()
    print(f"box: {load['why']}")
    with tempfile.TemporaryDirectory() as tmp:
        bundle = bundle_for(args, Path(tmp))
        manifest = bundle.manifest
        print(f"bundle {manifest.name}: {manifest.layers}x{manifest.hidden}, ", end="")
        print(f"{len(manifest.features)} feature(s), time features {manifest.time_features}")
        wrapper_ns = wrapper_cost_ns()
        print(f"a timing wrapper costs {wrapper_ns:.0f} ns a call")
        measured = measure(bundle, args)
    rows = [
        {
            "width": runs["reference"].width,
            **{path: summarise(runs[path], wrapper_ns) for path in PATHS},
            "side_by_side": compare(runs["reference"], runs["compiled"]),
        }
        for runs in measured
    ]
    headline = report(rows)
    write_json(
        args.json,
        {
            "machine": machine(),
            "load": load,
            "bundle": {
                "name": manifest.name,
                "layers": manifest.layers,
                "hidden": manifest.hidden,
                "features": len(manifest.features),
            },
            "warmup_waves": args.warmup,
            "max_gap_s": args.max_gap_s,
            "wrapper_ns_per_call": round(wrapper_ns, 1),
            "wave_of_one": headline,
            "widths": rows,
        },
    )
    if args.json:
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
