"""The compiled path against the numpy reference on the development files:
``python benchmarks/equivalence.py --nab NAB_ROOT --skab SKAB_DATA``.

The core has two paths for the same arithmetic: the numpy reference (core/step.py,
detect/, alert.py; a wave of streams at a time) and the compiled path (core/compiled/; one
kernel call per batch, stream by stream). For every development file (NAB's, in NAB's
layout under ``NAB_ROOT/data``; SKAB's ``valve1``) a bundle is trained on the rows the
benchmark's protocol allows (as nab.py and skab.py train it; ``--reuse`` takes the bundles
a previous run left in ``--out``), and the whole file is replayed through both paths with
the same settings and bundle, by two engines:

- ``persistence``: "repeat the last value" (exact: its predictions do not depend on how
  readings are batched), in the replay's usual batches (``--batch``);
- ``onnx``: the bundle's graph in onnxruntime, ONE reading per batch, so both paths make the
  same engine calls (in bigger batches the compiled path runs a stream's readings as one
  sequence, whose float32 rounding differs: expected, and not what this checks).

Per file and engine: the rows, whether the alert events are the same (kind, ts, alert id,
channel, reason, driver features; driver shares within the tolerance), the rows whose
status or alert flags differ, the largest score and error differences, the largest relative
difference of ``expected``, the wall time of each path's replay (the compiled one after its
kernel is loaded), and the first difference found (row, column, both values). Exit status 2
when any file differs beyond ``TOLERANCE``.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import nab, skab
from benchmarks.report import machine
from benchmarks.runner import in_pool, write_json
from benchmarks.skabdata import find_files, read_skab, write_csv
from sensord.arrays import F64
from sensord.core.alert import AlertEvent
from sensord.core.bundle import Bundle
from sensord.core.engine import Engine, PersistenceEngine, StepEngine
from sensord.core.pipeline import Pipeline, PipelineSettings
from sensord.core.sample import Outcome, Sample
from sensord.offline.replay import DEFAULT_BATCH, ReplayResult, replay

TOLERANCE = 1e-9
ENGINES: dict[str, Callable[[Bundle], StepEngine]] = {
    "persistence": PersistenceEngine,
    "onnx": Engine,
}
Results = Sequence[Outcome | None]


@dataclass(frozen=True)
class Mismatch:
    """The first difference in a file: its row (0-based, among the file's data rows), the
    column, and what each path gave."""

    row: int
    column: str
    reference: str
    compiled: str


@dataclass(frozen=True)
class Differences:
    rows_differing: int  # status, alert, warming-up or reset flag not the same
    events_equal: bool
    max_score_diff: float
    max_error_diff: float
    max_expected_rel: float
    first: Mismatch | None


@dataclass(frozen=True)
class Comparison:
    corpus: str
    file: str
    seed: int
    engine: str
    batch: int
    rows: int
    scored: int
    events: tuple[int, int]  # reference, compiled
    reference_s: float
    compiled_s: float
    differences: Differences

    @property
    def equal(self) -> bool:
        d = self.differences
        return d.first is None and d.events_equal and d.rows_differing == 0


def differences(reference: Results, compiled: Results) -> Differences:
    """How far the compiled path's outcomes are from the reference's, row by row."""
    ref, com = _columns(reference), _columns(compiled)
    flags = np.zeros(len(reference), dtype=bool)
    for name in FLAGS:
        flags |= ref[name] != com[name]
    gaps = {name: _gap(ref[name], com[name]) for name in ("score", "error")}
    expected = _gap(ref["expected"], com["expected"], relative=True).max(axis=1, initial=0.0)
    events = _event_rows(reference, compiled)
    candidates = [
        (int(np.argmax(flags)), "flags") if flags.any() else None,
        *[_first_over(gaps[name], name) for name in gaps],
        _first_over(expected, "expected"),
        (events[0], "event") if events else None,
    ]
    found = [c for c in candidates if c is not None]
    first = None
    if found:
        row, column = min(found)
        first = Mismatch(row, column, _cell(reference[row], column), _cell(compiled[row], column))
    return Differences(
        rows_differing=int(flags.sum()),
        events_equal=not events,
        max_score_diff=_largest(gaps["score"]),
        max_error_diff=_largest(gaps["error"]),
        max_expected_rel=_largest(expected),
        first=first,
    )


FLAGS = ("status", "alert", "warming_up", "reset")


def _columns(results: Results) -> dict[str, npt.NDArray[np.generic]]:
    """Each outcome field as a column; a row the replay skipped has status "skipped"."""
    n = len(results)
    width = max((len(o.sample.values) for o in results if o is not None), default=0)
    columns: dict[str, npt.NDArray[np.generic]] = {
        "status": np.array([o.status.value if o else "skipped" for o in results], dtype=object),
        "score": np.full(n, np.nan),
        "error": np.full(n, np.nan),
        "expected": np.full((n, width), np.nan),
        **{name: np.zeros(n, dtype=bool) for name in FLAGS[1:]},
    }
    for i, o in enumerate(results):
        if o is None:
            continue
        columns["score"][i], columns["error"][i] = o.score, o.error
        columns["alert"][i], columns["warming_up"][i] = o.alert, o.warming_up
        columns["reset"][i] = o.reset
        if o.expected is not None:
            columns["expected"][i] = o.expected
    return columns


def _gap(a: npt.NDArray[np.generic], b: npt.NDArray[np.generic], *, relative: bool = False) -> F64:
    """|a - b| (relative: over the larger magnitude); 0 where both are NaN, inf where only
    one is."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        gap: F64 = np.abs(x - y)
        if relative:
            gap = np.where(gap == 0, 0.0, gap / np.maximum(np.abs(x), np.abs(y)))
    gap[np.isnan(x) & np.isnan(y)] = 0.0
    gap[np.isnan(x) != np.isnan(y)] = math.inf
    return gap


def _first_over(gap: F64, column: str) -> tuple[int, str] | None:
    over = np.flatnonzero(gap > TOLERANCE)
    return (int(over[0]), column) if over.size else None


def _largest(gap: F64) -> float:
    return float(gap.max()) if gap.size else 0.0


def event_key(event: AlertEvent | None) -> tuple[object, ...] | None:
    """What must be the same of an event (driver shares are compared within TOLERANCE)."""
    if event is None:
        return None
    names = tuple(feature for feature, _ in event.drivers)
    return (event.event, event.ts, event.alert_id, event.channel, event.reason, names)


def _event_rows(reference: Results, compiled: Results) -> list[int]:
    """The rows whose events differ."""
    rows = []
    for i, (r, c) in enumerate(zip(reference, compiled, strict=True)):
        a, b = (o.event if o else None for o in (r, c))
        if event_key(a) != event_key(b):
            rows.append(i)
        elif a is not None and b is not None:
            shares = [abs(x[1] - y[1]) for x, y in zip(a.drivers, b.drivers, strict=True)]
            if max(shares, default=0.0) > TOLERANCE:
                rows.append(i)
    return rows


def _cell(outcome: Outcome | None, column: str) -> str:
    """One outcome's value of ``column``, as the report shows it."""
    if outcome is None:
        return "skipped"
    if column == "flags":
        return ", ".join(f"{name}={getattr(outcome, name)}" for name in FLAGS)
    if column == "event":
        event = outcome.event
        return "none" if event is None else repr((*(event_key(event) or ()), event.drivers))
    value = outcome.expected if column == "expected" else getattr(outcome, column)
    return repr(None if value is None else np.asarray(value).tolist())


def replay_both(csv: Path, bundle: Bundle, engine: str, batch: int) -> list[ReplayResult]:
    """The file through the reference, then the compiled path: same settings, same bundle,
    an engine of its own each."""
    return [
        replay(
            csv,
            Pipeline(ENGINES[engine](bundle), PipelineSettings(), compiled=compiled),
            batch,
            out_of_order="drop",
        )
        for compiled in (False, True)
    ]


def warm_up(bundle: Bundle) -> None:
    """Load (or compile) the kernel before anything is timed: the compiled path's wall time
    is its steady state, as the daemon's is after start-up."""
    pipeline = Pipeline(PersistenceEngine(bundle), PipelineSettings(), compiled=True)
    values = np.zeros(len(bundle.manifest.features))
    pipeline.process([Sample("warm-up", float(t), values) for t in range(3)])


def compare_file(
    corpus: str, name: str, csv: Path, bundle: Bundle, *, seed: int, batch: int
) -> list[Comparison]:
    """Both paths on one file, with each engine."""
    warm_up(bundle)
    found = []
    for engine, size in (("persistence", batch), ("onnx", 1)):
        reference, compiled = replay_both(csv, bundle, engine, size)
        found.append(
            Comparison(
                corpus,
                name,
                seed,
                engine,
                size,
                rows=len(reference.outcomes),
                scored=sum(1 for o in reference.outcomes if o is not None and o.score == o.score),
                events=(len(reference.events), len(compiled.events)),
                reference_s=reference.seconds,
                compiled_s=compiled.seconds,
                differences=differences(reference.outcomes, compiled.outcomes),
            )
        )
    return found


def nab_file(
    path: Path, *, root: Path, out: Path, seed: int, reuse: bool, batch: int
) -> list[Comparison]:
    """A NAB file: its bundle trained on the probationary rows (nab.py's protocol)."""
    name = path.relative_to(root / "data").as_posix()
    bundle, _ = nab.bundle_for(path, name, out / "nab", seed, reuse)
    return compare_file("nab", name, path, bundle, seed=seed, batch=batch)


def skab_file(
    path: Path, name: str, *, out: Path, seed: int, reuse: bool, batch: int
) -> list[Comparison]:
    """A SKAB file: its bundle trained on the first rows (skab.py's protocol), the whole
    file replayed from the CSV skab.py writes of it."""
    data = read_skab(path, name)
    bundle, _ = skab.bundle_for(data, out / "skab", seed, reuse)
    csv = out / "skab" / "replay" / name
    write_csv(csv, data, slice(0, len(data.timestamps)))
    return compare_file("skab", name, csv, bundle, seed=seed, batch=batch)


def calls(args: argparse.Namespace) -> list[Callable[[], list[Comparison]]]:
    """One call per file and seed: NAB's files, then SKAB's of ``--skab-category``."""
    seeds = [int(s) for s in args.seeds.split(",")]
    shared = {"out": args.out, "reuse": args.reuse, "batch": args.batch}
    found: list[Callable[[], list[Comparison]]] = []
    if args.nab is not None:
        root = args.nab.resolve()
        for path in sorted((root / "data").glob("*/*.csv")):
            if not args.only or args.only in path.as_posix():
                found += [
                    functools.partial(nab_file, path, root=root, seed=s, **shared) for s in seeds
                ]
    if args.skab is not None:
        for name, path in find_files(args.skab):
            if name.split("/")[0] == args.skab_category and (not args.only or args.only in name):
                found += [functools.partial(skab_file, path, name, seed=s, **shared) for s in seeds]
    return found


HEAD = (
    f"{'file':<60} {'engine':<11} {'batch':>5} {'rows':>6} {'events r/c':>10} {'same':>5} "
    f"{'rows≠':>5} {'max|Δscore|':>11} {'max|Δerror|':>11} {'max rel Δexp':>12} "
    f"{'ref s':>7} {'comp s':>7} {'ref/comp':>8}"
)


def print_table(found: Sequence[Comparison]) -> None:
    print(HEAD)
    print("-" * len(HEAD))
    for c in found:
        d = c.differences
        events, ratio = f"{c.events[0]}/{c.events[1]}", _ratio(c.reference_s, c.compiled_s)
        print(
            f"{c.corpus + ' ' + c.file:<60} {c.engine:<11} {c.batch:>5} {c.rows:>6} "
            f"{events:>10} {'yes' if c.equal else 'NO':>5} {d.rows_differing:>5} "
            f"{d.max_score_diff:>11.2e} {d.max_error_diff:>11.2e} {d.max_expected_rel:>12.2e} "
            f"{c.reference_s:>7.2f} {c.compiled_s:>7.2f} {ratio:>8.1f}"
        )
    for engine in ENGINES:
        mine = [c for c in found if c.engine == engine]
        ref, com = sum(c.reference_s for c in mine), sum(c.compiled_s for c in mine)
        rows = sum(c.rows for c in mine)
        print(
            f"{engine}: {len(mine)} files, {rows} rows, {sum(c.equal for c in mine)} the same; "
            f"reference {ref:.1f} s, compiled {com:.1f} s ({_ratio(ref, com):.1f}x)"
        )
    for c in found:
        if c.differences.first is not None:
            m = c.differences.first
            print(
                f"first difference: {c.corpus} {c.file} ({c.engine}) row {m.row} {m.column}: "
                f"reference {m.reference}, compiled {m.compiled}"
            )


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else math.inf


def to_json(found: Sequence[Comparison], seconds: float) -> dict[str, object]:
    return {
        "machine": machine(),
        "seconds": seconds,
        "tolerance": TOLERANCE,
        "all_equal": all(c.equal for c in found),
        "files": [{**dataclasses.asdict(c), "equal": c.equal} for c in found],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--nab", type=Path, default=None, help="NAB's layout: data/<category>/*.csv"
    )
    parser.add_argument("--skab", type=Path, default=None, help="SKAB's data folder")
    parser.add_argument("--skab-category", default="valve1", help="SKAB's development set")
    parser.add_argument("--batch", type=int, default=DEFAULT_BATCH, help="persistence's batch")
    parser.add_argument("--out", type=Path, default=Path("equivalence-results"))
    parser.add_argument("--json", type=Path, default=None, help="write the figures as JSON")
    parser.add_argument("--seeds", default="0", help="training seeds, comma-separated")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--only", default=None, help="only files whose path contains this")
    parser.add_argument("--reuse", action="store_true", help="reuse bundles left in --out")
    args = parser.parse_args(argv)
    todo = calls(args)
    if not todo:
        print("equivalence.py: no files (give --nab and/or --skab)", file=sys.stderr)
        return 1
    started = time.perf_counter()
    found: list[Comparison] = []
    for comparisons in in_pool(todo, args.jobs):
        found += comparisons
        verdicts = ", ".join(f"{c.engine} {'same' if c.equal else 'DIFFERS'}" for c in comparisons)
        print(f"{comparisons[0].corpus} {comparisons[0].file}: {verdicts}", flush=True)
    seconds = time.perf_counter() - started
    print_table(found)
    print(f"\n{len(todo)} file runs in {seconds:.0f} s with {args.jobs} jobs")
    write_json(args.json, to_json(found, seconds))
    return 0 if all(c.equal for c in found) else 2


if __name__ == "__main__":
    sys.exit(main())
