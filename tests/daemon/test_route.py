import pytest

from sensord.errors import StreamIdError
from sensord.wire.topics import (
    TopicFilter,
    check_stream_template,
    check_topic_filter,
    safe_topic_level,
    stream_id,
)


@pytest.mark.parametrize(
    ("pattern", "topic", "wild"),
    [
        ("sensors/+/temp", "sensors/m1/temp", ["m1"]),
        ("sensors/#", "sensors/plant/m1", ["plant", "m1"]),
        ("sensors/#", "sensors", []),
        ("a/b", "a/b", []),
        ("sensors/+/temp", "sensors/m1/hum", None),
        ("sensors/+", "sensors/m1/temp", None),
        ("+/x", "$SYS/x", None),
        ("#", "$SYS/broker", None),
    ],
)
def test_filter_matching(pattern: str, topic: str, wild: list[str] | None) -> None:
    assert TopicFilter(pattern).match(topic) == wild


@pytest.mark.parametrize("bad", ["", "a/#/b", "a/b#", "a/x+/c"])
def test_bad_filters(bad: str) -> None:
    with pytest.raises(ValueError, match=r"topic filter|'#'|'\+'"):
        check_topic_filter(bad)


def test_templates() -> None:
    assert stream_id("{wild}", "s/plant/m1", ["plant", "m1"]) == "plant.m1"
    assert stream_id("{topic}", "s/m1/t", []) == "s.m1.t"
    assert stream_id("{1}-{-1}", "s/m1/t", []) == "m1-t"
    with pytest.raises(StreamIdError, match="no level 5"):
        stream_id("{5}", "s/m1", [])


@pytest.mark.parametrize("level", ["bad id", "a+b", "a#", "$x", "é", "x" * 129, "a/b", ""])
def test_unsafe_stream_ids_are_rejected(level: str) -> None:
    assert not safe_topic_level(level)
    with pytest.raises(StreamIdError, match="not a safe topic level"):
        stream_id("{wild}", "s/x", [level])


@pytest.mark.parametrize("template", ["plain", "{nope}", "{wild}/x", "{wild} x"])
def test_bad_templates(template: str) -> None:
    with pytest.raises(ValueError):
        check_stream_template(template)
