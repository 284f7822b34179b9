"""What the detection benchmarks on labelled corpora (nab.py, skab.py) share: their command
line, the variants they replay, a bundle trained once per file and seed (or reused) with the
run's training options (``--train``: trainoptions.py), the replays themselves (a variant's
``retrain=N`` replays causally, retraining as it goes: causalretrain.py) and the pool of
processes that runs the files.

Each benchmark keeps what is its corpus's own: how files are found and read, which rows train
the bundle, what is taken from a replay and how it is scored.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence, Sized
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from benchmarks.baselines import BASELINE_KINDS, BaselineSettings
from benchmarks.causalretrain import Retrain, continual_replay, time_of_day
from benchmarks.trainoptions import Given, describe, parse_train, tag, train_options
from benchmarks.variants import PRODUCT, Variant, parse_variant
from sensord.core.bundle import Bundle, load_bundle
from sensord.errors import BundleError
from sensord.offline.replay import ReplayResult, replay
from sensord.training.options import TimeOfDay

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
    parser.add_argument(
        "--train",
        default=None,
        help="KEY=VALUE[,...]: training options over the trainer's defaults, any field of "
        "FitOptions or TrainOptions (benchmarks/trainoptions.py); such bundles have their "
        "own folder in --out",
    )
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--only", default=None, help="only files whose path contains this")
    parser.add_argument(
        "--reuse", action="store_true", help="reuse bundles a previous run left in --out"
    )


@dataclass(frozen=True)
class Plan:
    """What a run replays: the variants, the seeds, the training options (over the
    trainer's defaults), and when it started."""

    variants: list[Variant]
    seeds: list[int]
    train: Given = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)

    @property
    def names(self) -> list[str]:
        return [v.name for v in self.variants]

    def seconds(self) -> float:
        return time.perf_counter() - self.started

    def header(self, tool: str, files: int) -> str:
        """What the run is, before it starts: its files, seeds, variants and training."""
        variants = ", ".join(
            v.name
            + (f" (engine {v.model})" if v.model != "lstm" else "")
            + (f" (retrain every {v.retrain} rows)" if v.retrain else "")
            + (" (no gate)" if v.retrain and not v.gate else "")
            for v in self.variants
        )
        return (
            f"{tool}: {files} files, seeds {','.join(map(str, self.seeds))}; variants "
            f"{variants}; training options: {describe(self.train)}"
        )

    def to_json(self) -> dict[str, object]:
        """The run's training options and what each variant predicts with and retrains."""
        return {
            "train": dict(self.train),
            "variants": {
                v.name: {"engine": v.model, "retrain": v.retrain, "gate": v.gate}
                for v in self.variants
            },
        }


def plan(args: argparse.Namespace, tool: str, files: Sized, where: Path) -> Plan | None:
    """The run the options ask for over ``files`` (found under ``where``); None (the reason
    printed) if there are no files or the options are not valid."""
    if not files:
        print(f"{tool}: no files under {where}", file=sys.stderr)
        return None
    try:
        variants = variants_of(args.detectors, args.variant)
        return Plan(variants, [int(s) for s in args.seeds.split(",")], parse_train(args.train))
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


@dataclass(frozen=True)
class Training:
    """How a run trains its bundles: sensord's trainer, one torch thread, the options of
    ``--train`` over its defaults; where the bundles go (``out/bundles[/<tag>]/seed<N>``, so
    ``--reuse`` never takes a bundle trained with other options), and whether to reuse."""

    out: Path
    given: Given = field(default_factory=dict)
    reuse: bool = False

    def folder(self, kind: str, seed: int) -> Path:
        """Where this run's bundles of ``kind`` ("bundles", "retrained") for ``seed`` go."""
        tagged = tag(self.given)
        return (
            self.out / kind / tagged / f"seed{seed}" if tagged else self.out / kind / f"seed{seed}"
        )

    def train(
        self,
        csv: Path,
        target: Path,
        *,
        model: str,
        seed: int,
        time_of_day: TimeOfDay | None = None,
    ) -> Bundle:
        """A bundle named ``model`` trained on ``csv`` into ``target`` (``time_of_day``: over
        the run's options)."""
        from sensord.training.train import train_bundle

        options = train_options(self.given, model=model, seed=seed, time_of_day=time_of_day)
        return train_bundle(csv, target, options).bundle


def trained_bundle(
    training: Training, name: str, *, seed: int, model: str, rows: Callable[[], Path]
) -> tuple[Bundle, float]:
    """The bundle of file ``name`` and ``seed``: the one a previous run left (with
    ``reuse``), else one named ``model`` trained on the CSV ``rows`` writes; and the seconds
    training took (0 when reused)."""
    target = training.folder("bundles", seed) / name.removesuffix(".csv")
    if training.reuse:
        try:
            return load_bundle(target), 0.0
        except BundleError:
            pass
    csv = rows()
    started = time.perf_counter()
    bundle = training.train(csv, target, model=model, seed=seed)
    return bundle, time.perf_counter() - started


@dataclass(frozen=True)
class Replayed:
    """A variant's replay of one file, and the retrains it made on the way (none unless
    the variant retrains)."""

    variant: Variant
    result: ReplayResult
    retrains: tuple[Retrain, ...] = ()

    @property
    def retrain_seconds(self) -> float:
        return sum(r.seconds for r in self.retrains)


def replays(
    path: Path,
    bundle: Bundle,
    variants: Sequence[Variant],
    *,
    training: Training,
    seed: int,
    name: str,
) -> Iterator[Replayed]:
    """The CSV at ``path`` (file ``name``) replayed through a fresh core per variant, as the
    daemon would have scored it (a row not after its stream's last one dropped, as a late
    reading is); a variant that retrains retrains causally with ``training`` at ``seed``."""
    for variant in variants:
        pipeline = variant.pipeline(bundle)
        if variant.retrain is None:
            yield Replayed(variant, replay(path, pipeline, out_of_order="drop"))
            continue
        work = training.folder("retrained", seed) / variant.name / name.removesuffix(".csv")
        train = functools.partial(
            training.train, model=bundle.manifest.name, seed=seed, time_of_day=time_of_day(bundle)
        )
        result, retrains = continual_replay(
            path, pipeline, every=variant.retrain, train=train, work=work, gate=variant.gate
        )
        yield Replayed(variant, result, retrains)


RunRetrains = Mapping[str, Mapping[str, Sequence[Retrain]]]  # "seed/file" -> variant -> made


@dataclass
class RetrainTotal:
    """A variant's retrains over every file and seed: how many, how many were skipped and
    refused (by the gate), their seconds (training, judging and the swap) in all and the
    longest."""

    retrains: int = 0
    skipped: int = 0
    refused: int = 0
    seconds: float = 0.0
    longest_s: float = 0.0

    def add(self, made: Sequence[Retrain]) -> None:
        self.retrains += len(made)
        self.skipped += sum(1 for r in made if r.skipped)
        self.refused += sum(1 for r in made if r.decision == "refused")
        self.seconds += sum(r.seconds for r in made)
        self.longest_s = max(self.longest_s, *(r.seconds for r in made))


def retrain_totals(runs: RunRetrains) -> dict[str, RetrainTotal]:
    """Per variant that retrains, its total over ``runs``."""
    totals: dict[str, RetrainTotal] = {}
    for by_variant in runs.values():
        for variant, made in by_variant.items():
            if made:
                totals.setdefault(variant, RetrainTotal()).add(made)
    return totals


def retrain_note(by_variant: Mapping[str, Sequence[Retrain]]) -> str:
    """What a file's retrains cost, for its progress line ("" when no variant retrains)."""
    return "".join(
        f", {variant} retrained {len(made)} times "
        f"({sum(r.decision == 'promoted' for r in made)} swapped in) "
        f"in {sum(r.seconds for r in made):.1f} s"
        for variant, made in by_variant.items()
        if made
    )


def print_retrains(runs: RunRetrains, *, per_file: bool) -> None:
    """Each variant's retrains in all (and each file's, with ``per_file``)."""
    for key, by_variant in runs.items():
        if per_file and retrain_note(by_variant):
            print(f"{key}{retrain_note(by_variant)}")
    for variant, total in retrain_totals(runs).items():
        print(
            f"\n{variant}: {total.retrains} retrains ({total.skipped} skipped, "
            f"{total.refused} refused) in "
            f"{total.seconds:.0f} s, the longest {total.longest_s:.1f} s"
        )


def retrains_json(runs: RunRetrains) -> dict[str, object]:
    """The retrains for a run's JSON: each variant's total, and each file's retrains."""
    return {
        "retrains": {v: dataclasses.asdict(t) for v, t in retrain_totals(runs).items()},
        "retrains_per_file": {
            key: {v: [r.record() for r in made] for v, made in by_variant.items() if made}
            for key, by_variant in runs.items()
            if retrain_note(by_variant)
        },
    }


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
