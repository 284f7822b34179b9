"""Does a threshold mean the same on every stream? ``python benchmarks/calibration.py``.

The default threshold promises a rate: a score ``s`` is a tail probability of
``10 ** (-5 s / (1 - s))`` on the stream's normal data, so at 0.5 one raised alert per
100,000 readings of normal data at most. This benchmark measures the rate of the alerts the
daemon really raises on normal data, per family of data (benchmarks/families.py), at
thresholds 0.45, 0.5 and 0.55, and divides it by the nominal rate: a ratio of 1 is a threshold
that means what it says; the target is at most 3 on every family, and rates that fall as the
threshold rises.

For each generated family and seed: a bundle trained with the default trainer on two weeks of
the family (seed ``s``), then ``streams`` fresh streams of the same family (their own draws)
replayed through the daemon's core from the moment they appear, at each threshold; every
raised alert counts (there is nothing anomalous in them). Seeds differ in their streams' length
too (seed 0 the fewest, longest streams): a rate that holds for a new stream and for one
half a year old. With ``--nab-root`` the labelled-normal rows of NAB's files (outside every
window, after the probation the bundle was trained on) are a family too, and with ``--skab``
SKAB's anomaly-free file (trained on its first 400 rows, as SKAB's protocol does).

    python benchmarks/calibration.py [--families periodic,bursty,...] [--seeds 0,1,2]
        [--readings 300000] [--nab-root DIR] [--skab DATA_DIR] [--variant NAME:k=v,...]
        [--jobs 2] [--json OUT.json] [--out DIR] [--reuse]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sensord.arrays import F64

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import itertools

from benchmarks.families import FAMILIES, Family
from benchmarks.variants import Variant, parse_variant
from sensord.core.bundle import Bundle, load_bundle
from sensord.core.detect import DetectorSettings
from sensord.core.engine import Engine
from sensord.core.pipeline import Pipeline
from sensord.core.timestamps import format_timestamp
from sensord.errors import BundleError

THRESHOLDS = (0.4, 0.45, 0.5, 0.55)
TRAIN_DAYS = 14.0
START = 1.7e9  # 2023-11-14, a Tuesday
STREAMS = {0: 8, 1: 16, 2: 32}  # by seed: more, shorter streams for later seeds
BATCH_ROWS = 64  # rows of every stream per call of the core
EARLY_DAYS = 7.0  # raises in a stream's first week are also counted apart


def nominal_rate(threshold: float) -> float:
    """Raised alerts per reading that a threshold promises on normal data."""
    return float(10.0 ** (-5.0 * threshold / (1.0 - threshold)))


@dataclass
class Count:
    """Alerts raised on normal data, and what they were raised on."""

    raised: int = 0
    early: int = 0  # of them, in a stream's first EARLY_DAYS
    readings: int = 0
    channels: Counter[str] = field(default_factory=Counter)

    def add(self, other: Count) -> None:
        self.raised += other.raised
        self.early += other.early
        self.readings += other.readings
        self.channels.update(other.channels)

    def ratio(self, threshold: float) -> float:
        if self.readings == 0:
            return math.nan
        return self.raised / self.readings / nominal_rate(threshold)

    def as_json(self, threshold: float) -> dict[str, object]:
        return {
            "raised": self.raised,
            "early": self.early,
            "readings": self.readings,
            "per_100k": 1e5 * self.raised / max(1, self.readings),
            "ratio": self.ratio(threshold),
            "channels": dict(self.channels),
        }


Counts = dict[str, dict[float, Count]]  # variant -> threshold -> count


@dataclass(frozen=True)
class Job:
    family: str
    seed: int
    readings: int


def with_threshold(variant: Variant, threshold: float) -> Variant:
    detector = dataclasses.replace(variant.settings.detector, threshold=threshold)
    settings = dataclasses.replace(variant.settings, detector=detector)
    return dataclasses.replace(variant, settings=settings)


def write_rows(path: Path, ts: F64, values: F64, names: Sequence[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["timestamp," + ",".join(names)]
    for t, row in zip(ts, values, strict=True):
        lines.append(format_timestamp(float(t)) + "," + ",".join(f"{v:.6g}" for v in row))
    path.write_text("\n".join(lines) + "\n")


def family_bundle(family: Family, seed: int, out: Path, reuse: bool) -> Bundle:
    """A bundle trained on two weeks of the family, drawn with ``seed``."""
    target = out / "bundles" / f"seed{seed}" / family.name
    if reuse:
        try:
            return load_bundle(target)
        except BundleError:
            pass
    from sensord.training.options import FitOptions, TrainOptions
    from sensord.training.train import train_bundle

    rows = int(TRAIN_DAYS * 86_400 / family.interval_s)
    ts, values = family.draw(rows, START, seed)
    csv = out / "train" / f"seed{seed}" / f"{family.name}.csv"
    write_rows(csv, ts, values, family.features)
    options = TrainOptions(name=family.name, fit=FitOptions(seed=seed))
    return train_bundle(csv, target, options).bundle


def replay_streams(pipeline: Pipeline, ts: F64, values: F64, interval_s: float) -> Count:
    """Replay ``values[streams, rows, F]`` (all read at ``ts``) through the core, every
    stream's reading of a row in one call; count the alerts it raises."""
    streams, rows, _ = values.shape
    names = [f"s{i}" for i in range(streams)]
    count = Count(readings=streams * rows)
    early_rows = EARLY_DAYS * 86_400 / interval_s
    for start in range(0, rows, BATCH_ROWS):
        stop = min(rows, start + BATCH_ROWS)
        n = stop - start
        batch_ts = np.repeat(ts[start:stop], streams)
        batch = values[:, start:stop].transpose(1, 0, 2).reshape(n * streams, -1)
        scored = pipeline.process_batch(names * n, batch_ts, batch)
        for index, event in scored.events:
            if event.event == "raised":
                count.raised += 1
                count.early += int(start + index // streams < early_rows)
                count.channels[event.channel] += 1
    return count


def run_family(
    job: Job, *, variants: Sequence[Variant], thresholds: Sequence[float], out: Path, reuse: bool
) -> tuple[Job, Counts, float]:
    started = time.perf_counter()
    family = FAMILIES[job.family]
    bundle = family_bundle(family, job.seed, out, reuse)
    streams = STREAMS.get(job.seed, 8)
    rows = max(1, job.readings // streams)
    live = START + (TRAIN_DAYS + 1.0) * 86_400
    ts = family.timestamps(rows, live)
    values = np.stack(
        [family.draw(rows, live, 1000 * (job.seed + 1) + i)[1] for i in range(streams)]
    )
    counts: Counts = {}
    for variant in variants:
        counts[variant.name] = {}
        for threshold in thresholds:
            chosen = with_threshold(variant, threshold)
            pipeline = Pipeline(Engine(bundle), chosen.settings)
            counts[variant.name][threshold] = replay_streams(
                pipeline, ts, values, family.interval_s
            )
    return job, counts, time.perf_counter() - started


def run_nab(
    seed: int,
    *,
    root: Path,
    variants: Sequence[Variant],
    thresholds: Sequence[float],
    out: Path,
    reuse: bool,
) -> tuple[Job, Counts, float]:
    """NAB's labelled-normal rows: after the probation, outside every window."""
    from benchmarks.nab import bundle_for
    from sensord.offline.nabscore import load_windows, probation_rows
    from sensord.offline.replay import replay

    started = time.perf_counter()
    windows = load_windows(root / "labels" / "combined_windows.json")
    counts: Counts = {v.name: {t: Count() for t in thresholds} for v in variants}
    for path in sorted((root / "data").glob("*/*.csv")):
        name = path.relative_to(root / "data").as_posix()
        bundle, _ = bundle_for(path, name, out / "nab", seed, reuse)
        for variant in variants:
            for threshold in thresholds:
                chosen = with_threshold(variant, threshold)
                result = replay(
                    path, Pipeline(Engine(bundle), chosen.settings), out_of_order="drop"
                )
                stamps = np.asarray(result.series.timestamps)
                normal = np.ones(len(stamps), dtype=bool)
                normal[: probation_rows(len(stamps))] = False
                for a, b in windows.get(name, []):
                    normal &= ~((stamps >= a) & (stamps <= b))
                count = counts[variant.name][threshold]
                count.readings += int(normal.sum())
                for row, outcome in enumerate(result.outcomes):
                    event = outcome.event if outcome is not None else None
                    if event is not None and event.event == "raised" and normal[row]:
                        count.raised += 1
                        count.channels[event.channel] += 1
    return Job("nab-normal", seed, 0), counts, time.perf_counter() - started


def run_skab(
    seed: int,
    *,
    data: Path,
    variants: Sequence[Variant],
    thresholds: Sequence[float],
    out: Path,
    reuse: bool,
) -> tuple[Job, Counts, float]:
    """SKAB's anomaly-free file: trained on its first 400 rows, the rest counted."""
    from benchmarks.skab import bundle_for
    from benchmarks.skabdata import read_skab, write_csv
    from benchmarks.skabscore import TRAIN_ROWS
    from sensord.offline.replay import replay

    started = time.perf_counter()
    base = data / "data" if (data / "data").is_dir() else data
    path = base / "anomaly-free" / "anomaly-free.csv"
    skab = read_skab(path, "anomaly-free/anomaly-free.csv")
    bundle, _ = bundle_for(skab, out / "skab", seed, reuse)
    replay_csv = out / "skab" / "replay" / "anomaly-free.csv"
    write_csv(replay_csv, skab, slice(0, len(skab.timestamps)))
    counts: Counts = {v.name: {} for v in variants}
    for variant in variants:
        for threshold in thresholds:
            chosen = with_threshold(variant, threshold)
            result = replay(
                replay_csv, Pipeline(Engine(bundle), chosen.settings), out_of_order="drop"
            )
            count = Count(readings=max(0, len(result.outcomes) - TRAIN_ROWS))
            for row, outcome in enumerate(result.outcomes):
                event = outcome.event if outcome is not None else None
                if event is not None and event.event == "raised" and row >= TRAIN_ROWS:
                    count.raised += 1
                    count.channels[event.channel] += 1
            counts[variant.name][threshold] = count
    return Job("skab-free", seed, 0), counts, time.perf_counter() - started


Results = dict[str, dict[int, Counts]]  # family -> seed -> counts


def summarise(results: Results, thresholds: Sequence[float]) -> dict[str, dict[str, object]]:
    """Per variant: per family and threshold the pooled count over seeds, the ratio, each
    seed's ratio, whether the rate falls with the threshold; and the worst family."""
    variants = sorted({v for seeds in results.values() for c in seeds.values() for v in c})
    # The worst family is judged at the daemon's default threshold (or the nearest asked).
    default = DetectorSettings().threshold
    judged = min(thresholds, key=lambda t: abs(t - default))
    summary: dict[str, dict[str, object]] = {}
    for variant in variants:
        families: dict[str, object] = {}
        worst = ("", -math.inf)
        for family, seeds in results.items():
            pooled = {t: Count() for t in thresholds}
            per_seed: dict[str, dict[str, float]] = {}
            for seed, counts in sorted(seeds.items()):
                for t in thresholds:
                    pooled[t].add(counts[variant][t])
                per_seed[str(seed)] = {str(t): counts[variant][t].ratio(t) for t in thresholds}
            rates = [pooled[t].raised / max(1, pooled[t].readings) for t in thresholds]
            ratio = pooled[judged].ratio(judged)
            if ratio > worst[1]:
                worst = (family, ratio)
            families[family] = {
                "thresholds": {str(t): pooled[t].as_json(t) for t in thresholds},
                "by_seed": per_seed,
                "monotone": all(a >= b for a, b in itertools.pairwise(rates)),
            }
        summary[variant] = {
            "families": families,
            "worst": {"family": worst[0], "ratio": worst[1], "threshold": judged},
        }
    return summary


def print_table(summary: dict[str, dict[str, object]], thresholds: Sequence[float]) -> None:
    for variant, body in summary.items():
        families, worst = body["families"], body["worst"]
        assert isinstance(families, dict) and isinstance(worst, dict)
        judged = str(worst["threshold"])
        print(f"\n{variant}: raised alerts on normal data, measured / nominal rate")
        head = "".join(f"{'t=' + str(t):>28}" for t in thresholds)
        print(f"{'family':<14}{head}   monotone  ratio at {judged} by seed   channels at {judged}")
        for family, row in families.items():
            cells = ""
            for t in thresholds:
                c = row["thresholds"][str(t)]
                cells += f"{c['raised']:>7} /{c['readings']:>9,} = {c['ratio']:>6.2f}x"
            seeds = " / ".join(f"{r.get(judged, math.nan):.2f}" for r in row["by_seed"].values())
            channels = row["thresholds"].get(judged, {}).get("channels", {})
            shown = ", ".join(f"{k} {v}" for k, v in sorted(channels.items()))
            print(f"{family:<14}{cells}   {row['monotone']!s:<9} {seeds:<20} {shown}")
        print(f"worst family at {judged}: {worst['family']} ({worst['ratio']:.2f}x nominal)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument(
        "--readings", type=int, default=300_000, help="readings per family and seed"
    )
    parser.add_argument("--thresholds", default=",".join(map(str, THRESHOLDS)))
    parser.add_argument("--nab-root", type=Path, default=None, help="NAB layout, for nab-normal")
    parser.add_argument("--skab", type=Path, default=None, help="SKAB's data folder")
    parser.add_argument("--variant", action="append", default=[], help="NAME[:key=value,...]")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", type=Path, default=Path("calibration-results"))
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--reuse", action="store_true", help="reuse bundles left in --out")
    args = parser.parse_args(argv)
    try:
        names = [n for n in args.families.split(",") if n]
        unknown = sorted(set(names) - set(FAMILIES))
        if unknown:
            raise ValueError(f"unknown families {unknown}; known: {', '.join(FAMILIES)}")
        seeds = [int(s) for s in args.seeds.split(",")]
        thresholds = [float(t) for t in args.thresholds.split(",")]
        variants = [parse_variant(v) for v in args.variant] or [parse_variant("default")]
    except ValueError as exc:
        print(f"calibration.py: {exc}", file=sys.stderr)
        return 1
    common = {"variants": variants, "thresholds": thresholds, "out": args.out, "reuse": args.reuse}
    started = time.perf_counter()
    results: Results = {}
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = [
            pool.submit(run_family, Job(name, seed, args.readings), **common)
            for seed in seeds
            for name in names
        ]
        if args.nab_root is not None:
            futures += [pool.submit(run_nab, s, root=args.nab_root, **common) for s in seeds]
        if args.skab is not None:
            futures += [pool.submit(run_skab, s, data=args.skab, **common) for s in seeds]
        for future in futures:
            job, counts, seconds = future.result()
            results.setdefault(job.family, {})[job.seed] = counts
            print(f"{job.family} seed {job.seed}: {seconds:.0f} s", flush=True)
    summary = summarise(results, thresholds)
    print_table(summary, thresholds)
    seconds = time.perf_counter() - started
    print(f"\n{len(results)} families x {len(seeds)} seeds in {seconds:.0f} s")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {"seconds": seconds, "readings": args.readings, "summary": summary}
        args.json.write_text(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
