"""sensord train: parity, determinism, per-stream scaling, Ctrl-C, too little data."""

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from sensord.bundle import Bundle
from sensord.errors import InputError, ParityError
from sensord.series import read_series
from sensord.synthetic import generate, write_csv
from sensord.training.data import MIN_ROWS_PER_STREAM, prepare
from sensord.training.export import PARITY_TOLERANCE, check_parity, export_step
from sensord.training.fit import FitOptions, fit
from sensord.training.train import TrainOptions, TrainReport, train_bundle
from tests.conftest import SMALL


def test_default_model_beats_repeating_the_last_value(trained: TrainReport) -> None:
    t = trained.bundle.manifest.training
    assert (trained.bundle.manifest.layers, trained.bundle.manifest.hidden) == (2, 64)
    assert t.validation_mae < 0.95 * t.persistence_mae
    assert trained.parity <= PARITY_TOLERANCE


def test_parity_of_the_exported_step(history_csv: Path) -> None:
    data = prepare(read_series(history_csv), 0.2)
    model = fit(data, FitOptions(epochs=2, hidden=16, layers=2, seed=3)).model
    graph = export_step(model)
    assert check_parity(model, graph, data) <= PARITY_TOLERANCE


def test_parity_failure_is_an_error(history_csv: Path) -> None:
    data = prepare(read_series(history_csv), 0.2)
    model = fit(data, FitOptions(epochs=2, hidden=8, layers=1, seed=3)).model
    other = fit(data, FitOptions(epochs=2, hidden=8, layers=1, seed=4)).model
    with pytest.raises(ParityError, match=r"differs from the torch model by .* bundle not written"):
        check_parity(model, export_step(other), data)


def test_same_seed_same_bundle(
    train_small: Callable[[Path, str], TrainReport], history_csv: Path, small_bundle: Bundle
) -> None:
    again = train_small(history_csv, "small").bundle
    assert again.graph_bytes == small_bundle.graph_bytes
    assert (again.path / "bundle.json").read_bytes() == (
        small_bundle.path / "bundle.json"
    ).read_bytes()


def test_other_seed_other_bundle(tmp_path: Path, history_csv: Path, small_bundle: Bundle) -> None:
    options = TrainOptions(name="small", fit=FitOptions(**{**SMALL.__dict__, "seed": 8}))
    other = train_bundle(history_csv, tmp_path / "b", options).bundle
    assert other.graph_bytes != small_bundle.graph_bytes


def test_long_format_gets_per_stream_scaling(tmp_path: Path) -> None:
    path = tmp_path / "long.csv"
    a, b = generate(300, seed=1), generate(300, seed=2)
    lines = ["timestamp,stream,value"]
    for i in range(300):
        lines.append(f"{a.timestamps[i]:.0f},a,{a.values[i]:.5f}")
        lines.append(f"{b.timestamps[i]:.0f},b,{b.values[i] * 10 + 500:.5f}")
    path.write_text("\n".join(lines) + "\n")
    bundle = train_bundle(path, tmp_path / "b", TrainOptions(name="long", fit=SMALL)).bundle
    scaling = bundle.manifest.stream_scaling
    assert set(scaling) == {"a", "b"}
    assert scaling["b"].center[0] == pytest.approx(scaling["a"].center[0] * 10 + 500, rel=0.01)
    assert bundle.manifest.training.streams == 2
    assert bundle.manifest.training.validation_rows == 2 * 60


def test_split_is_by_time_and_scaling_sees_only_training_rows(history_csv: Path) -> None:
    series = read_series(history_csv)
    data = prepare(series, 0.25)
    stream = data.streams[0]
    assert stream.split == 900
    train_values = series.values[:900, 0]
    assert stream.scaling.center[0] == pytest.approx(train_values.mean())
    assert stream.scaling.scale[0] == pytest.approx(train_values.std())


def test_too_few_rows_says_how_many_are_needed(tmp_path: Path) -> None:
    path = tmp_path / "short.csv"
    write_csv(path, generate(MIN_ROWS_PER_STREAM - 1))
    with pytest.raises(
        InputError,
        match=rf"short\.csv: {MIN_ROWS_PER_STREAM - 1} usable rows; "
        rf"training needs at least {MIN_ROWS_PER_STREAM}",
    ):
        train_bundle(path, tmp_path / "b", TrainOptions(fit=SMALL))


def test_skipped_rows_are_counted_in_the_manifest(tmp_path: Path, history_csv: Path) -> None:
    lines = history_csv.read_text().splitlines()
    lines[10] = lines[10].split(",")[0] + ","
    lines[20] = lines[20].split(",")[0] + ",nan"
    path = tmp_path / "holes.csv"
    path.write_text("\n".join(lines) + "\n")
    bundle = train_bundle(path, tmp_path / "b", TrainOptions(fit=SMALL)).bundle
    assert bundle.manifest.training.skipped_rows == 2
    assert bundle.manifest.training.train_rows + bundle.manifest.training.validation_rows == 1198


def test_ctrl_c_keeps_the_best_model_so_far(tmp_path: Path, history_csv: Path) -> None:
    def interrupt_at_epoch_3(epoch: int, *_: float) -> None:
        if epoch == 3:
            raise KeyboardInterrupt

    options = TrainOptions(fit=FitOptions(**{**SMALL.__dict__, "epochs": 50}))
    report = train_bundle(history_csv, tmp_path / "b", options, interrupt_at_epoch_3)
    t = report.bundle.manifest.training
    assert t.interrupted and t.epochs_run == 3 and 0 <= t.best_epoch <= 3
    assert (tmp_path / "b" / "model.onnx").exists()


def test_nab_sized_file_trains_usefully(tmp_path: Path) -> None:
    """~400 rows (a NAB probationary period) must still give a model no worse than persistence."""
    path = tmp_path / "nab_sized.csv"
    write_csv(path, generate(400, seed=5))
    report = train_bundle(path, tmp_path / "b", TrainOptions())
    t = report.bundle.manifest.training
    assert t.validation_mae <= 1.05 * t.persistence_mae
    assert np.isfinite(report.bundle.manifest.calibration.log_error_mean)


def test_time_of_day_inputs_when_the_data_shows_days(tmp_path: Path, history_csv: Path) -> None:
    daily = train_bundle(history_csv, tmp_path / "daily", TrainOptions(fit=SMALL)).bundle
    assert daily.manifest.time_features == ["tod_sin", "tod_cos"]  # 4 days every 5 minutes
    short = tmp_path / "short.csv"
    write_csv(short, generate(300, seed=4))  # one day: no cycle to learn
    plain = train_bundle(short, tmp_path / "plain", TrainOptions(fit=SMALL)).bundle
    assert plain.manifest.time_features == []
    forced = train_bundle(
        short, tmp_path / "forced", TrainOptions(fit=SMALL, time_of_day="on")
    ).bundle
    assert forced.manifest.time_features == ["tod_sin", "tod_cos"]


def test_asinh_transform_round_trips_through_the_core(
    tmp_path: Path, history_csv: Path, clean_csv: Path
) -> None:
    from sensord.replay import open_pipeline, replay

    report = train_bundle(history_csv, tmp_path / "b", TrainOptions(fit=SMALL, transform="asinh"))
    assert report.bundle.manifest.transform == "asinh"
    assert report.parity <= PARITY_TOLERANCE
    result = replay(clean_csv, open_pipeline(report.bundle.path))
    second = result.outcomes[1]
    assert second is not None and second.expected is not None
    assert abs(second.expected[0] - second.sample.values[0]) < 3.0  # back in raw units


def test_training_range_is_in_the_manifest(small_bundle: Bundle, history_csv: Path) -> None:
    values = read_series(history_csv).values[:, 0]
    scaling = small_bundle.manifest.scaling
    assert scaling.low == [pytest.approx(values.min())]
    assert scaling.high == [pytest.approx(values.max())]
