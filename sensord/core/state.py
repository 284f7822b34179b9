"""State tables: everything the daemon remembers about each stream of one bundle.

One slot per stream in preallocated numpy columns (LSTM ``h`` and ``c``, the pending
prediction, scaling, last timestamp, steps since reset, and the columns each part declares:
the detector's, the alert lifecycle's, and those an edge registers with the pipeline, such as
what the daemon last published of each stream). A dict maps stream id to slot. The core
gathers a wave's slots with fancy indexing and scatters results back; the table grows by a
quarter at a time and reuses freed slots, so no per-stream Python objects exist on the hot
path.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

Slots = npt.NDArray[np.intp]


@dataclass(frozen=True)
class ColumnSpec:
    """A per-slot column: its dtype, the shape of one slot's entry, and its empty value."""

    dtype: npt.DTypeLike
    shape: tuple[int, ...] = ()
    fill: float | int | bool = 0


class StateTable:
    """Per-stream state for one bundle, one slot per stream."""

    def __init__(
        self,
        layers: int,
        hidden: int,
        features: int,
        extra: Mapping[str, ColumnSpec] | None = None,
        capacity: int = 16,
    ) -> None:
        self.specs: dict[str, ColumnSpec] = {}
        # Columns hold different dtypes (float32 state, float64 statistics, bools, counts).
        self.columns: dict[str, npt.NDArray[Any]] = {}
        self.capacity = max(1, capacity)
        self.add(
            {
                "h": ColumnSpec(np.float32, (layers, hidden)),
                "c": ColumnSpec(np.float32, (layers, hidden)),
                "prediction": ColumnSpec(np.float32, (features,), np.nan),
                # The spread head's for the pending prediction (heads.py); 1 without it.
                "spread": ColumnSpec(np.float32, (features,), 1.0),
                "center": ColumnSpec(np.float64, (features,)),
                "scale": ColumnSpec(np.float64, (features,), 1.0),
                "last_ts": ColumnSpec(np.float64, (), -np.inf),
                "steps": ColumnSpec(np.int64, ()),
            }
        )
        self.add(extra or {})
        self.slot_of: dict[str, int] = {}
        self.stream_of: list[str | None] = [None] * self.capacity
        self._free: list[int] = list(range(self.capacity - 1, -1, -1))

    def __len__(self) -> int:
        return len(self.slot_of)

    def __getitem__(self, name: str) -> npt.NDArray[Any]:
        return self.columns[name]

    def add(self, specs: Mapping[str, ColumnSpec]) -> None:
        """Keep these columns too, empty for every slot. A column declared again with the
        same spec is kept as it is (two parts may need the same one); with another spec,
        ValueError: two parts would read one column two ways."""
        for name, spec in specs.items():
            known = self.specs.get(name)
            if known is not None and known != spec:
                raise ValueError(f"state column {name!r} is declared twice, differently")
            if known is None:
                self.specs[name] = spec
                self.columns[name] = _empty(spec, self.capacity)

    def lookup(self, streams: Iterable[str]) -> tuple[Slots, npt.NDArray[np.bool_]]:
        """Slots of these streams, allocating new ones; also which slots are new."""
        slots: list[int] = []
        new: list[bool] = []
        for stream in streams:
            slot = self.slot_of.get(stream)
            if slot is None:
                slot = self._allocate(stream)
                new.append(True)
            else:
                new.append(False)
            slots.append(slot)
        return np.asarray(slots, dtype=np.intp), np.asarray(new, dtype=bool)

    def release(self, stream: str) -> None:
        """Forget a stream; its slot is cleared and reused."""
        slot = self.slot_of.pop(stream)
        self.stream_of[slot] = None
        self.clear(np.asarray([slot], dtype=np.intp))
        self._free.append(slot)

    def clear(self, slots: Slots, names: Iterable[str] | None = None) -> None:
        """Set these slots of the named columns (default: all) to their empty value."""
        for name in self.specs if names is None else names:
            self.columns[name][slots] = self.specs[name].fill

    def rows(self, slots: Slots) -> tuple[dict[str, npt.NDArray[Any]], list[str]]:
        """Copies of these slots' rows, and their streams (a partition handed over)."""
        columns = {name: column[slots].copy() for name, column in self.columns.items()}
        return columns, [self.stream_of[slot] or "" for slot in slots]

    def put_rows(self, columns: Mapping[str, npt.NDArray[Any]], streams: list[str]) -> Slots:
        """Take these streams with their rows (a partition taken over), replacing any state
        they had here; columns missing from ``columns`` start empty. Their slots."""
        slots, _ = self.lookup(streams)
        for name, spec in self.specs.items():
            self.columns[name][slots] = columns.get(name, spec.fill)
        return slots

    def load(self, columns: Mapping[str, npt.NDArray[Any]], streams: list[str]) -> None:
        """Replace the whole table: ``streams[slot]`` is each slot's id ("" for a free slot)."""
        self.capacity = len(streams)
        self.columns = {
            name: np.array(columns[name], dtype=spec.dtype)
            if name in columns
            else _empty(spec, self.capacity)  # a column newer than the snapshot
            for name, spec in self.specs.items()
        }
        self.stream_of = [s or None for s in streams]
        self.slot_of = {s: slot for slot, s in enumerate(self.stream_of) if s is not None}
        self._free = [
            slot for slot in range(self.capacity - 1, -1, -1) if self.stream_of[slot] is None
        ]

    def _allocate(self, stream: str) -> int:
        if not self._free:
            self._grow()
        slot = self._free.pop()
        self.slot_of[stream] = slot
        self.stream_of[slot] = stream
        return slot

    def _grow(self) -> None:
        old = self.capacity
        # A quarter more, not double: a slot holds about 3.6 KB with the channels detector,
        # and doubling left 10,000 streams in 16,384 slots (59 MB, the daemon's largest
        # part); copying more often costs little, since streams arrive once.
        self.capacity = old + max(16, old // 4)
        for name, spec in self.specs.items():
            grown = _empty(spec, self.capacity)
            grown[:old] = self.columns[name]
            self.columns[name] = grown
        self.stream_of.extend([None] * (self.capacity - old))
        self._free.extend(range(self.capacity - 1, old - 1, -1))


def _empty(spec: ColumnSpec, capacity: int) -> npt.NDArray[Any]:
    return np.full((capacity, *spec.shape), spec.fill, dtype=spec.dtype)
