"""SKAB with the daemon's own code: ``python benchmarks/skab.py DATA_DIR``.

DATA_DIR is SKAB's ``data`` folder (or a folder holding it): ``<category>/<n>.csv`` files,
``;``-separated, a ``datetime`` column, the pump's eight sensors, and the labels ``anomaly``
and ``changepoint`` (never an input). ``anomaly-free`` is left out, as SKAB's leaderboard
does. For every file, SKAB's protocol:

1. train a bundle with sensord's trainer (default options or ``--train``'s, each seed of
   ``--seeds``) on the file's first 400 rows only, the eight sensors as the features of one
   stream;
2. replay the whole file through the daemon's core (``sensord replay``), once per detector
   and model: the rows before 400 are the daemon's own start on this pump, the rows from 400
   on are scored;
3. score the daemon's ``alert`` column (1 while an alert is up) on the rows from 400 with
   benchmarks/skabscore.py: F1 / FAR / MAR over all files' rows, and the changepoints (where
   the alert starts or ends) by SKAB's NAB variant.

``--variant`` adds variants of the settings (benchmarks/variants.py: channel ablations,
neighbouring settings, ``model=persistence`` for "repeat the last value" in place of the
network, same bundle and scaling; ``retrain=N`` retrains every N rows on the rows before,
causally: causalretrain.py); ``--seeds`` trains and scores several seeds (bundles are kept in
``OUT/bundles[/<options>]/seed<N>`` and reused with ``--reuse``). ``--reference t2`` also runs
Hotelling's T² as SKAB's leaderboard runs it, to check this protocol and scorer against its
published figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.causalretrain import Retrain
from benchmarks.runner import (
    Training,
    add_arguments,
    in_pool,
    plan,
    print_retrains,
    replays,
    retrains_json,
    trained_bundle,
    write_json,
)
from benchmarks.skabdata import SkabFile, file_order, find_files, read_skab, write_csv
from benchmarks.skabscore import PROFILES, TRAIN_ROWS, WINDOW_S, Confusion, CpScore
from benchmarks.trainoptions import Given
from benchmarks.variants import Variant
from sensord.core.bundle import Bundle
from sensord.offline.replay import ReplayResult


@dataclass
class FileRun:
    name: str
    seed: int
    rows: int
    train_seconds: float
    flags: dict[str, list[int]] = field(default_factory=dict)  # variant -> alert column
    retrains: dict[str, tuple[Retrain, ...]] = field(default_factory=dict)  # retrain=N's


def bundle_for(
    skab: SkabFile, out: Path, seed: int, reuse: bool, *, given: Given | None = None
) -> tuple[Bundle, float]:
    """Train on the first TRAIN_ROWS rows (or reuse the bundle a previous run left), with
    the trainer's defaults or ``given`` (``--train``) over them."""
    training = Training(out, given or {}, reuse)

    def first_rows() -> Path:
        train_csv = training.out / "train" / skab.name
        write_csv(train_csv, skab, slice(0, TRAIN_ROWS))
        return train_csv

    model = skab.name.removesuffix(".csv").replace("/", "-")
    return trained_bundle(training, skab.name, seed=seed, model=model, rows=first_rows)


def alert_column(result: ReplayResult) -> list[int]:
    """The daemon's ``alert`` per row: 1 while an alert is up (a dropped row keeps the
    previous state, as the daemon's published state does)."""
    column, state = [], 0
    for outcome in result.outcomes:
        if outcome is not None:
            state = int(outcome.alert)
        column.append(state)
    return column


def run_file(
    path: Path,
    name: str,
    *,
    training: Training,
    variants: Sequence[Variant],
    seed: int,
) -> FileRun:
    skab = read_skab(path, name)
    bundle, seconds = bundle_for(skab, training.out, seed, training.reuse, given=training.given)
    replay_csv = training.out / "replay" / name
    write_csv(replay_csv, skab, slice(0, len(skab.timestamps)))
    run = FileRun(name, seed, len(skab.timestamps), seconds)
    for done in replays(replay_csv, bundle, variants, training=training, seed=seed, name=name):
        run.flags[done.variant.name] = alert_column(done.result)
        run.retrains[done.variant.name] = done.retrains
    return run


@dataclass
class Scores:
    confusion: Confusion = field(default_factory=Confusion)
    changepoints: CpScore = field(default_factory=CpScore)

    def add(self, skab: SkabFile, flags: npt.ArrayLike) -> None:
        test = slice(TRAIN_ROWS, None)
        flags = np.asarray(flags)[test]
        self.confusion.add(skab.anomaly[test], flags)
        self.changepoints.add_file(skab.timestamps[test], skab.changepoint[test], flags)

    def row(self) -> dict[str, float | int]:
        c, cp = self.confusion, self.changepoints
        return {
            "f1": c.f1,
            "far": c.far,
            "mar": c.mar,
            **{f"nab_{p.name}": cp.normalized(p.name) for p in PROFILES},
            "missed_cps": cp.missed,
            "windows": cp.windows,
            "false_cps": cp.false_positives,
            "mean_delay_s": round(float(np.mean(cp.delays)), 1) if cp.delays else float("nan"),
        }


def t2_flags(skab: SkabFile) -> list[int]:
    """Hotelling's T² as SKAB's leaderboard runs it: standardise on the training rows
    (constant columns left out), T² under the training covariance, a trailing median of 5,
    flagged above twice the 0.999 upper control limit of the F distribution."""
    from scipy import stats

    train = skab.values[:TRAIN_ROWS]
    keep = train.std(axis=0) > 0
    train, test = train[:, keep], skab.values[TRAIN_ROWS:, keep]
    mean, std = train.mean(axis=0), train.std(axis=0)
    x_train, x_test = (train - mean) / std, (test - mean) / std
    inverse = np.linalg.inv(np.cov(x_train.T))
    t2 = np.einsum("ij,jk,ik->i", x_test, inverse, x_test)
    median = np.full(len(t2), np.nan)
    for i in range(4, len(t2)):
        median[i] = np.median(t2[i - 4 : i + 1])
    m, n = x_train.shape[1], len(x_train)
    grid = np.linspace(0, 15, 10000)
    c_alpha = grid[stats.f.cdf(grid, m, n - m) < 0.999][-1]
    ucl = m * (n - 1) * (n + 1) / (n * (n - m)) * c_alpha
    flagged = np.where(np.isnan(median), 0, median > 2 * ucl).astype(int)
    return [0] * TRAIN_ROWS + [int(f) for f in flagged]


def score(
    runs: list[FileRun], files: dict[str, SkabFile], variants: list[str]
) -> dict[str, Scores]:
    results = {v: Scores() for v in variants}
    for run in runs:
        for variant in variants:
            results[variant].add(files[run.name], run.flags[variant])
    return results


def score_by(
    runs: list[FileRun], files: dict[str, SkabFile], variants: list[str], key: str
) -> dict[str, dict[str, Scores]]:
    """Scores per group of files: ``key`` "category" (valve1, valve2, ...) or "file"."""
    groups: dict[str, list[FileRun]] = {}
    for run in runs:
        group = run.name.split("/", 1)[0] if key == "category" else run.name
        groups.setdefault(group, []).append(run)
    return {group: score(members, files, variants) for group, members in groups.items()}


@dataclass(frozen=True)
class FaultSpan:
    """How one labelled fault was alerted: seconds from its start to the first alert
    (NaN: never), the share of it alerted, and how long an alert stayed up after its end
    (0: over by then; ``None`` when the file ends within a minute of it, so it cannot say;
    ``math.inf``: still up when the file ends)."""

    file: str
    fault_s: float
    delay_s: float
    covered: float
    overhang_s: float | None


def fault_spans(skab: SkabFile, flags: npt.ArrayLike) -> list[FaultSpan]:
    alert = np.asarray(flags)
    ts, labels = skab.timestamps, skab.anomaly
    edges = np.diff(np.concatenate([[0], labels, [0]]))
    spans = []
    for first, stop in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True):
        inside = alert[first:stop] == 1
        hit = np.flatnonzero(inside)
        delay = float(ts[first + hit[0]] - ts[first]) if hit.size else math.nan
        after = alert[stop:]
        overhang: float | None
        if len(after) == 0 or ts[-1] - ts[stop - 1] < WINDOW_S:
            overhang = None
        elif not after[0]:
            overhang = 0.0
        else:
            calm = np.flatnonzero(after == 0)
            overhang = float(ts[stop + calm[0]] - ts[stop - 1]) if calm.size else math.inf
        spans.append(
            FaultSpan(
                skab.name, float(ts[stop - 1] - ts[first]), delay, float(inside.mean()), overhang
            )
        )
    return spans


def print_spans(runs: list[FileRun], files: dict[str, SkabFile], variant: str) -> None:
    """Per file: the fault's length, how soon it was alerted, how much of it, and how long
    the alert outlived it (every seed)."""
    print(f"\n{variant}: each fault's alert (per seed: delay s / share alerted / after its end s)")
    by_file: dict[str, list[FaultSpan]] = {}
    for run in sorted(runs, key=lambda r: (r.name, r.seed)):
        by_file.setdefault(run.name, []).extend(fault_spans(files[run.name], run.flags[variant]))
    late = 0
    for name, spans in by_file.items():
        cells = " | ".join(
            f"{sp.delay_s:5.0f} / {sp.covered:4.2f} / {_overhang(sp.overhang_s)}" for sp in spans
        )
        late += sum(1 for sp in spans if sp.overhang_s is not None and sp.overhang_s > WINDOW_S)
        print(f"  {name:<14} fault {spans[0].fault_s:5.0f} s   {cells}")
    print(f"  alerts up more than {WINDOW_S:.0f} s after their fault ended: {late}")


def _overhang(value: float | None) -> str:
    if value is None:
        return "  n/a"
    return "  end" if math.isinf(value) else f"{value:5.0f}"


def print_table(by_seed: dict[int, dict[str, Scores]]) -> None:
    """Per variant, the mean over seeds; and the F1 and changepoint score of each seed."""
    seeds = sorted(by_seed)
    head = "variant", "F1", "FAR %", "MAR %", "NAB std", "lowFP", "lowFN", "missed", "false"
    print(
        f"\nmean of seeds {','.join(map(str, seeds))}\n{head[0]:<26}"
        + "".join(f"{h:>9}" for h in head[1:])
        + "   F1 / NAB std by seed"
    )
    for variant in by_seed[seeds[0]]:
        rows = [by_seed[s][variant].row() for s in seeds]

        def mean(key: str, rows: list[dict[str, float | int]] = rows) -> float:
            return float(np.mean([r[key] for r in rows]))

        cells = [
            f"{mean('f1'):.3f}",
            f"{mean('far'):.2f}",
            f"{mean('mar'):.2f}",
            f"{mean('nab_standard'):.2f}",
            f"{mean('nab_low_fp'):.2f}",
            f"{mean('nab_low_fn'):.2f}",
            f"{mean('missed_cps'):.1f}/{rows[0]['windows']}",
            f"{mean('false_cps'):.1f}",
        ]
        per_seed = " | ".join(f"{r['f1']:.2f} / {r['nab_standard']:.1f}" for r in rows)
        print(f"{variant:<26}" + "".join(f"{c:>9}" for c in cells) + f"   {per_seed}")


REFERENCE = "t2 (reference)"


@dataclass(frozen=True)
class Figures:
    """A run's scores, per seed: over every file, per category and per file."""

    by_seed: dict[int, dict[str, Scores]]
    by_category: dict[int, dict[str, dict[str, Scores]]]
    by_file: dict[int, dict[str, dict[str, Scores]]]

    @classmethod
    def of(
        cls, runs: list[FileRun], files: dict[str, SkabFile], names: list[str], seeds: list[int]
    ) -> Figures:
        mine = {s: [r for r in runs if r.seed == s] for s in seeds}
        return cls(
            by_seed={s: score(mine[s], files, names) for s in seeds},
            by_category={s: score_by(mine[s], files, names, "category") for s in seeds},
            by_file={s: score_by(mine[s], files, names, "file") for s in seeds},
        )


def print_figures(figures: Figures, names: list[str], seeds: list[int]) -> None:
    """Every variant's table, then each category's when there are several, then the first
    variant's per file."""
    print_table(figures.by_seed)
    categories = sorted(figures.by_category[seeds[0]])
    if len(categories) > 1:
        for category in categories:
            print(f"\n[{category}]", end="")
            print_table({s: figures.by_category[s][category] for s in seeds})
    print(f"\n{names[0]}: per file (F1 / FAR % / MAR % / CP std, mean of seeds)")
    by_file = figures.by_file
    order = sorted(by_file[seeds[0]], key=lambda n: (n.split("/")[0], file_order(Path(n).stem)))
    for name in order:
        rows = [by_file[s][name][names[0]].row() for s in seeds]
        cells = " / ".join(
            f"{np.mean([r[k] for r in rows]):.2f}" for k in ("f1", "far", "mar", "nab_standard")
        )
        print(f"  {name:<14} {cells}")


def to_json(
    figures: Figures,
    runs: list[FileRun],
    files: dict[str, SkabFile],
    names: list[str],
    seconds: float,
) -> dict[str, object]:
    def rows(results: dict[str, Scores]) -> dict[str, dict[str, float | int]]:
        return {v: sc.row() for v, sc in results.items()}

    return {
        "seconds": seconds,
        "files": sorted(files),
        "train_seconds": {f"{r.seed}/{r.name}": r.train_seconds for r in runs},
        **retrains_json({f"{r.seed}/{r.name}": r.retrains for r in runs}),
        "seeds": {str(seed): rows(results) for seed, results in figures.by_seed.items()},
        "categories": {
            str(seed): {category: rows(results) for category, results in groups.items()}
            for seed, groups in figures.by_category.items()
        },
        "per_file": {
            str(seed): {name: rows(results) for name, results in groups.items()}
            for seed, groups in figures.by_file.items()
        },
        "faults": {
            variant: [
                {"seed": run.seed, **dataclasses.asdict(span)}
                for run in runs
                for span in fault_spans(files[run.name], run.flags[variant])
            ]
            for variant in names
            if variant != REFERENCE
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("data", type=Path, help="SKAB's data folder: <category>/<n>.csv")
    parser.add_argument("--reference", choices=["t2"], default=None)
    add_arguments(parser, out=Path("skab-results"))
    args = parser.parse_args(argv)
    found = [(n, p) for n, p in find_files(args.data) if not args.only or args.only in n]
    planned = plan(args, "skab.py", found, args.data)
    if planned is None:
        return 1
    seeds, names = planned.seeds, planned.names
    print(planned.header("skab.py", len(found)), flush=True)
    training = Training(args.out, planned.train, args.reuse)
    per_file = functools.partial(run_file, training=training, variants=planned.variants)
    calls = [functools.partial(per_file, path, name, seed=s) for s in seeds for name, path in found]
    runs = list(in_pool(calls, args.jobs))
    files = {n: read_skab(p, n) for n, p in found}
    if args.reference == "t2":
        for run in runs:
            run.flags[REFERENCE] = t2_flags(files[run.name])
        names.append(REFERENCE)
    figures = Figures.of(runs, files, names, seeds)
    seconds = planned.seconds()
    print(f"{len(found)} files x {len(seeds)} seeds, {seconds:.0f} s with {args.jobs} jobs")
    print_figures(figures, names, seeds)
    for variant in names:
        if variant != REFERENCE:
            print_spans(runs, files, variant)
    print_retrains({f"seed {r.seed} {r.name}": r.retrains for r in runs}, per_file=True)
    write_json(args.json, {**planned.to_json(), **to_json(figures, runs, files, names, seconds)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
