from sensord.wave import split_waves


def test_each_stream_once_per_wave_in_arrival_order() -> None:
    streams = ["a", "b", "a", "c", "a", "b"]
    assert split_waves(streams) == [[0, 1, 3], [2, 5], [4]]


def test_empty_and_distinct() -> None:
    assert split_waves([]) == []
    assert split_waves(["x", "y", "z"]) == [[0, 1, 2]]
