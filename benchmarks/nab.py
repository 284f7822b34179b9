"""NAB with the daemon's own code: ``python benchmarks/nab.py --nab-root DIR``.

For every series under ``DIR/data`` (NAB layout: ``data/<category>/<file>.csv``,
``labels/combined_windows.json``, ``profiles.json``) and every training seed:

1. train a bundle with sensord's trainer on the probationary rows only (the first
   ``min(floor(0.15 n), 750)`` rows; NAB's rule), one configuration for every file (the
   trainer's defaults, or ``--train``'s options over them; bundles are kept in
   ``OUT/bundles[/<options>]/seed<N>`` and reused with ``--reuse``);
2. replay the whole series through the daemon's core (``sensord replay``: state carried step
   to step, the score of a row uses only rows up to it) once per variant: each detector of
   ``--detectors`` at its defaults (the daemon's ``channels``, or a baseline of
   benchmarks/baselines/), and each ``--variant`` (benchmarks/variants.py: channel
   ablations, neighbouring settings, "repeat the last value" in place of the network, and
   ``retrain=N``: retrained every N rows on the rows before, causally: causalretrain.py);
3. write NAB result files ``OUT/seed<N>/<variant>/<category>/<file>.csv`` (the data file's
   rows, ``anomaly_score``, and the daemon's own ``alert``, ``raised`` and ``onset``
   columns: 1 while an alert is up; on the row an alert is raised; on the row of a raised
   or an updated event, a new onset inside an alert, which an operator receives too);
4. score them with sensord/offline/nabscore.py: per variant and profile, the swept-threshold
   score of ``anomaly_score``, and the score of each binary column as it is (no threshold chosen).

Rows whose timestamp is not after an earlier row's (a clock that jumped back) are dropped as
the daemon drops a late reading: no score (0 in the result file), and counted.
"""

from __future__ import annotations

import argparse
import csv
import functools
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.causalretrain import Retrain
from benchmarks.runner import (
    Training,
    add_arguments,
    in_pool,
    plan,
    print_retrains,
    replays,
    retrain_note,
    retrains_json,
    trained_bundle,
    write_json,
)
from benchmarks.trainoptions import Given
from benchmarks.variants import Variant
from sensord.core.bundle import Bundle
from sensord.offline.nabscore import (
    CategoryScore,
    CorpusScore,
    ScoredFile,
    category_scores,
    load_profiles,
    load_windows,
    prepare,
    probation_rows,
    score_all_profiles,
)

DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "shared" / "nab"
COLUMNS = ("score", "onset", "raised", "alert")
Results = dict[str, dict[str, dict[str, CorpusScore]]]  # variant -> column -> profile
# variant -> profile -> category, of the raised alerts (what the targets are about)
Categories = dict[str, dict[str, dict[str, CategoryScore]]]


@dataclass(frozen=True)
class FileRun:
    name: str  # category/file.csv
    seed: int
    rows: int
    probation: int
    dropped: int
    train_seconds: float
    replay_seconds: dict[str, float]
    timestamps: list[float]
    columns: dict[str, dict[str, list[float]]]  # variant -> column -> values
    retrains: dict[str, tuple[Retrain, ...]]  # variant -> its retrains (retrain=N)


def bundle_for(
    path: Path, name: str, out: Path, seed: int, reuse: bool, *, given: Given | None = None
) -> tuple[Bundle, float]:
    """Train on the probationary rows (or reuse the bundle a previous run left), with the
    trainer's defaults or ``given`` (``--train``) over them."""
    training = Training(out, given or {}, reuse)

    def probation() -> Path:
        lines = path.read_text().splitlines()
        probation_csv = training.out / "probation" / name
        probation_csv.parent.mkdir(parents=True, exist_ok=True)
        probation_csv.write_text("\n".join(lines[: probation_rows(len(lines) - 1) + 1]) + "\n")
        return probation_csv

    model = Path(name).stem.replace(" ", "_")[:128]
    return trained_bundle(training, name, seed=seed, model=model, rows=probation)


def run_file(
    path: Path, root: Path, *, training: Training, variants: Sequence[Variant], seed: int
) -> FileRun:
    name = path.relative_to(root / "data").as_posix()
    out, reuse = training.out, training.reuse
    bundle, train_seconds = bundle_for(path, name, out, seed, reuse, given=training.given)
    columns: dict[str, dict[str, list[float]]] = {}
    seconds: dict[str, float] = {}
    retrains: dict[str, tuple[Retrain, ...]] = {}
    timestamps: list[float] = []
    dropped = rows = 0
    for done in replays(path, bundle, variants, training=training, seed=seed, name=name):
        variant, result = done.variant.name, done.result
        seconds[variant] = result.seconds
        columns[variant] = _columns(result.outcomes)
        retrains[variant] = done.retrains
        _write_result(training.out / f"seed{seed}" / variant / name, result, columns[variant])
        timestamps = [float(t) for t in result.series.timestamps]
        dropped, rows = result.series.out_of_order, len(result.series.rows)
    return FileRun(
        name,
        seed,
        rows,
        probation_rows(rows),
        dropped,
        train_seconds,
        seconds,
        timestamps,
        columns,
        retrains,
    )


def _columns(outcomes: tuple[object, ...]) -> dict[str, list[float]]:
    from sensord.core.sample import Outcome

    score, alert, raised, onset = [], [], [], []
    state = 0.0
    for outcome in outcomes:
        event = None
        if isinstance(outcome, Outcome):
            state = float(outcome.alert)
            event = outcome.event.event if outcome.event is not None else None
            score.append(0.0 if np.isnan(outcome.score) else float(outcome.score))
        else:
            score.append(0.0)
        alert.append(state)
        raised.append(float(event == "raised"))
        onset.append(float(event in ("raised", "updated")))
    return {"score": score, "onset": onset, "raised": raised, "alert": alert}


def _write_result(path: Path, result: object, columns: dict[str, list[float]]) -> None:
    from sensord.offline.replay import ReplayResult

    assert isinstance(result, ReplayResult)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*result.series.header, "anomaly_score", "alert", "raised", "onset"])
        for i, cells in enumerate(result.series.rows):
            writer.writerow(
                [
                    *cells,
                    f"{columns['score'][i]:.6f}",
                    int(columns["alert"][i]),
                    int(columns["raised"][i]),
                    int(columns["onset"][i]),
                ]
            )


def score_runs(
    runs: list[FileRun], variants: Sequence[str], root: Path
) -> tuple[Results, Categories]:
    """variant -> column -> profile -> score, for the runs of one seed; and the raised
    alerts' score per category."""
    windows = load_windows(root / "labels" / "combined_windows.json")
    profiles = load_profiles(root / "profiles.json")
    results: Results = {}
    categories: Categories = {}
    for variant in variants:
        prepared: dict[str, list[ScoredFile]] = {column: [] for column in COLUMNS}
        for run in runs:
            stamps, spans = np.asarray(run.timestamps), windows.get(run.name, [])
            for column in COLUMNS:
                values = np.asarray(run.columns[variant][column])
                prepared[column].append(prepare(run.name, stamps, values, spans))
        results[variant] = {
            column: score_all_profiles(
                prepared[column], profiles, threshold=None if column == "score" else 1.0
            )
            for column in COLUMNS
        }
        categories[variant] = {
            name: category_scores(prepared["raised"], results[variant]["raised"][name], profile)
            for name, profile in profiles.items()
        }
    return results, categories


def print_categories(by_seed: dict[int, Categories]) -> None:
    """The raised alerts' standard score per category (mean of seeds, each seed shown) and
    the worst category with windows; a category without windows shows its false alerts."""
    seeds = sorted(by_seed)
    first = by_seed[seeds[0]]
    for variant, profiles in first.items():
        print(f"\n{variant}: raised alerts per category, standard profile (mean; by seed)")
        worst: tuple[str, float] = ("", math.inf)
        for category in profiles["standard"]:
            cells = [by_seed[s][variant]["standard"][category] for s in seeds]
            if cells[0].windows:
                values = [c.normalized for c in cells]
                mean = float(np.mean(values))
                shown = " / ".join(f"{v:.1f}" for v in values)
                print(f"  {category:<26} {mean:6.1f}   {shown}   ({cells[0].windows} windows)")
                if mean < worst[1]:
                    worst = (category, mean)
            else:
                fps = " / ".join(str(c.false_positives) for c in cells)
                print(f"  {category:<26}   no windows; false alerts {fps}")
        print(f"  worst category: {worst[0]} ({worst[1]:.1f})")


SHORT = {"standard": "std", "reward_low_FP_rate": "lowFP", "reward_low_FN_rate": "lowFN"}


def print_tables(by_seed: dict[int, Results]) -> None:
    """Per variant: the mean over seeds of every column and profile, and the per-seed
    standard score of the onsets (what an operator receives)."""
    first = next(iter(by_seed.values()))
    profiles = list(next(iter(first.values()))["score"])
    heads = [f"{c} {SHORT.get(p, p)}" for c in COLUMNS for p in profiles]
    seeds = sorted(by_seed)
    print(
        f"\nmean of seeds {','.join(map(str, seeds))}\n{'variant':<28}"
        + "".join(f"{h:>12}" for h in heads)
        + "   onset std by seed"
    )
    for variant in first:
        cells = [
            np.mean([by_seed[s][variant][c][p].normalized for s in seeds])
            for c in COLUMNS
            for p in profiles
        ]
        per_seed = " / ".join(
            f"{by_seed[s][variant]['onset']['standard'].normalized:.1f}" for s in seeds
        )
        print(f"{variant:<28}" + "".join(f"{x:>12.1f}" for x in cells) + f"   {per_seed}")


def to_json(
    by_seed: dict[int, Results],
    categories: dict[int, Categories],
    runs: list[FileRun],
    seconds: float,
) -> dict[str, object]:
    return {
        "seconds": seconds,
        **retrains_json({f"{r.seed}/{r.name}": r.retrains for r in runs}),
        "categories": {
            str(seed): {
                variant: {
                    profile: {
                        category: {
                            "normalized": c.normalized,
                            "raw": c.raw,
                            "windows": c.windows,
                            "false_positives": c.false_positives,
                        }
                        for category, c in by_category.items()
                    }
                    for profile, by_category in profiles.items()
                }
                for variant, profiles in by_variant.items()
            }
            for seed, by_variant in categories.items()
        },
        "files": len({r.name for r in runs}),
        "seeds": {
            str(seed): {
                variant: {
                    column: {
                        profile: {
                            "normalized": s.normalized,
                            "threshold": s.threshold,
                            "raw": s.raw,
                            "per_file": s.per_file,
                        }
                        for profile, s in by_profile.items()
                    }
                    for column, by_profile in columns.items()
                }
                for variant, columns in results.items()
            }
            for seed, results in by_seed.items()
        },
        "runs": [
            {
                "file": r.name,
                "seed": r.seed,
                "rows": r.rows,
                "probation": r.probation,
                "dropped_out_of_order": r.dropped,
                "train_seconds": r.train_seconds,
                "replay_seconds": r.replay_seconds,
            }
            for r in runs
        ],
    }


def _progress(run: FileRun) -> str:
    """One line per file as it finishes: its rows, training, replays and retrains."""
    return (
        f"seed {run.seed} {run.name}: {run.rows} rows, trained on {run.probation} in "
        f"{run.train_seconds:.1f} s, replayed {sum(run.replay_seconds.values()):.1f} s"
        + retrain_note(run.retrains)
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--nab-root",
        type=Path,
        default=DEFAULT_ROOT,
        help="NAB layout: data/, labels/combined_windows.json, profiles.json",
    )
    add_arguments(parser, out=Path("nab-results"))
    args = parser.parse_args(argv)
    root = args.nab_root.resolve()
    files = sorted((root / "data").glob("*/*.csv"))
    if args.only:
        files = [f for f in files if args.only in f.as_posix()]
    planned = plan(args, "nab.py", files, root / "data")
    if planned is None:
        return 1
    seeds = planned.seeds
    print(planned.header("nab.py", len(files)), flush=True)
    training = Training(args.out, planned.train, args.reuse)
    task = functools.partial(run_file, root=root, training=training, variants=planned.variants)
    runs = []
    calls = [functools.partial(task, f, seed=s) for s in seeds for f in files]
    for run in in_pool(calls, args.jobs):
        runs.append(run)
        print(_progress(run), flush=True)
    scored = {s: score_runs([r for r in runs if r.seed == s], planned.names, root) for s in seeds}
    by_seed = {seed: results for seed, (results, _) in scored.items()}
    categories = {seed: cats for seed, (_, cats) in scored.items()}
    seconds = planned.seconds()
    print_tables(by_seed)
    print_categories(categories)
    print_retrains({f"{r.seed}/{r.name}": r.retrains for r in runs}, per_file=False)
    print(f"\n{len(files)} files x {len(seeds)} seeds in {seconds:.0f} s with {args.jobs} jobs")
    write_json(args.json, {**planned.to_json(), **to_json(by_seed, categories, runs, seconds)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
