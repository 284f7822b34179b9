"""The model's heads (``sensord train --spread --cross``): trained, exported with a parity
check that covers them, versioned in the manifest, and acting in the core as they should."""

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from sensord.core.bundle import MANIFEST_FILE, Bundle
from sensord.core.engine import Engine
from sensord.core.pipeline import Pipeline
from sensord.errors import InputError, ParityError
from sensord.offline.replay import replay
from sensord.offline.series import read_series
from sensord.training.data import prepare
from sensord.training.export import check_parity, export_sequence
from sensord.training.fit import fit
from sensord.training.heads import relative_spread, set_spread_reference
from sensord.training.options import TrainOptions
from sensord.training.train import train_bundle
from tests.trained import SMALL

pytestmark = pytest.mark.slow  # models trained: seconds each

ROWS = 1_200
BREAK_AT = 1_000  # the relation between the first two features breaks here


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _write(path: Path, values: np.ndarray, start: int = 0) -> Path:
    stamps = 1_700_000_000 + 60 * np.arange(start, start + len(values))
    lines = ["timestamp,flow,pressure,noise"]
    lines += [f"{t},{a:.6f},{b:.6f},{c:.6f}" for t, (a, b, c) in zip(stamps, values, strict=True)]
    path.write_text("\n".join(lines) + "\n")
    return path


def _pump(rng: np.random.Generator) -> np.ndarray:
    """Flow wanders, pressure follows it step for step (their surprises move together), and
    a third feature wanders on its own; from ``BREAK_AT`` pressure stops following."""
    flow = np.cumsum(rng.normal(0, 1.0, ROWS)) * 0.3 + 10
    pressure = 2.0 * flow + rng.normal(0, 0.05, ROWS)
    pressure[BREAK_AT:] = pressure[BREAK_AT - 1] + rng.normal(0, 0.05, ROWS - BREAK_AT)
    other = np.cumsum(rng.normal(0, 1.0, ROWS)) * 0.3
    return np.stack([flow, pressure, other], axis=1)


@pytest.fixture(scope="module")
def pump(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The pump's first 800 rows (to train on) and all of it (to replay)."""
    folder = tmp_path_factory.mktemp("pump")
    values = _pump(np.random.default_rng(3))
    return _write(folder / "train.csv", values[:800]), _write(folder / "all.csv", values)


def _train(tmp_path: Path, data: Path, *, spread: bool, cross: bool) -> Bundle:
    fit_options = dataclasses.replace(SMALL, epochs=8, spread=spread)
    options = TrainOptions(fit=fit_options, cross=cross, time_of_day="off")
    return train_bundle(data, tmp_path / f"b-{spread}-{cross}", options).bundle


def test_heads_are_versioned_and_a_bundle_without_them_stays_format_1(
    tmp_path: Path, pump: tuple[Path, Path]
) -> None:
    plain = _train(tmp_path, pump[0], spread=False, cross=False)
    headed = _train(tmp_path, pump[0], spread=True, cross=True)
    assert plain.manifest.format_version == 1
    assert "heads" not in json.loads((plain.path / MANIFEST_FILE).read_text())
    assert headed.manifest.format_version == 2
    assert headed.manifest.heads.spread and headed.manifest.heads.cross is not None
    engine = Engine(headed)  # opens: the graph's fourth output s has the declared shape
    h, c = engine.zero_state(2)
    result = engine.run(np.zeros((5, 2, 3), np.float32), h, c)
    assert result.spread is not None and result.spread.shape == (5, 2, 3)
    assert (result.spread > 0).all()


def test_the_virtual_sensor_learns_the_relation_and_sees_it_break(
    tmp_path: Path, pump: tuple[Path, Path]
) -> None:
    bundle = _train(tmp_path, pump[0], spread=False, cross=True)
    cross = bundle.manifest.heads.cross
    assert cross is not None
    weights = np.array(cross.weights)
    # Pressure's surprise is explained by flow's, not by the other's; and explaining it
    # narrows it a lot (the gain puts it back on its own scale).
    assert abs(weights[1, 0]) > 20 * abs(weights[1, 2])
    assert cross.gain[1] > 3.0 and cross.gain[2] < 1.1
    plain = _train(tmp_path, pump[0], spread=False, cross=False)
    errors = {}
    for name, b in (("cross", bundle), ("plain", plain)):
        result = replay(pump[1], Pipeline(Engine(b)), out_of_order="drop")
        errors[name] = np.array([o.error if o else np.nan for o in result.outcomes])
    # After the break, flow keeps moving and pressure does not: each alone is an ordinary
    # step, together they are a broken relation, which only the virtual sensor sees.
    after = slice(BREAK_AT + 5, ROWS)
    ratio = np.nanmedian(errors["cross"][after]) / np.nanmedian(errors["plain"][after])
    before = slice(400, BREAK_AT)
    usual = np.nanmedian(errors["cross"][before]) / np.nanmedian(errors["plain"][before])
    assert ratio > 2.5 * usual, (ratio, usual)


def test_the_spread_is_relative_to_its_median_on_the_training_rows(
    pump: tuple[Path, Path],
) -> None:
    data = prepare(read_series(pump[0]), 0.2, "off")
    model = fit(data, dataclasses.replace(SMALL, epochs=5, spread=True)).model
    set_spread_reference(model, data)
    stream = data.streams[0]
    spread = relative_spread(model, stream.inputs)[: stream.split]
    np.testing.assert_allclose(np.median(spread, axis=0), 1.0, rtol=1e-6)
    assert check_parity(model, export_sequence(model), data) < 1e-4


def test_parity_covers_the_spread_head(pump: tuple[Path, Path]) -> None:
    data = prepare(read_series(pump[0]), 0.2, "off")
    model = fit(data, dataclasses.replace(SMALL, epochs=3, spread=True)).model
    set_spread_reference(model, data)
    graph = export_sequence(model)
    assert model.spread_head is not None
    with torch.no_grad():
        model.spread_head.bias.add_(0.01)  # only the spread differs from the graph now
    with pytest.raises(ParityError, match="differs from the torch model"):
        check_parity(model, graph, data)


def test_the_horizon_head_is_exported_checked_and_refused_at_one(
    tmp_path: Path, pump: tuple[Path, Path]
) -> None:
    options = TrainOptions(fit=dataclasses.replace(SMALL, epochs=4, horizon=6), time_of_day="off")
    bundle = train_bundle(pump[0], tmp_path / "ahead", options).bundle
    assert bundle.manifest.heads.horizon == 6 and len(bundle.manifest.heads.horizon_gain) == 3
    engine = Engine(bundle)
    h, c = engine.zero_state(1)
    result = engine.run(np.zeros((4, 1, 3), np.float32), h, c)
    assert result.ahead is not None and result.spread is None
    data = prepare(read_series(pump[0]), 0.2, "off")
    model = fit(data, dataclasses.replace(SMALL, epochs=2, horizon=6)).model
    graph = export_sequence(model)
    assert model.ahead_head is not None
    with torch.no_grad():
        model.ahead_head.bias.add_(0.01)  # only the look ahead differs from the graph now
    with pytest.raises(ParityError, match="differs from the torch model"):
        check_parity(model, graph, data)
    one = TrainOptions(fit=dataclasses.replace(SMALL, horizon=1))
    with pytest.raises(InputError, match=r"horizon 1: 0 \(no horizon head\) or at least 2"):
        train_bundle(pump[0], tmp_path / "one", one)


def test_a_virtual_sensor_needs_two_features(tmp_path: Path) -> None:
    values = np.cumsum(np.random.default_rng(1).normal(0, 1, (300, 1)), axis=0)
    stamps = 1_700_000_000 + 60 * np.arange(300)
    data = tmp_path / "one.csv"
    data.write_text(
        "timestamp,value\n" + "".join(f"{t},{v[0]}\n" for t, v in zip(stamps, values, strict=True))
    )
    with pytest.raises(InputError, match=r"one\.csv: --cross needs two features or more"):
        train_bundle(data, tmp_path / "b", TrainOptions(fit=SMALL, cross=True))
