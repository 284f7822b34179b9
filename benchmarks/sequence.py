"""The engine's cost per step: a bundle's sequence graph (ONNX's LSTM / GRU operator, T steps
in one session call) against the step graph of bundles from before (one call per step),
side by side in one run.

One network is trained (``train_bundle`` on a generated series, the default 2x64 net with
its time-of-day inputs unless told otherwise) and written both ways: the bundle training
writes (``graph.kind`` "sequence") and the same model exported as ONE step, as sensord wrote
bundles before (``export_step``, kind "step"). Both are opened with sensord's ``Engine`` and
driven through ``Engine.run`` on the same inputs (``x[T, B, I]``, scaled units, from a zero
state), as the daemon would run them: the sequence graph in one session call per
``ROWS_PER_CALL`` rows (T x B), and again in one call whatever the rows ("one call"); the
step graph in a Python loop of T calls. For every batch width B and sequence length T:
microseconds of CPU per step (a run's CPU time, ``process_time``, over T; per reading it is
that over B: CPU rather than wall time, as a busy machine's waits are not the engine's), the
engines taking turns round after round, each reported as its fastest round, and the median
over rounds of the same-round ratio step / sequence (above 1: the sequence graph is faster).
These machines are shared and noisy; only same-run ratios mean something. The largest difference
of the two graphs' predictions and states over the measured inputs is reported too.

    python benchmarks/sequence.py [--batches 1,1000] [--steps 1,16,256] [--rounds 5]
        [--cell lstm] [--hidden 64] [--layers 2] [--epochs 2] [--seconds 0.2] [--json F]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sensord import logs
from sensord.arrays import F32
from sensord.core.bundle import Bundle, Cell, Graph, sha256_hex
from sensord.core.engine import Engine
from sensord.offline.synthetic import generate, write_csv
from sensord.ops.models import write_bundle
from sensord.training.export import export_step
from sensord.training.options import FitOptions, TrainOptions
from sensord.training.train import train_bundle

ROWS = 1500  # the generated history: five days every five minutes, so time-of-day inputs


@dataclass(frozen=True)
class Case:
    batch: int
    steps: int
    step_us: float  # the step graph's fastest round, CPU microseconds per step (all B streams)
    sequence_us: float
    one_call_us: float  # the sequence graph, every run in one call
    ratio: float  # median over rounds of step / sequence in the same round
    difference: float  # largest |step graph - sequence graph| of predictions, h and c


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    logs.configure("warning")
    with tempfile.TemporaryDirectory() as scratch:
        sequence, step = bundles(Path(scratch), args)
        engines = Engine(step), Engine(sequence), Engine(sequence, rows_per_call=2**62)
        cases = [
            measure(engines, batch, steps, args.rounds, args.seconds)
            for batch in args.batches
            for steps in args.steps
        ]
    print(table(cases, sequence))
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(c) for c in cases], indent=2) + "\n")
    return 0


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=numbers, default=[1, 1000], help="widths B")
    parser.add_argument("--steps", type=numbers, default=[1, 16, 256], help="lengths T")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=0.2, help="per case, round and graph")
    parser.add_argument("--cell", choices=["lstm", "gru"], default="lstm")
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2, help="the timing does not need more")
    parser.add_argument("--json", help="write the cases here")
    return parser.parse_args(argv)


def numbers(text: str) -> list[int]:
    return [int(part) for part in text.split(",")]


def bundles(folder: Path, args: argparse.Namespace) -> tuple[Bundle, Bundle]:
    """The bundle training writes, and the same model as a step bundle of before."""
    write_csv(folder / "history.csv", generate(ROWS, seed=1))
    cell: Cell = args.cell
    fit = FitOptions(epochs=args.epochs, hidden=args.hidden, layers=args.layers, cell=cell)
    report = train_bundle(folder / "history.csv", folder / "sequence", TrainOptions(fit=fit))
    graph = export_step(report.model)
    manifest = report.bundle.manifest
    kind = Graph(sha256=sha256_hex(graph), opset=manifest.graph.opset, kind="step")
    old = write_bundle(folder / "step", manifest.model_copy(update={"graph": kind}), graph)
    return report.bundle, old


def measure(
    engines: tuple[Engine, Engine, Engine], batch: int, steps: int, rounds: int, seconds: float
) -> Case:
    """Each engine's ``run`` over the same ``x[T, B, I]``, taking turns ``rounds`` times."""
    step, sequence, _ = engines
    x = np.random.default_rng(0).normal(0, 1, (steps, batch, step.inputs)).astype(np.float32)
    h, c = step.zero_state(batch)
    results = [engine.run(x, h, c) for engine in engines]  # a first call warms each up
    calls = max(1, round(seconds / _once(sequence, x, h, c)))
    times: list[list[float]] = [[] for _ in engines]
    for _ in range(rounds):
        for engine, kept in zip(engines, times, strict=True):
            started = time.process_time()
            for _ in range(calls):
                engine.run(x, h, c)
            kept.append((time.process_time() - started) / calls / steps)
    ratios = [a / b for a, b in zip(times[0], times[1], strict=True)]
    old, new, _ = results
    difference = max(
        float(np.max(np.abs(getattr(old, name) - getattr(new, name))))
        for name in ("predictions", "h", "c")
    )
    return Case(
        batch=batch,
        steps=steps,
        step_us=min(times[0]) * 1e6,
        sequence_us=min(times[1]) * 1e6,
        one_call_us=min(times[2]) * 1e6,
        ratio=statistics.median(ratios),
        difference=difference,
    )


def _once(engine: Engine, x: F32, h: F32, c: F32) -> float:
    started = time.process_time()
    engine.run(x, h, c)
    return max(time.process_time() - started, 1e-6)


def table(cases: Sequence[Case], bundle: Bundle) -> str:
    m = bundle.manifest
    inputs = len(m.features) + len(m.time_features)
    lines = [
        f"{m.cell} {m.layers}x{m.hidden}, {inputs} inputs; onnxruntime, one thread; "
        "CPU microseconds per step (per reading: / B)",
        f"{'B':>6} {'T':>5} {'step graph':>11} {'sequence':>9} {'one call':>9} "
        f"{'step/seq':>9} {'seq/reading':>12} {'max |diff|':>11}",
    ]
    for case in cases:
        lines.append(
            f"{case.batch:>6} {case.steps:>5} {case.step_us:>11.1f} {case.sequence_us:>9.1f} "
            f"{case.one_call_us:>9.1f} {case.ratio:>8.2f}x "
            f"{case.sequence_us / case.batch:>12.2f} {case.difference:>11.1e}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
