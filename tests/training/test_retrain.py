"""Retraining a route from its recording: promoted on drift, refused when worse, alert spans
left out unless called false positives, skipped on too little data, every decision logged."""

from __future__ import annotations

import csv
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from sensord.cli.main import main
from sensord.config import Settings
from sensord.core.bundle import Bundle
from sensord.offline.synthetic import DAY_S, Generated, generate, write_csv
from sensord.ops.feedback import Feedback, FeedbackStore
from sensord.ops.models import (
    CANDIDATES,
    CURRENT,
    TRAINING_CSV,
    VERSIONS,
    Decision,
    Figures,
    current_version,
    install,
    read_decisions,
    switch,
)
from sensord.ops.recording import Recorder, RecordPolicy
from sensord.training.judge import failed_rules
from sensord.training.options import TrainOptions
from sensord.training.retrain import RetrainOptions, retrain_route
from sensord.training.train import train_bundle
from tests.trained import SMALL

pytestmark = pytest.mark.slow  # models trained, runs end to end: seconds each

ROUTE = "boiler"
STEP_S = 300.0
START = 1.7e9
HISTORY = 1500  # rows the live models learnt from
RECORDED = 2000  # rows recorded since: 1,600 to train on, 400 held back


def old_regime(rows: int, seed: int, start: float) -> Generated:
    return generate(rows, seed=seed, start=start, interval_s=STEP_S)


def new_regime(rows: int, seed: int, start: float) -> Generated:
    """The plant after a change: a higher level and a faster cycle (a shape the old model
    never saw, so following it from the last value alone is poor)."""
    old = old_regime(rows, seed, start)
    phase = 2 * np.pi * (old.timestamps % DAY_S) / DAY_S
    return Generated(old.timestamps, old.values + 6.0 + 6.0 * np.sin(6 * phase), ())


def train_live(folder: Path, history: Generated, epochs: int) -> Bundle:
    write_csv(folder / "history.csv", history)
    options = TrainOptions(name=ROUTE, fit=replace(SMALL, epochs=epochs))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as retraining does: fast on 2 busy cores, and the same bytes
    try:
        return train_bundle(folder / "history.csv", folder / "bundle", options).bundle
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def old_live(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    """In service since before the drift."""
    return train_live(tmp_path_factory.mktemp("old"), old_regime(HISTORY, 1, START), 10)


@pytest.fixture(scope="module")
def new_live(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    """Well trained on the regime the plant is in now."""
    return train_live(tmp_path_factory.mktemp("new"), new_regime(HISTORY, 1, START), 20)


def after_history() -> float:
    return START + HISTORY * STEP_S


def make_settings(tmp_path: Path, **retrain: float) -> Settings:
    return Settings(
        state={"dir": tmp_path / "state"},
        routes=[{"topic": "plant/#", "name": ROUTE, "bundle": models(tmp_path) / CURRENT}],
        retrain={"min_rows": 500, "epochs": 10, **retrain},
    )


def write_config(tmp_path: Path, bundle: Path, extra: str = "") -> Path:
    config = tmp_path / "sensord.toml"
    config.write_text(
        f'[state]\ndir = "{tmp_path / "state"}"\n{extra}'
        f'[[routes]]\ntopic = "plant/#"\nname = "{ROUTE}"\nbundle = "{bundle}"\n'
    )
    return config


def models(tmp_path: Path) -> Path:
    return tmp_path / "state" / "models" / ROUTE


def in_service(tmp_path: Path, bundle: Bundle) -> None:
    install(models(tmp_path), bundle.path)
    switch(models(tmp_path), bundle.manifest.version)


def record(settings: Settings, streams: dict[str, Generated]) -> Recorder:
    """Record the streams as the daemon does: batches of interleaved readings."""
    recorder = Recorder(settings.records_dir, RecordPolicy())
    names = sorted(streams)
    ts = np.stack([streams[s].timestamps for s in names], axis=1).ravel()
    values = np.stack([streams[s].values for s in names], axis=1).ravel()
    ids = names * len(streams[names[0]].timestamps)
    for start in range(0, len(ts), 256):
        part = slice(start, start + 256)
        recorder.readings(ROUTE, ["value"], ids[part], ts[part], values[part, None])
    return recorder


def test_drift_is_learnt_and_promoted(tmp_path: Path, old_live: Bundle) -> None:
    settings = make_settings(tmp_path)
    in_service(tmp_path, old_live)
    record(settings, {"s1": new_regime(RECORDED, 2, after_history())}).close()

    decision = retrain_route(settings, 0)

    assert decision.decision == "promoted", decision.reasons
    live, candidate = decision.live, decision.candidate
    assert live is not None and candidate is not None
    assert live.version == old_live.manifest.version != candidate.version
    assert candidate.mae < 0.7 * live.mae  # the new shape learnt, not just within tolerance
    assert live.scored == candidate.scored == 400  # warmed up: every holdout row is scored
    assert current_version(models(tmp_path)) == candidate.version
    installed = models(tmp_path) / VERSIONS / candidate.version
    assert len((installed / TRAINING_CSV).read_text().splitlines()) == 1 + 1600  # traceable
    assert not [p for p in (models(tmp_path) / CANDIDATES).iterdir() if p.name[0] != "."]
    assert decision.candidate_dir is None
    assert_logged(tmp_path, decision)


def assert_logged(tmp_path: Path, decision: Decision) -> None:
    (logged,) = read_decisions(models(tmp_path))
    assert logged == decision.record()
    assert logged["route"] == ROUTE and logged["time"].endswith("Z") and logged["seconds"] > 0
    for side in ("live", "candidate"):
        assert set(logged[side]) == {"version", "scored", "mae", "mae_rows", "alerts",
                                     "alert_rate", "nab"}  # fmt: skip
    assert logged["holdout_rows"] == 400 and logged["training_rows"] == 1600
    assert logged["holdout_start"] < logged["holdout_end"]


def test_a_worse_candidate_is_refused(tmp_path: Path, new_live: Bundle) -> None:
    settings = make_settings(tmp_path)
    in_service(tmp_path, new_live)
    record(settings, {"s1": new_regime(RECORDED, 2, after_history())}).close()

    # One epoch from scratch against a model trained 20 on the same regime: clearly worse.
    decision = retrain_route(settings, 0, RetrainOptions(epochs=1))

    assert decision.decision == "refused"
    live, candidate = decision.live, decision.candidate
    assert live is not None and candidate is not None
    assert candidate.mae > 1.5 * live.mae
    assert decision.reasons == (
        f"error: candidate MAE {candidate.mae:.6g} > live {live.mae:.6g} x 1.02",
    )
    assert current_version(models(tmp_path)) == new_live.manifest.version
    assert decision.candidate_dir == models(tmp_path) / CANDIDATES / candidate.version
    assert (decision.candidate_dir / TRAINING_CSV).is_file()  # kept for inspection
    assert not (models(tmp_path) / VERSIONS / candidate.version).exists()
    assert_logged(tmp_path, decision)


def test_alert_spans_are_left_out_unless_false_positive(tmp_path: Path, old_live: Bundle) -> None:
    margin = 2 * STEP_S
    settings = make_settings(tmp_path, exclude_margin_s=margin)
    in_service(tmp_path, old_live)
    half = RECORDED // 2
    streams = {s: new_regime(half, seed, after_history()) for s, seed in (("s1", 2), ("s2", 3))}
    recorder = record(settings, streams)
    ts = streams["s1"].timestamps

    def alert(alert_id: str, stream: str, raised: int, cleared: int | None) -> None:
        recorder.alert(ROUTE, alert_id=alert_id, stream=stream, event="raised",
                       ts=ts[raised], raised_ts=ts[raised], score=0.99)  # fmt: skip
        if cleared is not None:
            recorder.alert(ROUTE, alert_id=alert_id, stream=stream, event="cleared",
                           ts=ts[cleared], raised_ts=ts[raised], score=0.2)  # fmt: skip

    alert("unjudged", "s1", 300, 310)  # left out: rows 298..312 of s1
    alert("false-alarm", "s1", 500, 520)  # an operator said normal: learnt from
    alert("real", "s2", 600, 605)  # confirmed: left out, rows 598..607 of s2
    alert("real-late", "s2", 900, None)  # confirmed, still open, on the holdout
    recorder.close()
    verdicts = FeedbackStore(settings.feedback_file)
    for alert_id in ("false-alarm", "real", "real-late"):
        verdict = "false_positive" if alert_id == "false-alarm" else "confirmed"
        verdicts.add(Feedback(alert_id, "s?", verdict, at=0.0))
    verdicts.close()

    decision = retrain_route(settings, 0, RetrainOptions(epochs=1))

    folder = decision.candidate_dir or models(tmp_path) / CURRENT
    with (folder / TRAINING_CSV).open() as handle:
        trained = {(row["stream"], float(row["timestamp"])) for row in csv.DictReader(handle)}
    rows = {s: {i for i in range(half) if (s, ts[i]) in trained} for s in streams}
    assert not rows["s1"] & set(range(298, 313)) and set(range(290, 298)) <= rows["s1"]
    assert set(range(500, 521)) <= rows["s1"]  # the false positive's span is trained on
    assert not rows["s2"] & set(range(598, 608)) and 597 in rows["s2"] and 608 in rows["s2"]
    data = decision.data
    assert (data.excluded_rows, data.excluded_alerts, data.false_positives_relearnt) == (25, 2, 1)
    assert data.training_rows == 1600 - 25 == len(trained)
    assert data.labelled_windows == 1
    live, candidate = decision.live, decision.candidate
    assert live is not None and candidate is not None
    assert live.nab is not None and candidate.nab is not None  # judged on the confirmed alert
    # The open alert on s2 leaves every row of s2 from 898 on out of the error.
    assert live.mae_rows == candidate.mae_rows == live.scored - (half - 898)


def test_too_little_data_is_skipped(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, old_live: Bundle
) -> None:
    settings = make_settings(tmp_path)
    in_service(tmp_path, old_live)
    assert retrain_route(settings, 0).reasons == (
        f"no recording in {settings.records_dir / ROUTE}",
    )
    record(settings, {"s1": new_regime(300, 2, after_history())}).close()
    config = write_config(tmp_path, models(tmp_path) / CURRENT, "[retrain]\nmin_rows = 500\n")
    assert main(["retrain", "--config", str(config), "--epochs", "1"]) == 0
    out = capsys.readouterr().out
    assert f"route {ROUTE}: skipped" in out
    assert "reason: too little data: no stream has 500 recorded rows (most: 300, stream s1)" in out
    assert current_version(models(tmp_path)) == old_live.manifest.version
    assert [d["decision"] for d in read_decisions(models(tmp_path))] == ["skipped", "skipped"]
    assert read_decisions(models(tmp_path))[-1]["recorded_rows"] == 300


def test_retrain_refuses_a_route_not_under_models(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, old_live: Bundle
) -> None:
    config = write_config(tmp_path, old_live.path)
    assert main(["retrain", "--config", str(config)]) == 78
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("sensord: error: route boiler:")
    assert f"run 'sensord promote {old_live.path} --route {ROUTE}' first" in err


def figures(mae: float, alerts: int, nab: float | None, scored: int = 1000) -> Figures:
    return Figures("v", scored, mae, scored, alerts, 1000.0 * alerts / scored, nab)


def test_every_broken_rule_is_a_reason_naming_the_figures() -> None:
    live = figures(mae=1.0, alerts=10, nab=50.0)
    assert failed_rules(live, figures(1.02, 11, 49.0), 0.02) == []  # within tolerance
    assert failed_rules(live, figures(0.5, 5, None), 0.02) == []  # NAB not compared
    assert failed_rules(live, figures(1.03, 12, 48.9), 0.02) == [
        "error: candidate MAE 1.03 > live 1 x 1.02",
        "alert rate: candidate 12/1000 > live 10/1000 x 1.02 + one alert = 11.2",
        "NAB: candidate 48.9 < live 50 - 0.02 x |live| = 49",
    ]
    assert failed_rules(figures(1.0, 0, -20.0), figures(1.0, 1, -20.3), 0.02) == []
    assert math.isnan(figures(math.nan, 0, None).mae)


def test_a_retrain_keeps_the_live_model_s_heads() -> None:
    """A candidate with other heads would not take the streams' state over (its look-ahead
    ring has another shape), so retraining trains the heads the model in service has."""
    from sensord.core.bundle import Cross, Heads
    from sensord.core.inmemory import in_memory
    from sensord.training.retrain import _train_options

    live = in_memory(("flow", "pressure"), name="pump").manifest
    cross = Cross(weights=[[0.0, 0.5], [0.5, 0.0]], gain=[1.2, 1.2])
    training = live.training.model_copy(update={"hyperparameters": {"spread": 1, "horizon": 6}})
    heads = Heads(spread=True, cross=cross, horizon=6, horizon_gain=[0.8, 0.8])
    live = live.model_copy(update={"format_version": 2, "heads": heads, "training": training})
    options = _train_options(live, epochs=3, seed=1, threads=1)
    assert options.fit.spread is True and options.fit.horizon == 6 and options.cross
