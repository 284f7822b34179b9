import numpy as np
import pytest

from sensord.core.state import ColumnSpec, StateTable


def table(capacity: int = 2) -> StateTable:
    extra = {"count": ColumnSpec(np.int64, (), 7)}
    return StateTable(layers=2, hidden=3, features=1, extra=extra, capacity=capacity)


def test_lookup_allocates_then_finds() -> None:
    t = table()
    slots, new = t.lookup(["a", "b", "a"])
    assert slots.tolist()[0] == slots.tolist()[2]
    assert new.tolist() == [True, True, False]
    again, new = t.lookup(["b"])
    assert again[0] == slots[1] and not new[0]


def test_growth_keeps_every_stream_state() -> None:
    t = table(capacity=2)
    slots, _ = t.lookup(["a", "b"])
    t["h"][slots] = np.arange(2 * 2 * 3, dtype=np.float32).reshape(2, 2, 3)
    t["count"][slots] = [1, 2]
    grown, _ = t.lookup([f"s{i}" for i in range(10)])
    assert len(t) == 12 and 12 <= t.capacity <= 12 + 16  # grown by a quarter, at least 16
    a, b = t.lookup(["a", "b"])[0]
    assert t["h"][a].ravel().tolist() == list(range(6))
    assert t["count"][[a, b]].tolist() == [1, 2]
    assert (t["count"][grown] == 7).all()  # new slots start empty


def test_release_clears_and_reuses_the_slot() -> None:
    t = table()
    (slot,), _ = t.lookup(["a"])
    t["count"][slot] = 99
    t.release("a")
    assert "a" not in t.slot_of
    (again,), new = t.lookup(["b"])
    assert again == slot and new[0] and t["count"][again] == 7


def test_clear_only_named_columns() -> None:
    t = table()
    slots, _ = t.lookup(["a"])
    t["h"][slots] = 1.0
    t["count"][slots] = 3
    t.clear(slots, ["h"])
    assert (t["h"][slots] == 0).all() and t["count"][slots][0] == 3


def test_added_columns_start_empty_and_grow_with_the_table() -> None:
    t = table(capacity=2)
    slots, _ = t.lookup(["a", "b"])
    t.add({"flag": ColumnSpec(np.int8, (), 3)})
    assert t["flag"].tolist() == [3, 3]
    t["flag"][slots[0]] = 1
    t.add({"flag": ColumnSpec(np.int8, (), 3)})  # the same again: kept as it is
    grown, _ = t.lookup([f"s{i}" for i in range(5)])
    assert t["flag"][slots[0]] == 1 and (t["flag"][grown] == 3).all()
    with pytest.raises(ValueError, match="declared twice"):
        t.add({"flag": ColumnSpec(np.float64)})
