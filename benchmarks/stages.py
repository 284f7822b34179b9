"""Where a reading's time goes in the core: each stage of ``Pipeline.process_batch`` timed
apart, per reading, for waves of 1, 10, 100 and 1,000 streams (issue 27's "per-stage costs
before/after").

In-process, one ``Pipeline`` per wave width with the daemon's default settings (the channels
detector, its alert policy) on a real bundle's onnxruntime engine. A wave is one reading of
every stream at one timestamp, stepped together as the daemon steps a micro-batch (one
``process_batch`` call, one engine step). The readings are the synthetic generator's daily
shape in the bundle's units, with noise of each stream's own, every training interval.

The stages are the core's own seams: at run time, inside this process only, the methods and
module functions that make them are replaced by timing wrappers (``perf_counter`` around the
call, the time of wrapped calls inside it subtracted), so each stage is the time spent in its
own lines, and the stages add up to the wrapped ``process_batch``:

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

The wrappers cost something themselves: each width runs blocks of waves unwrapped and wrapped,
taking turns (and a do-nothing call in the same loop, the floor of a wave's Python overhead),
and reports both totals and their same-repeat ratio, beside what the wrappers should add from
their own cost measured apart. Figures are medians over the repeats, shares the median of each
repeat's own (these machines are shared and noisy: same-run ratios mean more than absolute
figures). A stage's CPU figure is its wall time times its block's CPU over wall: time the box
gave other jobs lands in the stages in proportion to their time, and this takes it out.

    python benchmarks/stages.py [--bundle DIR] [--widths 1,10,100,1000] [--repeats 7] [--json F]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

import sensord.core.pipeline as pipeline_module
import sensord.core.step as step_module
from benchmarks.report import machine, machine_load
from benchmarks.runner import write_json
from sensord.arrays import F64
from sensord.config import Settings
from sensord.core.bundle import Bundle, Manifest, load_bundle
from sensord.core.detect import ChannelDetector
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

# Display groups, in the order a reading meets them.
GROUPS = {
    "pipeline": "pipeline bookkeeping",
    "checks": "pre-step checks",
    "error": "error and observation",
    "model": "model step",
    "assess": "detector assess",
    "learn": "detector learn",
    "alert": "alert lifecycle",
    "emit": "emit",
}


@dataclass(frozen=True)
class Stage:
    key: str  # "<group>.<part>"
    label: str

    @property
    def group(self) -> str:
        return self.key.split(".", 1)[0]


@dataclass(frozen=True)
class Patch:
    """A callable attribute of ``target`` (an instance or a module) timed as ``stage``."""

    target: object
    name: str
    stage: str


def detector_of(pipeline: Pipeline) -> ChannelDetector:
    detector = pipeline.detector
    if not isinstance(detector, ChannelDetector):  # its parts are what the stages time
        raise SystemExit(f"the stages are the channels detector's, not {detector.kind}'s")
    return detector


def stages_of(pipeline: Pipeline) -> list[Stage]:
    """Every stage of this pipeline, in the order a reading meets them."""
    channels = [c.name for c in detector_of(pipeline).channels]
    parts = ["scale", *channels, "tails", "combine"]
    what = {"scale": "error scale", "tails": "calibrated tails", "combine": "combining"}
    learnt = [Stage(f"learn.{p}", what.get(p, p)) for p in parts]
    # A tail's periodic refit apart from its per-reading learning: a fit, not a recurrence.
    learnt.insert(parts.index("tails") + 1, Stage("learn.refit", "tail refits"))
    return [
        Stage("pipeline.lookup", "stream ids to slots"),
        Stage("pipeline.waves", "waves, outcome columns"),
        Stage("pipeline.step", "_step_kept's own: counters"),
        Stage("pipeline.bookkeeping", "steps, recent, gaps, period"),
        Stage("checks.late_duplicate", "late or duplicate"),
        Stage("checks.gap", "reset after a gap"),
        Stage("error.deviation", "error vs prediction"),
        Stage("error.observation", "observation, score columns"),
        Stage("model.gather", "inputs, state gather/scatter"),
        Stage("model.run", "onnxruntime Session.run"),
        *[Stage(f"assess.{p}", what.get(p, p)) for p in parts],
        *learnt,
        Stage("alert.advance", "advance"),
        Stage("alert.drivers", "held scores, drivers, shares"),
        Stage("alert.trust", "trust"),
        Stage("emit.outcomes", "outcomes and events"),
    ]


def patches_of(pipeline: Pipeline) -> list[Patch]:
    """The seams each stage is timed at. A stage's own time excludes the wrapped calls inside
    it, so ``assess.combine`` is ``assess`` without the scale, channels and tails it calls."""
    detector = detector_of(pipeline)
    engine = pipeline.engine
    if not isinstance(engine, Engine):  # Session.run is the seam the model step is timed at
        raise SystemExit(f"the model stage is onnxruntime's, not {type(engine).__name__}'s")
    session = engine._session  # (private to the engine: read here, never changed for good)
    return [
        Patch(pipeline, "process_batch", "pipeline.waves"),
        Patch(pipeline.table, "lookup", "pipeline.lookup"),
        Patch(pipeline, "_step_kept", "pipeline.step"),
        *[
            Patch(step_module, name, "pipeline.bookkeeping")
            for name in ("remember", "learn_step", "learn_period")
        ],
        Patch(pipeline, "_step_wave", "checks.late_duplicate"),
        Patch(pipeline, "_reset_after_gap", "checks.gap"),
        Patch(pipeline_module, "predict", "error.deviation"),
        Patch(pipeline_module, "judge", "error.observation"),
        Patch(step_module, "_step_model", "model.gather"),
        Patch(session, "run", "model.run"),
        Patch(detector, "assess", "assess.combine"),
        Patch(detector.scale, "standardised", "assess.scale"),
        *[Patch(c, "read", f"assess.{c.name}") for c in detector.channels],
        Patch(detector.tail, "log_p", "assess.tails"),
        Patch(detector, "learn", "learn.combine"),
        Patch(detector.scale, "learn", "learn.scale"),
        *[Patch(c, "learn", f"learn.{c.name}") for c in detector.channels],
        Patch(detector.tail, "learn", "learn.tails"),
        Patch(detector.tail, "_refit", "learn.refit"),
        Patch(step_module, "advance", "alert.advance"),
        *[
            Patch(step_module, name, "alert.drivers")
            for name in ("held_scores", "drive", "_shares")
        ],
        Patch(step_module, "trust", "alert.trust"),
        Patch(pipeline_module, "emit", "emit.outcomes"),
    ]


@dataclass
class Clock:
    """Each stage's own time: a wrapped call's time less that of the wrapped calls inside it
    (a stack of their sums), so that the stages add up to the outermost call."""

    stages: Sequence[str]
    spent: dict[str, float] = field(init=False)
    calls: dict[str, int] = field(init=False)
    _inner: list[float] = field(init=False)

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.spent = dict.fromkeys(self.stages, 0.0)
        self.calls = dict.fromkeys(self.stages, 0)
        self._inner = [0.0]

    def timed(self, fn: Callable[..., object], stage: str) -> Callable[..., object]:
        # Locals, not attribute lookups, inside the wrapper: it runs 34 times a wave or more.
        clock, inner = time.perf_counter, self._inner
        spent, calls = self.spent, self.calls

        def run(*args: object, **kwargs: object) -> object:
            inner.append(0.0)
            started = clock()
            try:
                return fn(*args, **kwargs)
            finally:
                elapsed = clock() - started
                nested = inner.pop()
                inner[-1] += elapsed
                spent[stage] += elapsed - nested
                calls[stage] += 1

        return run


@contextmanager
def wrapped(patches: Sequence[Patch], clock: Clock) -> Iterator[None]:
    """The patches' wrappers installed for the block, and the originals put back after it."""
    clock.reset()
    installed: list[tuple[Patch, object, bool]] = []
    try:
        for p in patches:
            original = getattr(p.target, p.name)
            owned = p.name in vars(p.target)  # a module's function, not a class's method
            setattr(p.target, p.name, clock.timed(original, p.stage))
            installed.append((p, original, owned))
        yield
    finally:
        for p, original, owned in reversed(installed):
            if owned:
                setattr(p.target, p.name, original)
            else:  # the instance's own attribute goes, and its class's method shows again
                delattr(p.target, p.name)


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


@dataclass(frozen=True)
class Block:
    """One timed block of waves of one width."""

    waves: int
    readings: int
    wall_s: float
    cpu_s: float
    spent: dict[str, float]  # each stage's own seconds (empty unwrapped)
    calls: dict[str, int]


class Bench:
    """One width's pipeline, readings and wrappers."""

    def __init__(self, bundle: Bundle, width: int, max_gap_s: float | None) -> None:
        route: dict[str, Any] = {"topic": "sensors/+/value", "bundle": str(bundle.path)}
        if max_gap_s is not None:
            route["max_gap_s"] = max_gap_s
        settings = Settings(routes=[route])  # the daemon's defaults, as a route gets them
        self.pipeline = Pipeline(Engine(bundle), settings.pipeline_settings(settings.routes[0]))
        self.width = width
        self.feed = Feed(bundle.manifest, width, seed=width)
        self.stages = stages_of(self.pipeline)
        self.clock = Clock([s.key for s in self.stages])
        self.patches = patches_of(self.pipeline)

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


@dataclass
class Runs:
    """One width's blocks, repeat by repeat."""

    bench: Bench
    waves: int
    plain: list[Block] = field(default_factory=list)
    timed: list[Block] = field(default_factory=list)
    floors: list[Block] = field(default_factory=list)


def measure(bundle: Bundle, args: argparse.Namespace) -> list[Runs]:
    runs = []
    for width in args.widths:
        bench = Bench(bundle, width, args.max_gap_s)
        bench.join(args.warmup)
        waves = args.waves or bench.waves_for(args.block_s)
        print(f"width {width}: warmed {args.warmup} waves, {waves} waves a block", flush=True)
        runs.append(Runs(bench, waves))
    for repeat in range(args.repeats):
        for run in runs:
            # Alternate which goes first, so that a drift within a repeat favours neither.
            for timed in (False, True) if repeat % 2 == 0 else (True, False):
                blocks = run.timed if timed else run.plain
                blocks.append(run.bench.block(run.waves, timed=timed))
            run.floors.append(run.bench.floor(run.waves))
    return runs


def per_reading(seconds: float, block: Block) -> float:
    return seconds / block.readings * 1e6


def med(values: Iterable[float], digits: int = 4) -> float:
    return round(float(statistics.median(list(values))), digits)


def own(block: Block, keys: Sequence[str]) -> float:
    return sum(block.spent[k] for k in keys)


def figures(run: Runs, keys: Sequence[str]) -> dict[str, float]:
    """A stage's (or a group's) time per reading and share of the wrapped total."""
    timed = run.timed
    return {
        "us_per_reading": med(per_reading(own(b, keys), b) for b in timed),
        # Its wall time scaled by its block's CPU over wall: on a shared box the time others'
        # jobs take lands in the stages in proportion to their time, and this drops it.
        "cpu_us_per_reading": med(per_reading(own(b, keys) * b.cpu_s / b.wall_s, b) for b in timed),
        "share": med((own(b, keys) / sum(b.spent.values()) for b in timed), 5),
    }


def summarise(run: Runs, wrapper_ns: float) -> dict[str, Any]:
    """One width's figures: each stage and group per reading and its share, and the totals."""
    waves = sum(b.waves for b in run.timed)
    stages = {
        s.key: {
            "group": s.group,
            "label": s.label,
            **figures(run, [s.key]),
            "calls_per_wave": round(sum(b.calls[s.key] for b in run.timed) / waves, 3),
        }
        for s in run.bench.stages
    }
    groups = {
        group: figures(run, [s.key for s in run.bench.stages if s.group == group])
        for group in GROUPS
    }
    return {
        "width": run.bench.width,
        "waves_per_block": run.waves,
        "repeats": len(run.timed),
        "stages": stages,
        "groups": groups,
        "total": totals_of(run, wrapper_ns),
    }


def totals_of(run: Runs, wrapper_ns: float) -> dict[str, Any]:
    """The whole wave unwrapped and wrapped (same repeats), what the wrappers cost, and the
    do-nothing floor."""
    timed, plain, floors = run.timed, run.plain, run.floors
    calls = sum(sum(b.calls.values()) for b in timed) / sum(b.waves for b in timed)
    pairs = list(zip(timed, plain, strict=True))
    return {
        "unwrapped_us": med(per_reading(b.wall_s, b) for b in plain),
        "unwrapped_cpu_us": med(per_reading(b.cpu_s, b) for b in plain),
        "wrapped_us": med(per_reading(b.wall_s, b) for b in timed),
        "wrapped_cpu_us": med(per_reading(b.cpu_s, b) for b in timed),
        "stage_sum_us": med(per_reading(sum(b.spent.values()), b) for b in timed),
        "unwrapped_us_repeats": [round(per_reading(b.wall_s, b), 3) for b in plain],
        "wrapped_us_repeats": [round(per_reading(b.wall_s, b), 3) for b in timed],
        # Same-repeat ratios: the wrapped blocks against the unwrapped ones beside them.
        "wrapped_over_unwrapped": med(
            (t.wall_s / t.readings) / (p.wall_s / p.readings) for t, p in pairs
        ),
        "wrapped_over_unwrapped_cpu": med(
            (t.cpu_s / t.readings) / (p.cpu_s / p.readings) for t, p in pairs
        ),
        "wrapped_calls_per_wave": round(calls, 2),
        # What the wrappers should add, from their own cost measured apart (wrapper_cost_ns).
        "wrappers_us_expected": round(calls * wrapper_ns / 1e3 / run.bench.width, 4),
        "floor_us": med((per_reading(b.wall_s, b) for b in floors), 5),
        "floor_us_per_wave": med(b.wall_s / b.waves * 1e6 for b in floors),
    }


def wrapper_cost_ns(calls: int = 20_000, rounds: int = 7) -> float:
    """What a timing wrapper adds to a call: an empty function called plainly and wrapped,
    the best round of each (a microbenchmark: the box's noise only ever adds to it)."""

    def nothing(a: object, b: object, *, c: object, d: object) -> None:
        return None

    timed = Clock(["wrapper"]).timed(nothing, "wrapper")

    def best(call: Callable[..., object]) -> float:
        rounds_s = []
        for _ in range(rounds):
            started = time.perf_counter()
            for _ in range(calls):
                call(1, 2, c=3, d=4)
            rounds_s.append(time.perf_counter() - started)
        return min(rounds_s)

    return (best(timed) - best(nothing)) / calls * 1e9


def print_width(result: dict[str, Any]) -> None:
    width, total = result["width"], result["total"]
    print(
        f"\n{width} stream{'s' if width > 1 else ''} a wave: {result['waves_per_block']} waves "
        f"a block, {result['repeats']} repeats; us per reading, medians (CPU: wall x the "
        "block's CPU/wall)"
    )
    print(f"{'stage':<36}{'wall us':>10}{'CPU us':>10}{'share':>9}{'calls/wave':>12}")
    for group, name in GROUPS.items():
        print(_row(name, result["groups"][group]))
        for stage in result["stages"].values():
            if stage["group"] == group:
                print(_row("  " + stage["label"], stage) + f"{stage['calls_per_wave']:>12.0f}")
    print(f"{'sum of stages (= wrapped total)':<36}{total['stage_sum_us']:>10.2f}")
    print(
        f"{'total unwrapped, wall and CPU':<36}{total['unwrapped_us']:>10.2f}"
        f"{total['unwrapped_cpu_us']:>10.2f}"
    )
    print(
        f"{'total wrapped, wall and CPU':<36}{total['wrapped_us']:>10.2f}"
        f"{total['wrapped_cpu_us']:>10.2f}"
    )
    print(
        f"wrapping: x{total['wrapped_over_unwrapped']:.3f} wall, "
        f"x{total['wrapped_over_unwrapped_cpu']:.3f} CPU; {total['wrapped_calls_per_wave']:.0f} "
        f"wrapped calls a wave, expected {total['wrappers_us_expected']:.2f} us a reading"
    )
    print(
        f"do-nothing floor: {total['floor_us']:.4f} us a reading "
        f"({total['floor_us_per_wave']:.3f} us a wave)"
    )


def _row(label: str, figures: dict[str, Any]) -> str:
    return (
        f"{label:<36}{figures['us_per_reading']:>10.2f}{figures['cpu_us_per_reading']:>10.2f}"
        f"{100 * figures['share']:>8.1f}%"
    )


def print_overview(results: Sequence[dict[str, Any]]) -> None:
    """The groups side by side, one column per width (CPU us per reading, share)."""
    print("\nCPU us per reading (share of the wave) by streams a wave")
    print(f"{'':<24}" + "".join(f"{r['width']:>16}" for r in results))
    for group, name in GROUPS.items():
        cells = [r["groups"][group] for r in results]
        print(
            f"{name:<24}"
            + "".join(f"{c['cpu_us_per_reading']:>9.2f} ({100 * c['share']:>3.0f}%)" for c in cells)
        )
    for what, key in (
        ("total unwrapped, CPU", "unwrapped_cpu_us"),
        ("total unwrapped, wall", "unwrapped_us"),
    ):
        print(f"{what:<24}" + "".join(f"{r['total'][key]:>16.2f}" for r in results))


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
        results = [summarise(run, wrapper_ns) for run in measure(bundle, args)]
    for result in results:
        print_width(result)
    print_overview(results)
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
            "widths": results,
        },
    )
    if args.json:
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
