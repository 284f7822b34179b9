"""SKAB with the daemon's own code: ``python benchmarks/skab.py DATA_DIR``.

DATA_DIR is SKAB's ``data`` folder (or a folder holding it): ``<category>/<n>.csv`` files,
``;``-separated, a ``datetime`` column, the pump's eight sensors, and the labels ``anomaly``
and ``changepoint`` (never an input). ``anomaly-free`` is left out, as SKAB's leaderboard
does. For every file, SKAB's protocol:

1. train a bundle with sensord's trainer (default options, ``--seed``) on the file's first
   400 rows only, the eight sensors as the features of one stream;
2. replay the whole file through the daemon's core (``sensord replay``), once per detector
   and model: the rows before 400 are the daemon's own start on this pump, the rows from 400
   on are scored;
3. score the daemon's ``alert`` column (1 while an alert is up) on the rows from 400 with
   benchmarks/skabscore.py: F1 / FAR / MAR over all files' rows, and the changepoints (where
   the alert starts or ends) by SKAB's NAB variant.

``--variant`` adds variants of the settings (benchmarks/variants.py: channel ablations,
neighbouring settings, ``model=persistence`` for "repeat the last value" in place of the
network, same bundle and scaling); ``--seeds`` trains and scores several seeds (bundles are
kept in ``OUT/bundles/seed<N>`` and reused with ``--reuse``). ``--reference t2`` also runs
Hotelling's T² as SKAB's leaderboard runs it, to check this protocol and scorer against its
published figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.nab import engine_of, variants_of
from benchmarks.skabscore import PROFILES, TRAIN_ROWS, WINDOW_S, Confusion, CpScore
from benchmarks.variants import Variant
from sensord.core.bundle import Bundle, load_bundle
from sensord.core.detect import DETECTOR_KINDS, DetectorSettings
from sensord.core.pipeline import Pipeline
from sensord.core.timestamps import parse_timestamp
from sensord.errors import BundleError
from sensord.offline.replay import replay

F64 = npt.NDArray[np.float64]
LABELS = ("anomaly", "changepoint")


@dataclass(frozen=True)
class SkabFile:
    name: str  # category/n.csv
    features: tuple[str, ...]
    timestamps: F64
    values: F64  # [n, 8]
    anomaly: npt.NDArray[np.int64]
    changepoint: npt.NDArray[np.int64]


@dataclass
class FileRun:
    name: str
    seed: int
    rows: int
    train_seconds: float
    flags: dict[str, list[int]] = field(default_factory=dict)  # variant -> alert column


def read_skab(path: Path, name: str) -> SkabFile:
    lines = path.read_text().splitlines()
    header = lines[0].split(";")
    if header[0] != "datetime":
        raise ValueError(f"{path}: not a SKAB file (header {header})")
    cells = [line.split(";") for line in lines[1:] if line.strip()]
    data = np.asarray([[float(c) for c in row[1:]] for row in cells])
    # The anomaly-free file has no label columns: every row of it is normal.
    labelled = header[-2:] == list(LABELS)
    if not labelled:
        data = np.concatenate([data, np.zeros((len(data), 2))], axis=1)
    return SkabFile(
        name=name,
        features=tuple(header[1:-2] if labelled else header[1:]),
        timestamps=np.asarray([parse_timestamp(row[0]) for row in cells]),
        values=data[:, :-2],
        anomaly=data[:, -2].astype(np.int64),
        changepoint=data[:, -1].astype(np.int64),
    )


def find_files(root: Path) -> list[tuple[str, Path]]:
    base = root / "data" if (root / "data").is_dir() else root
    return [
        (p.relative_to(base).as_posix(), p)
        for p in sorted(base.glob("*/*.csv"), key=lambda q: (q.parent.name, _number(q.stem)))
        if p.parent.name != "anomaly-free"
    ]


def _number(stem: str) -> tuple[int, str]:
    return (int(stem), "") if stem.isdigit() else (1 << 30, stem)


def write_csv(path: Path, skab: SkabFile, rows: slice) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["timestamp," + ",".join(skab.features)]
    for ts, values in zip(skab.timestamps[rows], skab.values[rows], strict=True):
        lines.append(f"{ts:.3f}," + ",".join(repr(float(v)) for v in values))
    path.write_text("\n".join(lines) + "\n")


def bundle_for(skab: SkabFile, out: Path, seed: int, reuse: bool) -> tuple[Bundle, float]:
    """Train on the first TRAIN_ROWS rows (or reuse the bundle a previous run left)."""
    target = out / "bundles" / f"seed{seed}" / skab.name.removesuffix(".csv")
    if reuse:
        try:
            return load_bundle(target), 0.0
        except BundleError:
            pass
    from sensord.training.options import FitOptions, TrainOptions
    from sensord.training.train import train_bundle

    train_csv = out / "train" / skab.name
    write_csv(train_csv, skab, slice(0, TRAIN_ROWS))
    name = skab.name.removesuffix(".csv").replace("/", "-")
    started = time.perf_counter()
    report = train_bundle(
        train_csv, target, TrainOptions(name=name, out_of_order="drop", fit=FitOptions(seed=seed))
    )
    return report.bundle, time.perf_counter() - started


def alert_column(skab: SkabFile, replay_csv: Path, pipeline: Pipeline) -> list[int]:
    """The daemon's ``alert`` per row: 1 while an alert is up (a dropped row keeps the
    previous state, as the daemon's published state does)."""
    result = replay(replay_csv, pipeline, out_of_order="drop")
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
    out: Path,
    variants: Sequence[Variant],
    seed: int,
    reuse: bool,
) -> FileRun:
    skab = read_skab(path, name)
    bundle, seconds = bundle_for(skab, out, seed, reuse)
    replay_csv = out / "replay" / name
    write_csv(replay_csv, skab, slice(0, len(skab.timestamps)))
    run = FileRun(name, seed, len(skab.timestamps), seconds)
    for variant in variants:
        pipeline = Pipeline(engine_of(variant.model, bundle), variant.settings)
        run.flags[variant.name] = alert_column(skab, replay_csv, pipeline)
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("data", type=Path, help="SKAB's data folder: <category>/<n>.csv")
    parser.add_argument("--out", type=Path, default=Path("skab-results"))
    parser.add_argument("--json", type=Path, default=None, help="write the figures as JSON")
    parser.add_argument(
        "--detectors", default=DetectorSettings().kind, help=f"from {', '.join(DETECTOR_KINDS)}"
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        help="NAME[:key=value,...] (benchmarks/variants.py); repeatable",
    )
    parser.add_argument("--reference", choices=["t2"], default=None)
    parser.add_argument("--seeds", default="0", help="training seeds, comma-separated")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--only", default=None, help="only files whose path contains this")
    parser.add_argument(
        "--reuse", action="store_true", help="reuse bundles a previous run left in --out"
    )
    args = parser.parse_args(argv)
    found = [(n, p) for n, p in find_files(args.data) if not args.only or args.only in n]
    if not found:
        print(f"no SKAB files under {args.data}", file=sys.stderr)
        return 1
    try:
        variants = variants_of(args.detectors, args.variant)
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError as exc:
        print(f"skab.py: {exc}", file=sys.stderr)
        return 1
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = [
            pool.submit(
                run_file, p, n, out=args.out, variants=variants, seed=seed, reuse=args.reuse
            )
            for seed in seeds
            for n, p in found
        ]
        runs = [f.result() for f in futures]
    files = {n: read_skab(p, n) for n, p in found}
    names = [v.name for v in variants]
    if args.reference == "t2":
        for run in runs:
            run.flags["t2 (reference)"] = t2_flags(files[run.name])
        names.append("t2 (reference)")
    by_seed = {s: score([r for r in runs if r.seed == s], files, names) for s in seeds}
    by_category = {
        s: score_by([r for r in runs if r.seed == s], files, names, "category") for s in seeds
    }
    by_file = {s: score_by([r for r in runs if r.seed == s], files, names, "file") for s in seeds}
    seconds = time.perf_counter() - started
    print(f"{len(found)} files x {len(seeds)} seeds, {seconds:.0f} s with {args.jobs} jobs")
    print_table(by_seed)
    categories = sorted(by_category[seeds[0]])
    if len(categories) > 1:
        for category in categories:
            print(f"\n[{category}]", end="")
            print_table({s: by_category[s][category] for s in seeds})
    print(f"\n{names[0]}: per file (F1 / FAR % / MAR % / CP std, mean of seeds)")
    for name in sorted(by_file[seeds[0]], key=lambda n: (n.split("/")[0], _number(Path(n).stem))):
        rows = [by_file[s][name][names[0]].row() for s in seeds]
        cells = " / ".join(
            f"{np.mean([r[k] for r in rows]):.2f}" for k in ("f1", "far", "mar", "nab_standard")
        )
        print(f"  {name:<14} {cells}")
    for variant in names:
        if variant != "t2 (reference)":
            print_spans(runs, files, variant)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "seconds": seconds,
            "files": sorted(files),
            "train_seconds": {f"{r.seed}/{r.name}": r.train_seconds for r in runs},
            "seeds": {
                str(seed): {v: sc.row() for v, sc in results.items()}
                for seed, results in by_seed.items()
            },
            "categories": {
                str(seed): {
                    category: {v: sc.row() for v, sc in results.items()}
                    for category, results in groups.items()
                }
                for seed, groups in by_category.items()
            },
            "per_file": {
                str(seed): {
                    name: {v: sc.row() for v, sc in results.items()}
                    for name, results in groups.items()
                }
                for seed, groups in by_file.items()
            },
            "faults": {
                variant: [
                    {"seed": run.seed, **dataclasses.asdict(span)}
                    for run in runs
                    for span in fault_spans(files[run.name], run.flags[variant])
                ]
                for variant in names
                if variant != "t2 (reference)"
            },
        }
        args.json.write_text(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
