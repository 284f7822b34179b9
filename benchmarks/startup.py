"""Start-up with the compiled path: cold (numba compiles the kernels) and warm (it loads
them from its disk cache), as launch to systemd READY of a real ``sensord run``.

The kernels compile when a pipeline is built, before READY (core/compiled/path.py,
``CompiledPath.warm``), so no reading ever waits for a compiler; this measures what that
costs a start. Each cold start gets an empty ``NUMBA_CACHE_DIR``; the warm starts share one
that a start filled. Also: the cache's size on disk, and what the compiler adds to an install
(numba and llvmlite in site-packages). Prints a table and writes JSON.

    python -m benchmarks.startup --runs 3 --out /tmp/startup.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import children
from benchmarks.children import DaemonProcess
from benchmarks.throughput import broker, train_model, write_config
from sensord.cli.broker import free_port


def directory_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def installed_mb(package: str) -> float:
    """A package's size in site-packages (its directory), MB."""
    module = __import__(package)
    return directory_mb(Path(module.__file__ or "").parent)


def start_once(work: Path, config: Path, cache: Path, name: str) -> float:
    """One launch to READY with ``cache`` as numba's cache; then a clean stop."""
    os.environ["NUMBA_CACHE_DIR"] = str(cache)
    daemon = DaemonProcess(config, free_port(), work / f"sensord-{name}.log")
    try:
        return daemon.start()
    finally:
        daemon.stop()


def measure(work: Path, runs: int) -> dict[str, Any]:
    # A cold start compiles for tens of seconds on a busy box: wait for it.
    children.READY_TIMEOUT_S = 600.0
    model = train_model(work, epochs=1)
    cold, warm = [], []
    shared = work / "cache-warm"
    with broker() as mqtt:
        config = write_config(work, "startup", mqtt.port, model.bundle, free_port())
        start_once(work, config, shared, "fill")  # fills the shared cache
        for run in range(runs):
            cold.append(start_once(work, config, work / f"cache-cold-{run}", f"cold-{run}"))
            warm.append(start_once(work, config, shared, f"warm-{run}"))
    return {
        "cold_ready_s": [round(s, 3) for s in cold],
        "warm_ready_s": [round(s, 3) for s in warm],
        "cold_median_s": round(statistics.median(cold), 3),
        "warm_median_s": round(statistics.median(warm), 3),
        "cache_mb": round(directory_mb(shared), 2),
        "numba_mb": round(installed_mb("numba"), 1),
        "llvmlite_mb": round(installed_mb("llvmlite"), 1),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="cold and warm starts each")
    parser.add_argument("--out", type=Path, help="write the figures here as JSON")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="sensord-startup-") as tmp:
        figures = measure(Path(tmp), args.runs)
    print(f"{'start':<6} {'median s':>9}  each")
    print(f"{'cold':<6} {figures['cold_median_s']:>9.2f}  {figures['cold_ready_s']}")
    print(f"{'warm':<6} {figures['warm_median_s']:>9.2f}  {figures['warm_ready_s']}")
    print(
        f"cache {figures['cache_mb']} MB; install: numba {figures['numba_mb']} MB, "
        f"llvmlite {figures['llvmlite_mb']} MB"
    )
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
