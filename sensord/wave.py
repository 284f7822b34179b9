"""Waves: split a micro-batch so that each stream advances one step at a time, in order.

A micro-batch may hold several samples of one fast stream. Wave k holds the k-th sample of
every stream that has one, in arrival order; stepping the waves in turn gives every stream
its samples in order while the engine still runs one batched step per wave.
"""

from __future__ import annotations

from collections.abc import Sequence


def split_waves(streams: Sequence[str]) -> list[list[int]]:
    """Indices into ``streams`` grouped into waves; each wave has a stream at most once."""
    waves: list[list[int]] = []
    seen: dict[str, int] = {}
    for index, stream in enumerate(streams):
        k = seen.get(stream, 0)
        seen[stream] = k + 1
        if k == len(waves):
            waves.append([])
        waves[k].append(index)
    return waves
