"""The benchmarks' baselines (benchmarks/baselines/): the detector contract, what sets each
apart, and how a benchmark puts one in a core in place of the product's detector."""

from pathlib import Path

import numpy as np
import pytest

from benchmarks.baselines import (
    BASELINE_KINDS,
    BaselineSettings,
    baseline_factory,
    make_baseline,
    use_baseline,
)
from benchmarks.baselines.likelihood import REGIME_RUN, LikelihoodDetector
from benchmarks.runner import variants_of
from benchmarks.variants import parse_variant
from sensord.core.bundle import Bundle
from sensord.core.detect import DetectorSettings, make_detector
from sensord.core.engine import Engine
from sensord.core.pipeline import Pipeline
from sensord.offline.replay import open_pipeline, replay
from sensord.offline.synthetic import standard_anomalies
from tests.conftest import LIVE_ROWS
from tests.core.detectors import DetectorContract, Make, learn, observe, setup
from tests.offline.test_replay import CATCH_ROWS, raised_rows

pytestmark = pytest.mark.slow  # models trained, runs end to end: seconds each


def baseline(kind: str) -> Make:
    return lambda made_for: make_baseline(made_for, DetectorSettings(), BaselineSettings(kind))


@pytest.fixture(params=BASELINE_KINDS)
def make(request: pytest.FixtureRequest) -> Make:
    return baseline(request.param)


class TestBaselineContract(DetectorContract):
    pass


def test_adaptive_follows_a_noisier_stream_and_fixed_does_not() -> None:
    rng = np.random.default_rng(0)
    noisy = np.exp(np.log(1.0) + 0.3 * rng.standard_normal(3000))  # 10x the calibrated error
    makers: dict[str, Make] = {
        "fixed": baseline("fixed"),
        "adaptive": baseline("adaptive"),
        "channels": lambda made_for: make_detector(made_for, DetectorSettings()),
    }
    results = {}
    for kind, make_one in makers.items():
        detector, table, slots = setup(make_one, streams=1)
        flagged = 0
        for step, error in enumerate(noisy):
            flagged += int(
                detector.classify(learn(detector, table, slots, observe([error], step)))[0]
            )
        results[kind] = flagged
    assert results["fixed"] > 1000  # for ever above the calibrated threshold
    assert results["adaptive"] < 50  # learns the stream's own level
    assert results["channels"] < 10  # calibrates its tails on the stream itself


def test_likelihood_accepts_a_lasting_new_regime() -> None:
    rng = np.random.default_rng(1)
    detector, table, slots = setup(baseline("likelihood"), streams=1)
    assert isinstance(detector, LikelihoodDetector)
    for error in 0.1 + 0.02 * rng.standard_normal(2000):
        e = np.array([abs(error)])
        detector.learn_errors(table, slots, e, detector.score(table, slots, e))
    scores = []
    for error in 1.0 + 0.2 * rng.standard_normal(300):  # ten times the errors, for good
        e = np.array([abs(error)])
        scores.append(float(detector.score(table, slots, e)[0]))
        detector.learn_errors(table, slots, e, np.array(scores[-1:]))
    assert all(s >= detector.threshold for s in scores[5:REGIME_RUN])  # first: a surprise
    assert all(s < detector.threshold for s in scores[200:])  # then: the new normal


def test_baseline_settings_are_validated() -> None:
    for bad in ({"kind": "channels"}, {"smoothing": 1.5}, {"window": 1}, {"prior_weight": 0}):
        with pytest.raises(ValueError):
            BaselineSettings(**bad)


def test_the_fixed_baseline_in_a_core_catches_the_injected_anomalies(
    bundle: Bundle, anomalous_csv: Path
) -> None:
    pipeline = open_pipeline(bundle.path)
    use_baseline(pipeline, BaselineSettings("fixed"))
    assert pipeline.detector.kind == "fixed"
    assert "smoothed_error" in pipeline.table.specs  # the table has the baseline's columns
    raised = raised_rows(replay(anomalous_csv, pipeline))
    for anomaly in standard_anomalies(LIVE_ROWS):
        assert any(anomaly.row <= r <= anomaly.row + CATCH_ROWS for r in raised), anomaly


def test_a_baseline_stays_the_detector_after_an_engine_swap(bundle: Bundle) -> None:
    # a swap rebuilds the detector for the new bundle: with the pipeline's own factory
    pipeline = open_pipeline(bundle.path)
    use_baseline(pipeline, BaselineSettings("fixed"))
    pipeline.replace_engine(Engine(bundle))
    assert pipeline.detector.kind == "fixed"
    built = Pipeline(Engine(bundle), detector_factory=baseline_factory(BaselineSettings("spot")))
    built.replace_engine(Engine(bundle))
    assert built.detector.kind == "spot"


def test_variants_name_baselines_with_their_options(bundle: Bundle) -> None:
    variant = parse_variant("lik:kind=likelihood,threshold=0.5,window=2000")
    assert variant.baseline == BaselineSettings("likelihood", window=2000)
    pipeline = variant.pipeline(bundle)
    assert pipeline.detector.kind == "likelihood" and pipeline.detector.threshold == 0.5
    assert parse_variant("c:kind=channels").baseline is None
    for bad in ("x:window=10", "x:kind=magic", "x:kind=fixed,window=1"):
        with pytest.raises(ValueError):
            parse_variant(bad)
    assert [v.name for v in variants_of("spot,channels,fixed", [])] == ["channels", "fixed", "spot"]
    with pytest.raises(ValueError, match="unknown detector"):
        variants_of("channels,magic", [])
