"""What the detection benchmarks on labelled corpora (nab.py, skab.py) share: their command
line, the variants they replay, a bundle trained once per file and seed (or reused), the
replays themselves and the pool of processes that runs the files.

Each benchmark keeps what is its corpus's own: how files are found and read, which rows train
the bundle, what is taken from a replay and how it is scored.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence, Sized
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from benchmarks.baselines import BASELINE_KINDS, BaselineSettings
from benchmarks.variants import PRODUCT, Variant, parse_variant
from sensord.core.bundle import Bundle, load_bundle
from sensord.errors import BundleError
from sensord.offline.replay import ReplayResult, replay

DETECTORS = (PRODUCT, *BASELINE_KINDS)  # what --detectors may name
T = TypeVar("T")


def add_arguments(parser: argparse.ArgumentParser, out: Path) -> None:
    """The options every detection benchmark takes (``out``: where results go by default)."""
    parser.add_argument("--out", type=Path, default=out)
    parser.add_argument("--json", type=Path, default=None, help="write the figures as JSON")
    parser.add_argument(
        "--detectors",
        default=PRODUCT,
        help=f"comma-separated, from {', '.join(DETECTORS)} (each at its defaults; all but "
        f"{PRODUCT} are baselines, benchmarks/baselines/)",
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        help="NAME[:key=value,...] (benchmarks/variants.py); repeatable",
    )
    parser.add_argument("--seeds", default="0", help="training seeds, comma-separated")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--only", default=None, help="only files whose path contains this")
    parser.add_argument(
        "--reuse", action="store_true", help="reuse bundles a previous run left in --out"
    )


@dataclass(frozen=True)
class Plan:
    """What a run replays: the variants, the seeds, and when it started."""

    variants: list[Variant]
    seeds: list[int]
    started: float = field(default_factory=time.perf_counter)

    @property
    def names(self) -> list[str]:
        return [v.name for v in self.variants]

    def seconds(self) -> float:
        return time.perf_counter() - self.started


def plan(args: argparse.Namespace, tool: str, files: Sized, where: Path) -> Plan | None:
    """The run the options ask for over ``files`` (found under ``where``); None (the reason
    printed) if there are no files or the options are not valid."""
    if not files:
        print(f"{tool}: no files under {where}", file=sys.stderr)
        return None
    try:
        variants = variants_of(args.detectors, args.variant)
        return Plan(variants, [int(s) for s in args.seeds.split(",")])
    except ValueError as exc:
        print(f"{tool}: {exc}", file=sys.stderr)
        return None


def variants_of(detectors: str, extra: Sequence[str]) -> list[Variant]:
    """Each detector of the comma-separated ``detectors`` at its defaults, in ``DETECTORS``'
    order, then each variant of ``extra``."""
    asked = [d.strip() for d in detectors.split(",") if d.strip()]
    unknown = sorted(set(asked) - set(DETECTORS))
    if unknown:
        raise ValueError(f"unknown detector(s): {', '.join(unknown)}")
    chosen = [
        Variant(kind, baseline=None if kind == PRODUCT else BaselineSettings(kind))
        for kind in DETECTORS
        if kind in asked
    ]
    chosen += [parse_variant(text) for text in extra]
    names = [v.name for v in chosen]
    if len(set(names)) != len(names):
        raise ValueError(f"variant names repeat: {names}")
    return chosen


def trained_bundle(
    out: Path, name: str, *, seed: int, reuse: bool, model: str, rows: Callable[[], Path]
) -> tuple[Bundle, float]:
    """The bundle of file ``name`` and ``seed``: the one a previous run left in ``out`` (with
    ``reuse``), else one named ``model`` trained with sensord's trainer on the CSV ``rows``
    writes; and the seconds training took (0 when reused)."""
    target = out / "bundles" / f"seed{seed}" / name.removesuffix(".csv")
    if reuse:
        try:
            return load_bundle(target), 0.0
        except BundleError:
            pass
    from sensord.training.options import FitOptions, TrainOptions
    from sensord.training.train import train_bundle

    csv = rows()
    started = time.perf_counter()
    options = TrainOptions(name=model, out_of_order="drop", fit=FitOptions(seed=seed))
    report = train_bundle(csv, target, options)  # one torch thread: one file a core
    return report.bundle, time.perf_counter() - started


def replays(
    path: Path, bundle: Bundle, variants: Sequence[Variant]
) -> Iterator[tuple[Variant, ReplayResult]]:
    """The CSV at ``path`` replayed through a fresh core per variant, as the daemon would
    have scored it (a row not after its stream's last one dropped, as a late reading is)."""
    for variant in variants:
        yield variant, replay(path, variant.pipeline(bundle), out_of_order="drop")


def in_pool(calls: Sequence[Callable[[], T]], jobs: int) -> Iterator[T]:
    """Each call's result, in the calls' order, run by ``jobs`` processes (each call must
    pickle: a module-level function, or a ``functools.partial`` of one)."""
    with ProcessPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = [pool.submit(call) for call in calls]
        for future in futures:
            yield future.result()


def write_json(path: Path | None, payload: object) -> None:
    """The figures as JSON at ``path`` (None: not asked for)."""
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(payload, indent=2))
