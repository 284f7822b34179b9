"""Which member should own which partition: balanced, and moving as little as it can.

Every member computes the same plan from the same view (the live members and who holds
which lease) and acts only for itself: it claims the free partitions the plan gives it and
lets go of the ones the plan gives others. The leases (leases.py) settle any race, since a
partition's lease can be created by one member only.

- **Balanced**: with N members and P partitions each member gets P // N, and the first
  P % N members (by name) one more.
- **Sticky**: a member keeps the partitions it holds, up to its share, lowest numbers first;
  only the rest move. A member joining takes partitions from those above their share; a
  member leaving (its leases expired) leaves its partitions free for those below theirs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping


def shares(members: Iterable[str], partitions: int) -> dict[str, int]:
    """How many partitions each member should own."""
    ordered = sorted(set(members))
    if not ordered:
        return {}
    base, extra = divmod(partitions, len(ordered))
    return {m: base + (1 if i < extra else 0) for i, m in enumerate(ordered)}


def plan(members: Iterable[str], owners: Mapping[int, str], partitions: int) -> dict[int, str]:
    """The owner each partition should have: ``owners`` are the leases as held now
    (partition → member; members not in ``members`` count as gone)."""
    quota = shares(members, partitions)
    if not quota:
        return {}
    planned: dict[int, str] = {}
    kept = dict.fromkeys(quota, 0)
    for partition in range(partitions):
        owner = owners.get(partition)
        if owner in quota and kept[owner] < quota[owner]:
            planned[partition] = owner
            kept[owner] += 1
    wanting = [m for m in sorted(quota) for _ in range(quota[m] - kept[m])]
    free = [p for p in range(partitions) if p not in planned]
    planned.update(zip(free, wanting, strict=True))
    return planned
