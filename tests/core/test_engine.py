"""The engine over both kinds of graph a bundle can hold: a sequence's ``run`` is one session
call that gives what a loop of steps gives, a step graph (bundles from before sequences)
still loads and runs as that loop, and the fakes' ``run`` is their step's loop."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from sensord.arrays import F32
from sensord.core.bundle import (
    GRAPH_FILE,
    MANIFEST_FILE,
    Bundle,
    Graph,
    GraphKind,
    load_bundle,
    sha256_hex,
)
from sensord.core.engine import Engine, PersistenceEngine, StepEngine
from sensord.errors import BundleError
from tests.core.onnxgraph import OPSET, lstm_graph
from tests.fakes import NumpyEngine, fake_bundle

# onnxruntime's LSTM over T steps and over T calls of one step, and numpy's gates, differ by
# float32 rounding only (a wrong gate or state carried wrongly is off by 1e-2 or more).
ROUNDING = 1e-5


def fake() -> NumpyEngine:
    return NumpyEngine(fake_bundle(layers=2, hidden=8, time_features=("tod_sin", "tod_cos")))


def bundle_of(network: NumpyEngine, kind: GraphKind) -> Bundle:
    """A bundle in memory whose graph is ``network``'s, of ``kind``."""
    graph = lstm_graph(network, kind)
    manifest = network.bundle.manifest.model_copy(
        update={"graph": Graph(sha256=sha256_hex(graph), opset=OPSET, kind=kind)}
    )
    return Bundle(Path(f"/nonexistent/{kind}"), manifest, graph)


def readings(steps: int, batch: int, inputs: int = 3, seed: int = 0) -> F32:
    return np.random.default_rng(seed).normal(0, 1.5, (steps, batch, inputs)).astype(np.float32)


def stepped(engine: StepEngine, x: F32, h: F32, c: F32) -> tuple[F32, F32, F32]:
    """``x[T, B, I]`` one ``step`` at a time, the state carried."""
    predictions = []
    for t in range(len(x)):
        result = engine.step(x[t], h, c)
        predictions.append(result.prediction)
        h, c = result.h, result.c
    return np.array(predictions), h, c


@pytest.mark.parametrize(("steps", "batch"), [(1, 1), (1, 5), (7, 1), (7, 5)])
def test_a_sequence_graph_runs_t_steps_in_one_call(steps: int, batch: int) -> None:
    network = fake()
    timings: list[float] = []
    engine = Engine(bundle_of(network, "sequence"), timings=timings)
    x = readings(steps, batch)
    h, c = engine.zero_state(batch)
    h[:] = 0.3  # a stream that has run before: the state must reach every step
    result = engine.run(x, h, c)
    assert len(timings) == 1  # one session call
    assert result.predictions.shape == (steps, batch, 1)
    assert result.predictions.dtype == np.float32
    predictions, h_last, c_last = stepped(engine, x, h, c)
    assert len(timings) == 1 + steps
    np.testing.assert_allclose(result.predictions, predictions, rtol=0, atol=ROUNDING)
    np.testing.assert_allclose(result.h, h_last, rtol=0, atol=ROUNDING)
    np.testing.assert_allclose(result.c, c_last, rtol=0, atol=ROUNDING)
    # ... and it is the network the fake computes in numpy, gate for gate.
    expected = network.run(x, h, c)
    np.testing.assert_allclose(result.predictions, expected.predictions, rtol=0, atol=ROUNDING)
    np.testing.assert_allclose(result.c, expected.c, rtol=0, atol=ROUNDING)


def test_a_step_graph_runs_as_a_loop_of_steps_with_the_sequences_numbers() -> None:
    network = fake()
    timings: list[float] = []
    old = Engine(bundle_of(network, "step"), timings=timings)
    x = readings(6, 4)
    h, c = old.zero_state(4)
    result = old.run(x, h, c)
    assert len(timings) == 6  # one session call per step, as the daemon timed them before
    predictions, h_last, c_last = stepped(old, x, h, c)
    assert np.array_equal(result.predictions, predictions)  # the same calls: the same bits
    assert np.array_equal(result.h, h_last) and np.array_equal(result.c, c_last)
    new = Engine(bundle_of(network, "sequence")).run(x, h, c)
    np.testing.assert_allclose(result.predictions, new.predictions, rtol=0, atol=ROUNDING)
    np.testing.assert_allclose(result.h, new.h, rtol=0, atol=ROUNDING)


@pytest.mark.parametrize("kind", ["sequence", "step"])
def test_a_run_in_parts_carries_the_state_as_one_run(kind: GraphKind) -> None:
    engine = Engine(bundle_of(fake(), kind))
    x = readings(9, 3)
    h, c = engine.zero_state(3)
    whole = engine.run(x, h, c)
    first = engine.run(x[:4], h, c)
    second = engine.run(x[4:], first.h, first.c)
    joined = np.concatenate([first.predictions, second.predictions])
    np.testing.assert_allclose(joined, whole.predictions, rtol=0, atol=ROUNDING)
    np.testing.assert_allclose(second.c, whole.c, rtol=0, atol=ROUNDING)


def test_a_long_run_is_cut_into_calls_of_whole_steps() -> None:
    network = fake()
    x = readings(7, 3)
    h, c = network.zero_state(3)
    whole = Engine(bundle_of(network, "sequence")).run(x, h, c)
    timings: list[float] = []
    engine = Engine(bundle_of(network, "sequence"), timings=timings, rows_per_call=8)
    cut = engine.run(x, h, c)
    assert len(timings) == 4  # 2, 2, 2 and 1 steps of 3 streams: at most 8 rows a call
    np.testing.assert_allclose(cut.predictions, whole.predictions, rtol=0, atol=ROUNDING)
    np.testing.assert_allclose(cut.h, whole.h, rtol=0, atol=ROUNDING)
    np.testing.assert_allclose(cut.c, whole.c, rtol=0, atol=ROUNDING)
    narrow = Engine(bundle_of(network, "sequence"), timings=timings, rows_per_call=2)
    narrow.run(x, h, c)  # wider than a call's rows: one step a call, never less
    assert len(timings) == 4 + 7


@pytest.mark.parametrize("kind", ["sequence", "step"])
def test_no_steps_leave_the_state_as_it_was(kind: GraphKind) -> None:
    timings: list[float] = []
    engine = Engine(bundle_of(fake(), kind), timings=timings)
    h, c = engine.zero_state(2)
    h[:] = 0.5
    result = engine.run(np.empty((0, 2, 3), np.float32), h, c)
    assert result.predictions.shape == (0, 2, 1)
    assert result.h is h and result.c is c
    assert timings == []


def test_a_bundle_from_before_graph_kinds_loads_as_a_step_graph(tmp_path: Path) -> None:
    """A manifest without ``graph.kind``, its graph a step: what sensord wrote before."""
    network = fake()
    graph = lstm_graph(network, "step")
    manifest = network.bundle.manifest.model_copy(
        update={"graph": Graph(sha256=sha256_hex(graph), opset=OPSET)}
    )
    written = manifest.model_dump(mode="json")
    del written["graph"]["kind"]
    (tmp_path / MANIFEST_FILE).write_text(json.dumps(written))
    (tmp_path / GRAPH_FILE).write_bytes(graph)
    bundle = load_bundle(tmp_path)
    assert bundle.manifest.graph.kind == "step"
    x = readings(5, 2)
    h, c = network.zero_state(2)
    result = Engine(bundle).run(x, h, c)
    np.testing.assert_allclose(result.predictions, network.run(x, h, c).predictions, atol=ROUNDING)


@pytest.mark.parametrize(
    ("graph", "manifest", "message"),
    [
        ("step", "sequence", r"input x has shape \[B,3\], the manifest implies \[T,B,3\]"),
        ("sequence", "step", r"input x has shape \[T,B,3\], the manifest implies \[B,3\]"),
    ],
)
def test_a_graph_of_another_kind_than_its_manifest_says_is_refused(
    graph: GraphKind, manifest: GraphKind, message: str
) -> None:
    built = bundle_of(fake(), graph)
    kind = built.manifest.graph.model_copy(update={"kind": manifest})
    mislabelled = Bundle(
        built.path, built.manifest.model_copy(update={"graph": kind}), built.graph_bytes
    )
    with pytest.raises(BundleError, match=rf"{message} \(graph\.kind {manifest}, F=1"):
        Engine(mislabelled)


@pytest.mark.parametrize("make", [NumpyEngine, PersistenceEngine])
def test_the_other_engines_run_as_a_loop_of_their_steps(
    make: Callable[[Bundle], StepEngine],
) -> None:
    engine = make(fake_bundle(layers=2, hidden=8))
    x = readings(6, 3, inputs=1)
    h, c = engine.zero_state(3)
    result = engine.run(x, h, c)
    predictions, h_last, c_last = stepped(engine, x, h, c)
    assert np.array_equal(result.predictions, predictions)
    assert np.array_equal(result.h, h_last) and np.array_equal(result.c, c_last)
