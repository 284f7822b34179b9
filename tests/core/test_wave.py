import numpy as np

from sensord.core.step import split_waves


def waves(keys: list[object]) -> list[list[int]]:
    return [w.tolist() for w in split_waves(np.asarray(keys))]


def reference(keys: list[int]) -> list[list[int]]:
    """The definition, one sample at a time: wave k gets each key's k-th sample."""
    result: list[list[int]] = []
    seen: dict[int, int] = {}
    for index, key in enumerate(keys):
        k = seen.get(key, 0)
        seen[key] = k + 1
        if k == len(result):
            result.append([])
        result[k].append(index)
    return result


def test_each_stream_once_per_wave_in_arrival_order() -> None:
    assert waves(["a", "b", "a", "c", "a", "b"]) == [[0, 1, 3], [2, 5], [4]]


def test_empty_and_distinct() -> None:
    assert waves([]) == []
    assert waves([7, 3, 5]) == [[0, 1, 2]]


def test_matches_the_definition_on_random_batches() -> None:
    rng = np.random.default_rng(0)
    for _ in range(300):
        n = int(rng.integers(1, 200))
        keys = rng.integers(0, int(rng.integers(1, 40)), size=n).tolist()
        assert waves(keys) == reference(keys)
