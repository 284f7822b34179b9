"""The partition plan: balanced, sticky, the same for every member that sees the same."""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from sensord.cluster.assign import plan, shares
from sensord.wire.partition import fnv1a32, partition_of, subject_mapping

members_st = st.sets(st.sampled_from([f"m{i}" for i in range(8)]), min_size=1)


@given(members_st, st.integers(1, 64), st.data())
def test_every_partition_gets_one_live_owner_and_shares_differ_by_at_most_one(
    members: set[str], partitions: int, data: st.DataObject
) -> None:
    owners = data.draw(
        st.dictionaries(st.integers(0, partitions - 1), st.sampled_from(["m0", "m1", "gone"]))
    )
    planned = plan(members, owners, partitions)
    assert set(planned) == set(range(partitions))
    assert set(planned.values()) <= members
    counts = Counter(planned.values())
    assert max(counts.values()) - min(counts.get(m, 0) for m in members) <= 1
    assert dict(counts) == {m: n for m, n in shares(members, partitions).items() if n}


@given(members_st, st.integers(1, 64))
def test_a_plan_is_kept_as_it_is(members: set[str], partitions: int) -> None:
    first = plan(members, {}, partitions)
    assert plan(members, first, partitions) == first


def test_a_member_joining_moves_only_what_it_takes() -> None:
    two = plan(["a", "b"], {}, 12)
    three = plan(["a", "b", "c"], two, 12)
    moved = [p for p in range(12) if two[p] != three[p]]
    assert Counter(three.values()) == {"a": 4, "b": 4, "c": 4}
    assert len(moved) == 4 and all(three[p] == "c" for p in moved)


def test_a_member_leaving_leaves_its_partitions_to_the_others_only() -> None:
    three = plan(["a", "b", "c"], {}, 12)
    two = plan(["a", "b"], three, 12)
    assert Counter(two.values()) == {"a": 6, "b": 6}
    assert all(two[p] == three[p] for p in range(12) if three[p] != "c")


def test_partition_function_is_fnv1a_as_the_engine_computes_it() -> None:
    assert fnv1a32(b"") == 0x811C9DC5
    assert fnv1a32(b"a") == 0xE40C292C  # the published FNV-1a test vector
    assert partition_of("boiler.t1", 12) == fnv1a32(b"boiler.t1") % 12
    assert subject_mapping(12) == {
        "sensors.*.*": "part.{{partition(12,1)}}.sensors.{{wildcard(1)}}.{{wildcard(2)}}"
    }
