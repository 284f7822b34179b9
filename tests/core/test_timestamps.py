import pytest

from sensord.core.timestamps import format_timestamp, parse_timestamp


@pytest.mark.parametrize(
    ("text", "epoch"),
    [
        ("2014-04-01 00:00:00", 1396310400.0),
        ("2014-04-01T00:00:00Z", 1396310400.0),
        ("2014-04-01T02:00:00+02:00", 1396310400.0),
        ("1396310400", 1396310400.0),
        ("1396310400.5", 1396310400.5),
        ("1396310400000", 1396310400.0),  # milliseconds, told apart by size
    ],
)
def test_parses_iso_and_epoch(text: str, epoch: float) -> None:
    assert parse_timestamp(text) == pytest.approx(epoch)


@pytest.mark.parametrize("text", ["", "yesterday", "2014-13-01", "nan", "inf"])
def test_rejects_unparsable(text: str) -> None:
    with pytest.raises(ValueError, match="timestamp"):
        parse_timestamp(text)


def test_format_round_trips() -> None:
    assert format_timestamp(1396310400.25) == "2014-04-01T00:00:00.250Z"
    assert parse_timestamp(format_timestamp(1396310400.25)) == 1396310400.25
