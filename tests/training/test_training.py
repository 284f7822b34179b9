"""sensord train: parity, determinism, per-stream scaling, Ctrl-C, too little data, cells,
threads."""

import copy
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
import pytest
import torch
from onnx import numpy_helper

from sensord.core.bundle import Bundle, Cell, load_bundle
from sensord.core.engine import Engine
from sensord.errors import InputError, ParityError
from sensord.offline.series import read_series
from sensord.offline.synthetic import generate, write_csv
from sensord.training.data import MIN_ROWS_PER_STREAM, TrainingData, prepare
from sensord.training.export import PARITY_TOLERANCE, check_parity, export_sequence
from sensord.training.fit import fit
from sensord.training.model import Forecaster, StepModule
from sensord.training.options import FitOptions, TrainOptions
from sensord.training.train import TrainReport, train_bundle
from tests.trained import SMALL

pytestmark = pytest.mark.slow  # models trained, runs end to end: seconds each

CELLS: tuple[Cell, ...] = ("lstm", "gru")


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """Tests that call fit() directly run on one thread, as train_bundle does by default:
    on a busy machine, torch's default threads made them take 25-35 s instead of 1 s."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_default_model_beats_repeating_the_last_value(trained: TrainReport) -> None:
    t = trained.bundle.manifest.training
    assert (trained.bundle.manifest.layers, trained.bundle.manifest.hidden) == (2, 64)
    assert t.validation_mae < 0.95 * t.persistence_mae
    assert trained.parity <= PARITY_TOLERANCE


def test_parity_of_the_exported_sequence(history_csv: Path) -> None:
    data = prepare(read_series(history_csv), 0.2)
    model = fit(data, FitOptions(epochs=2, hidden=16, layers=2, seed=3)).model
    graph = export_sequence(model)
    assert check_parity(model, graph, data) <= PARITY_TOLERANCE


def test_parity_failure_is_an_error(history_csv: Path) -> None:
    data = prepare(read_series(history_csv), 0.2)
    model = fit(data, FitOptions(epochs=2, hidden=8, layers=1, seed=3)).model
    other = fit(data, FitOptions(epochs=2, hidden=8, layers=1, seed=4)).model
    with pytest.raises(ParityError, match=r"differs from the torch model by .* bundle not written"):
        check_parity(model, export_sequence(other), data)


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
    from sensord.offline.replay import open_pipeline, replay

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


@pytest.mark.parametrize("cell", CELLS)
def test_the_step_is_torchs_cell_exactly(cell: Cell) -> None:
    """In float64, where rounding cannot hide a wrong equation, the fused step stepped one
    sample at a time is the torch network run over the sequence."""
    torch.manual_seed(0)
    model = Forecaster(1, 6, 2, 0.0, extra_inputs=2, cell=cell).double().eval()
    torch.nn.init.normal_(model.head.weight, std=0.5)  # a trained head: h reaches y
    x = torch.randn(1, 40, 3, dtype=torch.float64)
    step = StepModule(model)
    h = torch.zeros(2, 1, 6, dtype=torch.float64)
    c = torch.zeros_like(h)
    with torch.no_grad():
        expected, (h_ref, c_ref) = model(x)
        stepped = []
        for t in range(x.shape[1]):
            y, h, c = step(x[:, t], h, c)
            stepped.append(y)
    assert torch.allclose(torch.stack(stepped, dim=1), expected, rtol=0, atol=1e-12)
    assert torch.allclose(h, h_ref, rtol=0, atol=1e-12)
    assert torch.allclose(c, c_ref, rtol=0, atol=1e-12)
    if cell == "gru":
        assert not c.any()  # carried through untouched from the zero start


def test_gru_trains_exports_passes_parity_and_loads_as_gru(
    tmp_path: Path, history_csv: Path
) -> None:
    options = TrainOptions(name="gru", fit=FitOptions(**{**SMALL.__dict__, "cell": "gru"}))
    report = train_bundle(history_csv, tmp_path / "b", options)
    assert report.parity <= PARITY_TOLERANCE
    bundle = load_bundle(tmp_path / "b")
    assert bundle.manifest.cell == "gru"
    assert bundle.manifest.training.hyperparameters["cell"] == "gru"
    engine = Engine(bundle)  # the same graph signature as an LSTM's
    h, _ = engine.zero_state(3)
    c = np.full_like(h, 0.5)
    result = engine.step(np.zeros((3, engine.inputs), np.float32), h, c)
    assert np.array_equal(result.c, c)  # a GRU has no cell state: c passes through
    assert result.h.shape == (1, 3, 8) and result.h.any()
    run = engine.run(np.zeros((4, 3, engine.inputs), np.float32), h, c)
    assert np.array_equal(run.c, c) and run.predictions.shape == (4, 3, 1)


def test_the_default_cell_is_lstm(small_bundle: Bundle) -> None:
    assert small_bundle.manifest.cell == "lstm"


def _tiny(history_csv: Path, cell: Cell) -> tuple[Forecaster, TrainingData]:
    data = prepare(read_series(history_csv), 0.2)
    return fit(data, FitOptions(epochs=2, hidden=8, layers=1, seed=3, cell=cell)).model, data


def _edit_weights(graph: bytes, change: Callable[[npt.NDArray[np.float32]], None]) -> bytes:
    """The graph with layer 0's input weights (ONNX's LSTM / GRU ``W[1, gates x H, in]``)
    changed in place."""
    model = onnx.load_model_from_string(graph)
    (first, *_) = (n for n in model.graph.node if n.op_type in {"LSTM", "GRU"})
    (tensor,) = (t for t in model.graph.initializer if t.name == first.input[1])
    weights = numpy_helper.to_array(tensor).copy()
    change(weights)
    tensor.CopyFrom(numpy_helper.from_array(weights, tensor.name))
    return model.SerializeToString()


@pytest.mark.parametrize("cell", CELLS)
def test_parity_refuses_a_graph_with_one_wrong_weight(history_csv: Path, cell: Cell) -> None:
    model, data = _tiny(history_csv, cell)

    def nudge(weights: npt.NDArray[np.float32]) -> None:
        weights[0, 0, 0] += 0.01  # from the value to the first gate's first unit

    with pytest.raises(
        ParityError,
        match=rf"differs from the torch model by .* on stream 'default' "
        rf"\(tolerance {PARITY_TOLERANCE:.0e}, .*bundle not written",
    ):
        check_parity(model, _edit_weights(export_sequence(model), nudge), data)


@pytest.mark.parametrize("cell", CELLS)
def test_parity_refuses_a_graph_with_swapped_gates(history_csv: Path, cell: Cell) -> None:
    """LSTM: input and forget gates swapped; GRU: reset and update gates swapped."""
    model, data = _tiny(history_csv, cell)
    wrong = copy.deepcopy(model)
    hidden = model.hidden
    first, second = slice(0, hidden), slice(hidden, 2 * hidden)
    with torch.no_grad():
        for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
            tensor = getattr(wrong.rnn, name)
            tensor[first], tensor[second] = tensor[second].clone(), tensor[first].clone()
    with pytest.raises(ParityError, match="differs from the torch model"):
        check_parity(model, export_sequence(wrong), data)


def test_an_untouched_graph_passes_parity_for_both_cells(history_csv: Path) -> None:
    for cell in CELLS:
        model, data = _tiny(history_csv, cell)
        assert check_parity(model, export_sequence(model), data) <= PARITY_TOLERANCE


def test_training_runs_on_the_threads_asked_for_and_restores_them(
    tmp_path: Path, history_csv: Path
) -> None:
    seen: list[int] = []

    def record(*_: float) -> None:
        seen.append(torch.get_num_threads())

    before = torch.get_num_threads()
    quick = FitOptions(**{**SMALL.__dict__, "epochs": 1})
    for threads in (1, 2):
        options = TrainOptions(fit=quick, threads=threads)
        bundle = train_bundle(history_csv, tmp_path / str(threads), options, record).bundle
        assert set(seen) == {threads}
        assert bundle.manifest.training.hyperparameters["threads"] == threads
        assert torch.get_num_threads() == before
        seen.clear()
    assert TrainOptions().threads == 1
    with pytest.raises(InputError, match="threads 0 must be at least 1"):
        train_bundle(history_csv, tmp_path / "0", TrainOptions(fit=SMALL, threads=0))


def test_cli_trains_a_gru(tmp_path: Path, history_csv: Path) -> None:
    from sensord.cli.main import build_parser, main

    out = tmp_path / "b"
    argv = ["train", str(history_csv), "--out", str(out), "--cell", "gru"]
    assert main([*argv, "--epochs", "2", "--hidden", "8", "--layers", "1"]) == 0
    manifest = load_bundle(out).manifest
    assert manifest.cell == "gru"
    assert manifest.training.hyperparameters["threads"] == 1  # the default
    # (not trained: two threads on a busy machine is what made training slow)
    assert build_parser().parse_args([*argv, "--threads", "2"]).threads == 2


def test_the_bundle_carries_the_tails_its_training_rows_taught(
    trained: TrainReport, history_csv: Path
) -> None:
    from sensord.core.detect import DetectorSettings
    from sensord.core.detect.composite import ChannelDetector
    from sensord.core.detect.histogram import EDGES
    from sensord.core.detect.tail import TOTAL
    from sensord.core.pipeline import Pipeline, PipelineSettings

    normal = trained.bundle.manifest.normal
    assert normal is not None
    rows = trained.bundle.manifest.training.rows
    assert all(0 < v <= rows for v in normal.values)
    assert all(len(row) == EDGES for row in normal.counts)
    pipeline = Pipeline(Engine(trained.bundle))
    assert isinstance(pipeline.detector, ChannelDetector)
    assert pipeline.detector.layout == normal.layout
    # A stream never seen starts from it; a route whose statistics differ does not.
    table = pipeline.new_table()
    slots, _ = table.lookup(["new"])
    pipeline.detector.start(table, slots)
    assert (table["tail_channels"][slots[0], :, TOTAL] > 0).all()
    other = Pipeline(
        Engine(trained.bundle), PipelineSettings(detector=DetectorSettings(context_span=12))
    )
    table = other.new_table()
    slots, _ = table.lookup(["new"])
    other.detector.start(table, slots)
    assert (table["tail_channels"][slots[0], :, TOTAL] == 0).all()
