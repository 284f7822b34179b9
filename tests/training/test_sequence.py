"""The bundle's sequence graph: torch's nn.LSTM / nn.GRU exported as ONNX's own operator, its
parity check run in one call and one row per call, and bundles holding the step graph of
before still loading and giving the same numbers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from sensord.core.bundle import GRAPH_FILE, MANIFEST_FILE, Bundle, Cell, load_bundle, sha256_hex
from sensord.core.engine import Engine
from sensord.errors import ParityError
from sensord.offline.replay import open_pipeline, replay
from sensord.offline.series import read_series
from sensord.training.data import prepare
from sensord.training.export import PARITY_TOLERANCE, check_parity, export_sequence, export_step
from sensord.training.fit import fit
from sensord.training.model import Forecaster, SequenceModule
from sensord.training.options import FitOptions
from sensord.training.train import TrainReport

pytestmark = pytest.mark.slow  # models trained, runs end to end: seconds each

# float32 rounding: the two graphs order their sums differently, nothing more (a wrong gate
# differs by 1e-3 or more, see export.py).
ROUNDING = 1e-5


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_the_sequence_module_is_the_forecaster_time_first(cell: Cell) -> None:
    """In float64, where rounding cannot hide a mistake, from a state that is not zero."""
    torch.manual_seed(0)
    model = Forecaster(1, 6, 2, 0.0, extra_inputs=2, cell=cell).double().eval()
    torch.nn.init.normal_(model.head.weight, std=0.5)  # a trained head: h reaches y
    x = torch.randn(5, 30, 3, dtype=torch.float64)  # batch first, as the Forecaster takes it
    h = torch.randn(2, 5, 6, dtype=torch.float64)
    c = torch.randn(2, 5, 6, dtype=torch.float64) if cell == "lstm" else torch.zeros_like(h)
    with torch.no_grad():
        expected, (h_ref, c_ref) = model(x, (h, c))
        y, h_out, c_out = SequenceModule(model)(x.transpose(0, 1), h, c)
    assert torch.allclose(y.transpose(0, 1), expected, rtol=0, atol=1e-12)
    assert torch.allclose(h_out, h_ref, rtol=0, atol=1e-12)
    assert torch.allclose(c_out, c_ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_the_graph_runs_onnxs_own_recurrent_operator(cell: Cell) -> None:
    graph = onnx.load_model_from_string(export_sequence(Forecaster(1, 8, 2, 0.0, cell=cell)))
    ops = [node.op_type for node in graph.graph.node]
    assert ops.count(cell.upper()) == 2  # one per layer, each over the whole sequence
    assert "Loop" not in ops and "Scan" not in ops


def test_parity_refuses_a_graph_that_drops_the_state_it_is_given(history_csv: Path) -> None:
    """Such a graph is right in one call from a zero state; only the run of one row per
    call, the state carried between calls as the daemon carries it, can tell."""
    data = prepare(read_series(history_csv), 0.2)
    model = fit(data, FitOptions(epochs=2, hidden=8, layers=1, seed=3)).model
    graph = onnx.load_model_from_string(export_sequence(model))
    for node in graph.graph.node:
        if node.op_type == "LSTM":
            node.input[5], node.input[6] = "", ""  # initial h and c: zero whatever is given
    with pytest.raises(ParityError, match="differs from the torch model"):
        check_parity(model, graph.SerializeToString(), data)
    assert check_parity(model, export_sequence(model), data) <= PARITY_TOLERANCE


def old_bundle(trained: TrainReport, folder: Path) -> Bundle:
    """``trained``'s bundle as sensord wrote it before sequences: its model exported as ONE
    step, the manifest without ``graph.kind``."""
    shutil.copytree(trained.bundle.path, folder)
    graph = export_step(trained.model)
    (folder / GRAPH_FILE).write_bytes(graph)
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    manifest["graph"] = {"file": GRAPH_FILE, "sha256": sha256_hex(graph), "opset": 17}
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest))
    return load_bundle(folder)


def test_a_step_bundle_still_loads_and_gives_the_sequence_bundles_numbers(
    trained: TrainReport, tmp_path: Path
) -> None:
    old = old_bundle(trained, tmp_path / "old")
    assert old.manifest.graph.kind == "step" and trained.bundle.manifest.graph.kind == "sequence"
    step, sequence = Engine(old), Engine(trained.bundle)
    x = np.random.default_rng(0).normal(0, 1, (500, 4, step.inputs)).astype(np.float32)
    h, c = step.zero_state(4)
    got, expected = step.run(x, h, c), sequence.run(x, h, c)
    for name in ("predictions", "h", "c"):
        difference = np.abs(getattr(got, name) - getattr(expected, name))
        assert difference.max() <= ROUNDING * (1 + np.abs(getattr(expected, name)).max()), name


def test_a_step_bundle_replays_to_the_sequence_bundles_alerts(
    trained: TrainReport, tmp_path: Path, anomalous_csv: Path
) -> None:
    old = replay(anomalous_csv, open_pipeline(old_bundle(trained, tmp_path / "old").path))
    new = replay(anomalous_csv, open_pipeline(trained.bundle.path))
    assert [(e.event, e.ts) for e in old.events] == [(e.event, e.ts) for e in new.events]
    assert len(new.events) > 0  # the file's anomalies are raised: there is something to compare
    old_scores = np.array([o.score for o in old.outcomes if o is not None], np.float64)
    new_scores = np.array([o.score for o in new.outcomes if o is not None], np.float64)
    np.testing.assert_allclose(old_scores, new_scores, rtol=0, atol=1e-4)
