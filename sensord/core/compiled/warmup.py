"""Compile the kernels ahead of any start: ``sensord compile`` (install scripts, the demo's
and the tests' set-up run it), so that the daemon's first start loads them from numba's
cache instead of compiling for tens of seconds before it is ready.

numba compiles a function once per argument types: the kernels' types depend on the state
columns' dimensions and dtypes, never on a bundle's sizes or the channels it enables (a
channel that is off passes an empty array of the same type), so one pipeline over a bundle
made here, of one feature, compiles what every bundle runs."""

from __future__ import annotations

import time

from sensord.core.engine import PersistenceEngine
from sensord.core.inmemory import in_memory
from sensord.core.pipeline import Pipeline


def compile_kernels() -> float:
    """Build (or load from the cache) the compiled path's machine code; the seconds it took."""
    started = time.perf_counter()
    Pipeline(PersistenceEngine(in_memory(name="compile")))
    return time.perf_counter() - started
