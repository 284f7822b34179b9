"""What the model's heads cost the daemon per reading, side by side in one run (issue 28's
"the daemon's cost per reading <= 1.3x today's at 1,000 streams").

Five engines on one trained network size (2 x 64 LSTM, the trainer's default), each in a
``Pipeline`` with the daemon's defaults (the compiled path): **plain** (today's bundle),
**spread** (``--spread``: a fourth graph output, each error divided by it), **spread+cross**
(``--spread --cross``: and the virtual sensor over the features), **all** (and
``--horizon 12``: a fifth output, a ring of 12 look-aheads per stream), and **persistence**
("repeat the last value" with the plain bundle: what the network costs at all). The bundles
are trained on the same 4-feature history (a daily shape, a feature following another, two
of their own) for a few epochs only: training quality does not change the arithmetic.

A wave is one reading of every stream at one timestamp (``process_batch``), as the daemon
steps a micro-batch; each width warms up, then blocks of waves are timed (process CPU time
per reading), the engines taking turns in a rotating order, block after block. Reported:
the median per reading over the blocks, and each engine's median same-block-round ratio to
plain (these machines are shared: only same-run ratios mean something).

    python benchmarks/heads.py [--widths 1000,1] [--rounds 7] [--json F]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from benchmarks.report import machine, machine_load
from sensord.arrays import F64
from sensord.core.bundle import Bundle
from sensord.core.engine import Engine, PersistenceEngine, StepEngine
from sensord.core.pipeline import Pipeline
from sensord.offline.synthetic import generate

ENGINES = ("plain", "spread", "spread+cross", "all", "persistence")
# name -> (spread, cross, horizon) of the bundle trained for it
TRAINED = {
    "plain": (False, False, 0),
    "spread": (True, False, 0),
    "spread+cross": (True, True, 0),
    "all": (True, True, 12),
}
BASE = "plain"
FEATURES = 4
INTERVAL_S = 300.0


def history(path: Path, rows: int = 1200) -> F64:
    """A 4-feature history: a daily shape, a feature that follows it, two of their own."""
    rng = np.random.default_rng(4)
    shape = generate(rows, seed=1, interval_s=INTERVAL_S).values
    values = np.stack(
        [
            shape,
            2.0 * shape + rng.normal(0, 0.1, rows),
            generate(rows, seed=2, interval_s=INTERVAL_S).values,
            np.cumsum(rng.normal(0, 0.2, rows)),
        ],
        axis=1,
    )
    stamps = 1.7e9 + INTERVAL_S * np.arange(rows)
    lines = ["timestamp," + ",".join(f"f{i}" for i in range(FEATURES))]
    lines += [
        f"{t:.0f}," + ",".join(f"{v:.6f}" for v in row)
        for t, row in zip(stamps, values, strict=True)
    ]
    path.write_text("\n".join(lines) + "\n")
    return values


def bundles(work: Path) -> dict[str, Bundle]:
    from sensord.training.options import FitOptions, TrainOptions
    from sensord.training.train import train_bundle

    data = work / "history.csv"
    history(data)
    made = {}
    for name, (spread, cross, horizon) in TRAINED.items():
        folder = name.replace("+", "-")
        fit = FitOptions(epochs=3, spread=spread, horizon=horizon)
        options = TrainOptions(name=folder, cross=cross, fit=fit)
        made[name] = train_bundle(data, work / folder, options).bundle
        print(f"trained {name}: heads {made[name].manifest.heads.any}", flush=True)
    return made


class Bench:
    """One engine's pipeline over ``width`` streams, stepped a wave at a time."""

    def __init__(self, engine: StepEngine, width: int, values: F64) -> None:
        self.pipeline = Pipeline(engine)
        self.streams = [f"s{i}" for i in range(width)]
        self.values = values
        self.rng = np.random.default_rng(width)
        self.offsets = self.rng.normal(0, 0.05, (width, values.shape[1]))
        self.at = 0

    def waves(self, count: int) -> float:
        """Step ``count`` waves; CPU seconds per reading."""
        width = len(self.streams)
        started = time.process_time()
        for _ in range(count):
            row = self.values[self.at % len(self.values)]
            ts = np.full(width, 1.7e9 + INTERVAL_S * self.at)
            self.pipeline.process_batch(self.streams, ts, row[None, :] + self.offsets)
            self.at += 1
        return (time.process_time() - started) / (count * width)


def measure(made: dict[str, Bundle], width: int, rounds: int, values: F64) -> dict[str, Any]:
    engines: dict[str, StepEngine] = {name: Engine(bundle) for name, bundle in made.items()}
    engines["persistence"] = PersistenceEngine(made["plain"])
    benches = {name: Bench(engine, width, values) for name, engine in engines.items()}
    waves = max(3, 20_000 // width)
    for bench in benches.values():
        bench.waves(max(50, waves // 2))  # warm: compiled, streams past their first readings
    per: dict[str, list[float]] = {name: [] for name in ENGINES}
    for r in range(rounds):
        order = ENGINES[r % len(ENGINES) :] + ENGINES[: r % len(ENGINES)]
        for name in order:
            per[name].append(benches[name].waves(waves))
    return {
        "width": width,
        "waves_a_block": waves,
        "us_per_reading": {n: statistics.median(v) * 1e6 for n, v in per.items()},
        "ratio_to_plain": {
            n: statistics.median(a / b for a, b in zip(v, per[BASE], strict=True))
            for n, v in per.items()
        },
        "blocks_us": {n: [x * 1e6 for x in v] for n, v in per.items()},
    }


def print_table(rows: Sequence[dict[str, Any]]) -> None:
    print(f"\n{'streams':>8}  " + "  ".join(f"{n:>22}" for n in ENGINES))
    for row in rows:
        cells = [
            f"{row['us_per_reading'][n]:8.1f} us ({row['ratio_to_plain'][n]:.2f}x)" for n in ENGINES
        ]
        print(f"{row['width']:>8}  " + "  ".join(f"{c:>22}" for c in cells))
    print("CPU per reading, median of blocks; (x): median same-round ratio to plain")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--widths", type=lambda s: [int(w) for w in s.split(",")], default=[1000, 1]
    )
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    print(f"machine: {machine()}; load {machine_load()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        made = bundles(Path(tmp))
        values = history(Path(tmp) / "replayed.csv", rows=2000)
        rows = [measure(made, width, args.rounds, values) for width in args.widths]
    print_table(rows)
    if args.json is not None:
        payload = {"machine": machine(), "load": machine_load(), "rows": rows}
        args.json.write_text(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
