"""``sensord replay --engine``: the bundle's network (the default) or "repeat the last value"
with everything else the bundle's, so anyone can see what the network adds."""

import csv
import itertools
from pathlib import Path

import numpy as np
import pytest

from sensord.cli.main import build_parser, main
from sensord.core.bundle import Bundle
from sensord.offline.series import read_series


def replayed(
    capsys: pytest.CaptureFixture[str], data: Path, bundle: Bundle, out: Path, *extra: str
) -> tuple[str, list[dict[str, str]]]:
    args = ["replay", str(data), "--bundle", str(bundle.path), "--out", str(out), "--quiet"]
    assert main([*args, *extra]) == 0
    with out.open(newline="") as handle:
        return capsys.readouterr().out, list(csv.DictReader(handle))


def expected_and_previous(rows: list[dict[str, str]]) -> tuple[np.ndarray, np.ndarray]:
    """Each row's expected value beside the reading before it (rows with an expectation)."""
    pairs = [
        (float(row["expected_value"]), float(before["value"]))
        for before, row in itertools.pairwise(rows)
        if row["expected_value"]
    ]
    return np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])


def test_persistence_expects_the_previous_reading_in_raw_units(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, small_bundle: Bundle, clean_csv: Path
) -> None:
    out, rows = replayed(
        capsys, clean_csv, small_bundle, tmp_path / "p.csv", "--engine", "persistence"
    )
    assert "engine persistence: each reading predicted as its stream's last one" in out
    expected, previous = expected_and_previous(rows)
    assert len(expected) == len(read_series(clean_csv).rows) - 1  # all but the first row
    # Scaled by the bundle, predicted, scaled back: the reading before, to float32's precision.
    np.testing.assert_allclose(expected, previous, rtol=1e-5)


def test_the_default_engine_is_the_bundles_network(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, small_bundle: Bundle, clean_csv: Path
) -> None:
    parsed = build_parser().parse_args(["replay", "x.csv", "--bundle", "b", "--out", "o"])
    assert parsed.engine == "lstm"
    out, rows = replayed(capsys, clean_csv, small_bundle, tmp_path / "n.csv")
    assert "engine lstm: the bundle's network predicted each reading" in out
    expected, previous = expected_and_previous(rows)
    # The network's expectation is its own, not the last reading.
    assert np.mean(~np.isclose(expected, previous, rtol=1e-5)) > 0.9
    _, same = replayed(capsys, clean_csv, small_bundle, tmp_path / "l.csv", "--engine", "lstm")
    assert same == rows


def test_an_unknown_engine_is_refused_by_the_command_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, clean_csv: Path
) -> None:
    args = ["replay", str(clean_csv), "--bundle", str(tmp_path), "--out", str(tmp_path / "o")]
    with pytest.raises(SystemExit) as exited:
        main([*args, "--engine", "oracle"])
    assert exited.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert errors == [
        "sensord replay: error: argument --engine: invalid choice: 'oracle' "
        "(choose from 'lstm', 'persistence')"
    ]
    assert not (tmp_path / "o").exists()
