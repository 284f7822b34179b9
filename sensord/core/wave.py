"""Waves: split a micro-batch so that each stream advances one step at a time, in order.

A micro-batch may hold several samples of one fast stream. Wave k holds the k-th sample of
every stream that has one, in arrival order; stepping the waves in turn gives every stream
its samples in order while the engine still runs one batched step per wave. Streams are
given by their slots in the state table, so the split is a few numpy operations, not a
Python loop over the batch.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Indices = npt.NDArray[np.intp]


def split_waves(keys: npt.ArrayLike) -> list[Indices]:
    """Indices into ``keys`` grouped into waves; each wave holds a key at most once."""
    keys = np.asarray(keys)
    n = len(keys)
    if n == 0:
        return []
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    starts = np.ones(n, dtype=bool)
    starts[1:] = ordered[1:] != ordered[:-1]
    if starts.all():  # every stream once: the common case with many streams
        return [np.arange(n)]
    positions = np.arange(n)
    rank = np.empty(n, dtype=np.intp)
    rank[order] = positions - np.maximum.accumulate(np.where(starts, positions, 0))
    by_rank = np.argsort(rank, kind="stable")  # stable: arrival order within a wave
    return np.split(by_rank, np.cumsum(np.bincount(rank))[:-1])
