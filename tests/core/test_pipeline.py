"""The core: samples in, outcomes and events out; no files, no network, no clock."""

from collections.abc import Sequence

import numpy as np
import pytest

from sensord.core.alert import AlertPolicy
from sensord.core.bundle import Bundle
from sensord.core.detect import DetectorSettings
from sensord.core.pipeline import Pipeline, PipelineSettings
from sensord.core.sample import Outcome, Sample, Status
from sensord.core.state import ColumnSpec
from sensord.offline.synthetic import generate
from tests.fakes import NumpyEngine


def samples_of(stream: str, n: int, seed: int, step: float = 300.0) -> list[Sample]:
    g = generate(n, seed=seed, interval_s=step)
    return [
        Sample(stream, float(t), np.array([v])) for t, v in zip(g.timestamps, g.values, strict=True)
    ]


def scores(outcomes: Sequence[Outcome]) -> list[float]:
    return [o.score for o in outcomes]


@pytest.fixture
def pipeline(small_bundle: Bundle) -> Pipeline:
    return Pipeline(NumpyEngine(small_bundle))


def test_batch_size_does_not_change_anything(small_bundle: Bundle) -> None:
    samples = samples_of("a", 200, seed=1)
    one_by_one = Pipeline(NumpyEngine(small_bundle))
    stepwise = [one_by_one.process([s])[0] for s in samples]
    batched = Pipeline(NumpyEngine(small_bundle)).process(samples)
    assert [o.status for o in batched] == [o.status for o in stepwise]
    np.testing.assert_array_equal(scores(batched), scores(stepwise))


def test_streams_in_one_wave_do_not_touch_each_other(small_bundle: Bundle) -> None:
    a, b = samples_of("a", 120, seed=1), samples_of("b", 120, seed=2)
    mixed = [s for pair in zip(a, b, strict=True) for s in pair]
    together = Pipeline(NumpyEngine(small_bundle)).process(mixed)
    alone_a = Pipeline(NumpyEngine(small_bundle)).process(a)
    alone_b = Pipeline(NumpyEngine(small_bundle)).process(b)
    np.testing.assert_allclose(scores(together[0::2]), scores(alone_a), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(scores(together[1::2]), scores(alone_b), rtol=1e-5, atol=1e-6)


def test_first_sample_has_no_score_then_expected_is_the_previous_prediction(
    pipeline: Pipeline,
) -> None:
    first, second = pipeline.process(samples_of("a", 2, seed=1))
    assert first.status is Status.FIRST and np.isnan(first.score) and first.expected is None
    assert second.status is Status.SCORED and 0 <= second.score <= 1
    assert second.expected is not None
    scaling = pipeline.bundle.manifest.scaling
    x = (second.sample.values[0] - scaling.center[0]) / scaling.scale[0]
    predicted = (second.expected[0] - scaling.center[0]) / scaling.scale[0]
    assert second.error == pytest.approx(abs(x - predicted), rel=1e-4)


def test_duplicates_and_late_samples_are_dropped_and_counted(small_bundle: Bundle) -> None:
    samples = samples_of("a", 50, seed=1)
    clean = Pipeline(NumpyEngine(small_bundle)).process(samples)
    noisy_pipeline = Pipeline(NumpyEngine(small_bundle))
    noisy_input = [*samples[:30], samples[29], samples[10], *samples[30:]]
    noisy = noisy_pipeline.process(noisy_input)
    assert noisy[30].status is Status.DUPLICATE and noisy[31].status is Status.LATE
    assert noisy_pipeline.counters.duplicate == 1 and noisy_pipeline.counters.late == 1
    kept = noisy[:30] + noisy[32:]
    np.testing.assert_array_equal(scores(kept), scores(clean))


def test_a_gap_resets_the_stream_and_it_warms_up_again(small_bundle: Bundle) -> None:
    policy = AlertPolicy(warmup=5)
    pipe = Pipeline(NumpyEngine(small_bundle), PipelineSettings(alerts=policy, max_gap_s=3600))
    samples = samples_of("a", 40, seed=1)
    pipe.process(samples)
    later = samples[-1].ts + 7200
    huge = [Sample("a", later + 300 * i, np.array([1e4])) for i in range(5)]
    after_gap = pipe.process(huge)
    assert after_gap[0].reset and after_gap[0].status is Status.FIRST
    assert pipe.counters.resets == 1
    assert not any(o.alert for o in after_gap)  # warming up: huge errors raise nothing


def test_anomaly_raises_then_clears_with_one_alert_id(pipeline: Pipeline) -> None:
    samples = samples_of("a", 200, seed=1)
    spike = samples[150]
    samples[150] = Sample("a", spike.ts, spike.values + 50.0)
    events = [o.event for o in pipeline.process(samples) if o.event is not None]
    assert [e.event for e in events] == ["raised", "cleared"]
    raised, cleared = events
    assert raised.ts == spike.ts and raised.alert_id == cleared.alert_id
    assert raised.model == "small" and raised.values[0] == pytest.approx(spike.values[0] + 50)
    assert raised.score >= raised.threshold and raised.severity in ("warning", "critical")
    assert cleared.raised_ts == raised.ts and cleared.ts > raised.ts


def test_stream_seen_in_training_gets_its_own_scaling(small_bundle: Bundle) -> None:
    manifest = small_bundle.manifest.model_copy(
        update={
            "stream_scaling": {
                "hot": small_bundle.manifest.scaling.model_copy(update={"center": [1000.0]})
            }
        }
    )
    bundle = Bundle(small_bundle.path, manifest, small_bundle.graph_bytes)
    pipe = Pipeline(NumpyEngine(bundle))
    pipe.process([Sample("hot", 0.0, np.array([1.0])), Sample("cold", 0.0, np.array([1.0]))])
    hot, cold = (pipe.table.slot_of[s] for s in ("hot", "cold"))
    assert pipe.table["center"][hot][0] == 1000.0
    assert pipe.table["center"][cold][0] == small_bundle.manifest.scaling.center[0]


def test_idle_streams_are_evicted_by_receive_time(pipeline: Pipeline) -> None:
    pipeline.process(
        [
            Sample("old", 10.0, np.array([1.0]), received=100.0),
            Sample("new", 10.0, np.array([1.0]), received=200.0),
        ]
    )
    assert pipeline.evict_idle(now=250.0, ttl_s=100.0) == ["old"]
    assert set(pipeline.table.slot_of) == {"new"}
    (outcome,) = pipeline.process([Sample("old", 20.0, np.array([1.0]), received=260.0)])
    assert outcome.status is Status.FIRST  # a forgotten stream starts afresh


def test_a_value_far_beyond_the_range_ever_seen_is_raised(pipeline: Pipeline) -> None:
    samples = samples_of("a", 150, seed=1)
    outcomes = pipeline.process(samples)
    assert max(o.score for o in outcomes[1:]) < 0.5
    low, high = pipeline.bundle.manifest.scaling.low, pipeline.bundle.manifest.scaling.high
    assert low is not None and high is not None
    far = Sample("a", samples[-1].ts + 300, np.array([high[0] + 5 * (high[0] - low[0])]))
    (outcome,) = pipeline.process([far])
    assert outcome.event is not None and outcome.event.event == "raised"


def test_range_rule_can_be_switched_off(small_bundle: Bundle) -> None:
    settings = PipelineSettings(detector=DetectorSettings(range_margin=None))
    pipe = Pipeline(NumpyEngine(small_bundle), settings)
    samples = samples_of("a", 50, seed=1)
    pipe.process(samples)
    high = small_bundle.manifest.scaling.high
    assert high is not None
    (outcome,) = pipe.process([Sample("a", samples[-1].ts + 300, np.array([high[0] + 0.5]))])
    assert outcome.score < 1.0
    assert "seen_min" not in pipe.table.specs  # the range is the extremes channel's state


def test_edges_register_their_own_columns(pipeline: Pipeline) -> None:
    assert "published_status" not in pipeline.table.specs  # the daemon's publisher's
    pipeline.register({"edge_note": ColumnSpec(np.int8, (), 7)})
    pipeline.process(samples_of("a", 3, seed=1))
    assert pipeline.table["edge_note"][pipeline.table.slot_of["a"]] == 7
    # Every new table has it too: a snapshot restored, a bundle of other shapes swapped in.
    assert pipeline.new_table().specs["edge_note"] == ColumnSpec(np.int8, (), 7)


def test_an_operators_verdict_clears_the_alert_and_starts_the_normal_afresh(
    pipeline: Pipeline,
) -> None:
    samples = samples_of("a", 150, seed=1)
    pipeline.process(samples)
    assert pipeline.accept("a", 0.0) is None  # no alert up: nothing to clear
    high = pipeline.bundle.manifest.scaling.high
    assert high is not None
    far = Sample("a", samples[-1].ts + 300, np.array([high[0] + 50.0]))
    (raised,) = pipeline.process([far])
    assert raised.event is not None and raised.event.event == "raised"
    cleared = pipeline.accept("a", 0.0)
    assert cleared is not None and cleared.reason == "accepted"
    assert cleared.alert_id == raised.event.alert_id and cleared.values == (far.values[0],)
    slot = pipeline.table.slot_of["a"]
    assert not pipeline.table["alert_active"][slot]
    assert pipeline.table["seen_n"][slot] == 0  # the range is learnt again from here
    assert pipeline.counters.cleared == 1
