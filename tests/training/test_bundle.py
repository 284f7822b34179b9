"""Bundle round trip and every way a bundle can be untrustworthy."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from sensord.core.bundle import MANIFEST_FILE, Bundle, load_bundle, sha256_hex
from sensord.core.engine import Engine
from sensord.errors import BundleError
from sensord.ops.models import write_bundle


@pytest.fixture
def copy(tmp_path: Path, small_bundle: Bundle) -> Path:
    target = tmp_path / "bundle"
    shutil.copytree(small_bundle.path, target)
    return target


def edit_manifest(path: Path, change: dict[str, object]) -> None:
    manifest = json.loads((path / MANIFEST_FILE).read_text())
    manifest.update(change)
    (path / MANIFEST_FILE).write_text(json.dumps(manifest))


def test_round_trip(tmp_path: Path, small_bundle: Bundle) -> None:
    written = write_bundle(tmp_path / "again", small_bundle.manifest, small_bundle.graph_bytes)
    assert written.manifest == small_bundle.manifest
    assert written.graph_bytes == small_bundle.graph_bytes
    loaded = load_bundle(tmp_path / "again")
    assert loaded.manifest == small_bundle.manifest
    assert loaded.manifest.graph.sha256 == sha256_hex(loaded.graph_bytes)


def test_manifest_has_the_contract_fields(small_bundle: Bundle) -> None:
    m = small_bundle.manifest
    assert m.format_version == 1
    assert m.features == ["value"]
    assert (m.layers, m.hidden) == (1, 8)
    assert m.training.rows == 1200 and m.training.train_rows + m.training.validation_rows == 1200
    assert m.training.validation_loss > 0
    assert m.calibration.threshold_error > 0
    assert m.sensord_version
    assert m.graph.kind == "sequence"


def test_engine_steps_a_dynamic_batch_through_dynamic_sequences(small_bundle: Bundle) -> None:
    engine = Engine(small_bundle)
    for batch in (1, 5, 300):
        h, c = engine.zero_state(batch)
        result = engine.step(np.zeros((batch, engine.inputs), np.float32), h, c)
        assert result.prediction.shape == (batch, 1)
        assert result.h.shape == result.c.shape == (1, batch, 8)
        for steps in (1, 16):
            run = engine.run(np.zeros((steps, batch, engine.inputs), np.float32), h, c)
            assert run.predictions.shape == (steps, batch, 1)
            assert run.h.shape == run.c.shape == (1, batch, 8)


def test_tampered_graph_fails_the_hash(copy: Path) -> None:
    graph = copy / "model.onnx"
    data = bytearray(graph.read_bytes())
    data[-1] ^= 0xFF
    graph.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"model\.onnx: sha256 .* does not match graph\.sha256"):
        load_bundle(copy)


def test_unknown_format_version(copy: Path) -> None:
    edit_manifest(copy, {"format_version": 3})
    with pytest.raises(
        BundleError,
        match=r"bundle\.json: format_version 3 is not supported \(this sensord "
        r"reads format_version 1 and 2\)",
    ):
        load_bundle(copy)


def test_heads_need_format_version_2(copy: Path) -> None:
    edit_manifest(copy, {"heads": {"spread": False, "cross": None}})  # none: still format 1
    load_bundle(copy)
    edit_manifest(copy, {"heads": {"spread": True}})
    with pytest.raises(BundleError, match=r"heads need format_version 2"):
        load_bundle(copy)


def test_a_cross_head_must_be_square_with_a_zero_diagonal(copy: Path) -> None:
    n = len(json.loads((copy / MANIFEST_FILE).read_text())["features"])
    weights = [[0.5] * n for _ in range(n)]
    edit_manifest(
        copy, {"format_version": 2, "heads": {"cross": {"weights": weights, "gain": [1.0] * n}}}
    )
    with pytest.raises(
        BundleError, match=r"field heads\.cross: Value error, weights: the diagonal"
    ):
        load_bundle(copy)


def test_missing_field_is_named(copy: Path) -> None:
    manifest = json.loads((copy / MANIFEST_FILE).read_text())
    del manifest["calibration"]["log_error_std"]
    (copy / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=r"field calibration\.log_error_std: Field required"):
        load_bundle(copy)


def test_unknown_field_is_rejected(copy: Path) -> None:
    edit_manifest(copy, {"surprise": 1})
    with pytest.raises(BundleError, match="field surprise: Extra inputs are not permitted"):
        load_bundle(copy)


def test_scaling_must_match_features(copy: Path) -> None:
    edit_manifest(copy, {"scaling": {"center": [0.0, 1.0], "scale": [1.0, 1.0]}})
    with pytest.raises(BundleError, match="scaling: 2 values for 1 features"):
        load_bundle(copy)


def test_not_json(copy: Path) -> None:
    (copy / MANIFEST_FILE).write_text("{nope")
    with pytest.raises(BundleError, match=r"bundle\.json line 1: not valid JSON"):
        load_bundle(copy)


def test_not_a_bundle(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="not a bundle directory"):
        load_bundle(tmp_path / "missing")
    with pytest.raises(BundleError, match=r"bundle\.json: no such file"):
        load_bundle(tmp_path)


def test_graph_shapes_are_checked_against_the_manifest(copy: Path) -> None:
    edit_manifest(copy, {"hidden": 16})
    bundle = load_bundle(copy)  # the hash still matches: only the engine can tell
    with pytest.raises(
        BundleError,
        match=r"input h has shape \[1,B,8\], the manifest implies "
        r"\[1,B,16\]",
    ):
        Engine(bundle)


def test_graph_that_is_not_onnx(copy: Path) -> None:
    junk = b"not an onnx graph"
    (copy / "model.onnx").write_bytes(junk)
    manifest = json.loads((copy / MANIFEST_FILE).read_text())
    manifest["graph"]["sha256"] = sha256_hex(junk)
    (copy / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=r"model\.onnx: not an ONNX graph"):
        Engine(load_bundle(copy))


def test_a_graph_with_external_data_is_refused(copy: Path) -> None:
    import onnx

    model = onnx.load_model_from_string((copy / "model.onnx").read_bytes())
    onnx.save_model(
        model,
        str(copy / "model.onnx"),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="weights.bin",
        size_threshold=0,
    )
    assert (copy / "weights.bin").exists()
    graph = copy / "model.onnx"
    edit_manifest(
        copy,
        {"graph": {"file": "model.onnx", "sha256": sha256_hex(graph.read_bytes()), "opset": 17}},
    )
    with pytest.raises(BundleError, match=r"model\.onnx: a tensor keeps its data in another file"):
        load_bundle(copy)


def test_the_graph_walk_sees_every_tensor_and_rejects_garbage(small_bundle: Bundle) -> None:
    from sensord.core.graphcheck import uses_external_data
    from sensord.errors import MalformedGraphError

    assert uses_external_data(small_bundle.graph_bytes) is False
    for garbage in (b"\xff", b"\x0a\x05abc", b"\x0f"):
        with pytest.raises(MalformedGraphError):
            uses_external_data(garbage)


def test_a_manifest_from_before_cells_loads_as_lstm(copy: Path) -> None:
    manifest = json.loads((copy / MANIFEST_FILE).read_text())
    del manifest["cell"]
    (copy / MANIFEST_FILE).write_text(json.dumps(manifest))
    assert load_bundle(copy).manifest.cell == "lstm"


def test_an_unknown_cell_is_refused(copy: Path) -> None:
    edit_manifest(copy, {"cell": "transformer"})
    with pytest.raises(BundleError, match=r"field cell: Input should be 'lstm' or 'gru'"):
        load_bundle(copy)
