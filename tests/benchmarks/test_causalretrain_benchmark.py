"""The detection benchmarks' training options (``--train``), their one switch of engine with
``sensord replay --engine``, and causal continual learning (a variant's ``retrain=N``:
benchmarks/causalretrain.py, with the daemon's gate or ``gate=off``), on small generated
series with a tiny network."""

import dataclasses
import functools
import json
import re
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest

from benchmarks import nab
from benchmarks.causalretrain import (
    RETRAIN,
    TRAINING_CSV,
    WARMUP_ROWS,
    Retrain,
    Train,
    alert_spans,
    continual_replay,
    held_out,
    time_of_day,
)
from benchmarks.runner import Training
from benchmarks.trainoptions import describe, keys, parse_train, tag, train_options
from benchmarks.variants import MODELS, parse_variant
from sensord.config.sections import RetrainSettings
from sensord.core.bundle import Bundle
from sensord.core.engine import PersistenceEngine
from sensord.core.inmemory import in_memory
from sensord.core.pipeline import Pipeline
from sensord.core.sample import Status
from sensord.core.timestamps import parse_timestamp
from sensord.errors import InputError
from sensord.offline.replay import ENGINES, ReplayResult, engine_for, run_series
from sensord.offline.series import read_series
from sensord.offline.synthetic import Anomaly, generate, write_csv
from sensord.training.options import FitOptions, TrainOptions
from tests.benchmarks.test_nab_benchmark import write_corpus

TINY = "epochs=3,hidden=8,layers=1,window=32"  # trains in about a second
LEARNS = "epochs=3,hidden=8,layers=1,window=16,stride=4"  # moves from its start on 240 rows


def test_train_options_parse_by_each_fields_type() -> None:
    given = parse_train("epochs=20,cell=gru,time_of_day=off,features=a+b,version=none,spread=1")
    assert given == {
        "cell": "gru",
        "epochs": 20,
        "features": ("a", "b"),
        "spread": True,
        "time_of_day": "off",
    }  # version=none is its default, so it is left out
    options = train_options(given, model="m", seed=4)
    assert options.fit == dataclasses.replace(
        FitOptions(), epochs=20, cell="gru", spread=True, seed=4
    )
    assert (options.name, options.out_of_order, options.threads) == ("m", "drop", 1)
    assert options.features == ("a", "b") and options.time_of_day == "off"
    assert describe(given) == "cell=gru,epochs=20,features=a+b,spread=True,time_of_day=off"
    assert tag(given) == describe(given) and tag({}) == "" and describe({}) == "defaults"
    assert "/" not in tag({"version": "a/b"})


def test_every_field_of_the_options_is_a_key_and_its_default_parses_back() -> None:
    """A field added to FitOptions or TrainOptions is an option with no code in benchmarks:
    each one's default, written as text, parses back to itself."""
    known = keys()
    for kind in (FitOptions, TrainOptions):
        for f in dataclasses.fields(kind):
            if f.name in ("name", "seed", "out_of_order", "threads", "fit"):
                assert f.name not in known
                continue
            default = getattr(kind(), f.name)
            text = "none" if default is None else str(default)
            assert parse_train(f"{f.name}={text}") == {}, f.name
    assert parse_train("epochs=150,hidden=64") == {}  # the defaults: the default folder


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("speed=3", r"'speed' is not an option of FitOptions or TrainOptions \(options: "),
        ("epochs", r"'epochs' is not key=value"),
        ("epochs=many", r"epochs=many: not a number of type int"),
        ("cell=rnn", r"cell=rnn: not one of lstm, gru"),
        ("spread=maybe", r"spread=maybe: not a yes or no"),
        ("seed=3", r"seed is not an option here \(--seeds gives the seeds\)"),
        ("threads=2", r"threads is not an option here"),
    ],
)
def test_train_options_refuse_in_one_line(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason) as refused:
        parse_train(text)
    assert "\n" not in str(refused.value) and str(refused.value).startswith("--train: ")


def test_variants_and_replay_choose_the_engine_with_one_switch() -> None:
    bundle = in_memory()
    assert MODELS == ENGINES == ("lstm", "persistence")
    assert isinstance(engine_for(bundle, "persistence"), PersistenceEngine)
    variant = parse_variant("p:model=persistence")
    assert isinstance(variant.pipeline(bundle).engine, PersistenceEngine)
    with pytest.raises(InputError, match="engine 'oracle' is not one of lstm, persistence"):
        engine_for(bundle, "oracle")


def test_retrain_is_a_variant_key_of_whole_rows_gated_unless_gate_is_off() -> None:
    assert parse_variant("r:retrain=1000").retrain == 1000
    assert parse_variant("plain").retrain is None
    for bad in ("r:retrain=0", "r:retrain=-5", "r:retrain=1.5", "r:retrain=x"):
        with pytest.raises(ValueError, match=r"retrain .* is not a number of rows >= 1"):
            parse_variant(bad)
    assert parse_variant("r:retrain=1000").gate
    assert parse_variant("r:retrain=1000,gate=on").gate
    assert not parse_variant("r:retrain=1000,gate=off").gate
    with pytest.raises(ValueError, match=r"variant r: gate 'no' is not on or off"):
        parse_variant("r:retrain=1000,gate=no")


def test_alert_spans_run_from_the_raise_to_the_row_that_cleared() -> None:
    ts = np.arange(8.0) * 10
    up = np.array([0, 1, 1, 0, 0, 1, 0, 1], dtype=bool)
    assert alert_spans(ts, up) == [(10.0, 30.0), (50.0, 60.0), (70.0, np.inf)]


ROWS, FIRST, EVERY = 900, 200, 300  # retrains before rows 300 and 600
SPIKE = 450  # alerted before the second retrain: the rows around it are left out
JUDGE_ALL = RetrainSettings(min_rows=100)  # the gate judges at 300 rows too (default: 500)
OFFSET = 50.0  # a broken copy: every other value this much higher, the others lower


def series_file(path: Path, *, changed_from: int | None = None) -> Path:
    """A generated series with a spike; with ``changed_from``, everything from that row on
    is moved (the rows before are the same as without it)."""
    g = generate(ROWS, seed=5, anomalies=(Anomaly("spike", SPIKE),))
    values = g.values.copy()
    if changed_from is not None:
        values[changed_from:] += 7.0
    write_csv(path, dataclasses.replace(g, values=values))
    return path


def broken_copy(train: Train, csv: Path, folder: Path) -> Bundle:
    """``train`` on a copy of ``csv`` with its values OFFSET up and down in turn: a model
    that learnt to expect a jump every reading, as a sensor gone bad would have taught it."""
    lines = csv.read_text().splitlines()
    rows = (line.split(",") for line in lines[1:])
    moved = [f"{ts},{float(v) + OFFSET * (-1) ** i:.6f}" for i, (ts, v) in enumerate(rows)]
    copy = csv.with_name("broken.csv")
    copy.write_text("\n".join([lines[0], *moved]) + "\n")
    return train(copy, folder)


def first_rows_bundle(work: Path, *, broken: bool) -> Bundle:
    """Trained on the first rows only, as NAB's probation bundle is (``broken``: on their
    broken copy)."""
    lines = series_file(work / "all.csv").read_text().splitlines()
    (work / "first.csv").write_text("\n".join(lines[: FIRST + 1]) + "\n")
    training = Training(work, parse_train(LEARNS))
    train: Train = functools.partial(training.train, model="first", seed=0)
    if broken:
        train = functools.partial(broken_copy, train)
    return train(work / "first.csv", work / "bundle")


@pytest.fixture(scope="module")
def first_bundle(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    return first_rows_bundle(tmp_path_factory.mktemp("first"), broken=False)


class Continual(NamedTuple):
    result: ReplayResult
    retrains: tuple[Retrain, ...]
    in_service: str  # the version of the bundle scoring at the end


def continual(
    path: Path,
    bundle: Bundle,
    work: Path,
    *,
    gate: bool = True,
    settings: RetrainSettings = JUDGE_ALL,
    broken: bool = False,
) -> Continual:
    """``path`` replayed from ``bundle`` on, retrained as the benchmark's runner retrains
    (``broken``: each candidate trained on a broken copy of its rows)."""
    training = Training(work, parse_train(LEARNS))
    train: Train = functools.partial(
        training.train, model="first", seed=0, time_of_day=time_of_day(bundle)
    )
    if broken:
        train = functools.partial(broken_copy, train)
    pipeline = Pipeline(engine_for(bundle, "lstm"))
    result, retrains = continual_replay(
        path, pipeline, every=EVERY, train=train, work=work, gate=gate, settings=settings
    )
    return Continual(result, retrains, pipeline.bundle.manifest.version)


def decided(made: Retrain) -> dict[str, object]:
    """What a retrain decided and from what: all of its record but the time it took."""
    return {k: v for k, v in made.record().items() if k not in ("seconds", "judge_seconds")}


@pytest.mark.slow  # trains four tiny bundles
@pytest.mark.parametrize("gate", [False, True], ids=["gate=off", "gate"])
def test_no_retrain_or_decision_sees_a_row_at_or_after_the_point_it_is_applied_from(
    tmp_path: Path, first_bundle: Bundle, gate: bool
) -> None:
    path = series_file(tmp_path / "a.csv")
    result, retrains, _ = continual(path, first_bundle, tmp_path / "a", gate=gate)
    series = read_series(path)
    assert [r.at for r in retrains] == [300, 600] and not any(r.skipped for r in retrains)
    for made in retrains:
        folder = tmp_path / "a" / f"row{made.at}"
        learnt = read_series(folder / TRAINING_CSV)
        # With the gate the candidate learns only the rows before the held-back ones.
        assert made.holdout == (int(made.at * RETRAIN.holdout_fraction) if gate else 0)
        limit = series.timestamps[made.at - made.holdout]
        # What the trainer read, and what the bundle says it learnt from, ends before ``at``.
        assert learnt.timestamps.max() < limit and made.last_ts < limit
        manifest = json.loads((folder / "bundle.json").read_text())
        assert manifest["version"] == made.version
        assert parse_timestamp(manifest["training"]["data_end"]) < limit
        assert made.rows == manifest["training"]["rows"]
        assert made.rows == made.at - made.holdout - made.excluded
        # Judged (both models scored every held-back row), or not at all with gate=off.
        judged = [] if made.live is None or made.candidate is None else [made.live, made.candidate]
        assert [f.scored for f in judged] == ([made.holdout] * 2 if gate else [])
    # The spike's alert came before row 600: the rows around it were left out of that retrain.
    assert retrains[0].excluded == 0 and retrains[1].excluded >= 1
    spike_ts = series.timestamps[SPIKE]
    assert spike_ts not in read_series(tmp_path / "a" / "row600" / TRAINING_CSV).timestamps
    # The streams' state went on through each decision, as the daemon's hot swap keeps it.
    for made in retrains:
        outcome = result.outcomes[made.at]
        assert outcome is not None and outcome.status is Status.SCORED
        assert not outcome.warming_up

    # Rows from 600 on differ: the candidates, the decisions (the figures they were made on
    # included) and every outcome before 600 are the same.
    other = series_file(tmp_path / "b.csv", changed_from=600)
    result_b, retrains_b, _ = continual(other, first_bundle, tmp_path / "b", gate=gate)
    assert [decided(r) for r in retrains_b] == [decided(r) for r in retrains]
    assert scores(result)[:600].tobytes() == scores(result_b)[:600].tobytes()
    assert scores(result)[600:].tobytes() != scores(result_b)[600:].tobytes()


def scores(result: ReplayResult) -> np.ndarray:
    return np.array([np.nan if o is None else o.score for o in result.outcomes])


def test_the_gate_cuts_the_rows_seen_by_time_as_sensord_retrain_does(tmp_path: Path) -> None:
    """No training: a persistence core raises the spike's alert; the cut of the first 600
    rows is the daemon's (newest fifth held back, warm-up just before it, rows around the
    alert out of training and of the error), and 300 rows are too few at the defaults."""
    series = read_series(series_file(tmp_path / "a.csv"))
    persistence = Pipeline(engine_for(in_memory(center=20.0, scale=3.0), "persistence"))
    outcomes = run_series(series, persistence, rows=range(600))
    assert any(o is not None and o.alert for o in outcomes[SPIKE : SPIKE + 3])
    cut = held_out(series, outcomes, JUDGE_ALL)
    assert not isinstance(cut, str)
    split, rows = cut.split, np.arange(600)
    assert len(cut.recording.timestamps) == 600  # nothing from row 600 on
    assert rows[split.holdout].tolist() == list(range(480, 600))
    assert rows[split.warm].tolist() == list(range(480 - WARMUP_ROWS, 480))
    near = rows[split.excluded]
    assert near[0] < SPIKE < near[-1] < 480  # the span and 600 s either side
    assert not (split.train & split.excluded).any() and not (split.train & split.holdout).any()
    assert split.train.sum() == 480 - len(near) == cut.split.data.training_rows
    assert split.windows == {}  # no operator: no confirmed alert to score NAB against
    too_few = held_out(series, outcomes[:300], RETRAIN)
    assert too_few == "too little data: no stream has 500 rows (most: 300, stream default)"


@pytest.mark.slow  # trains four tiny bundles
def test_the_gate_refuses_a_worse_candidate_and_gate_off_swaps_it_in(
    tmp_path: Path, first_bundle: Bundle
) -> None:
    path = series_file(tmp_path / "a.csv")
    # The daemon's defaults: 300 rows are too few to retrain on, 600 are judged.
    _, (first, second), in_service = continual(
        path, first_bundle, tmp_path / "a", broken=True, settings=RETRAIN
    )
    assert first.decision == "skipped" and first.skipped.startswith("too little data")
    assert (first.version, first.live, first.rows) == ("", None, 0)
    assert second.decision == "refused" and second.live and second.candidate
    assert second.reasons[0].startswith("error: candidate MAE")
    assert second.candidate.mae > 1.5 * second.live.mae
    assert in_service == first_bundle.manifest.version  # never swapped out
    record = json.loads(json.dumps(second.record()))
    assert record["decision"] == "refused" and record["reasons"] == list(second.reasons)
    assert record["candidate"]["version"] == second.version != in_service

    # gate=off: every candidate swapped in unjudged, as before the gate.
    _, unjudged, in_service = continual(
        path, first_bundle, tmp_path / "b", broken=True, gate=False, settings=RETRAIN
    )
    assert [r.decision for r in unjudged] == ["promoted", "promoted"]
    assert all(r.live is None and r.holdout == 0 and r.rows > 0 for r in unjudged)
    assert in_service == unjudged[-1].version


@pytest.mark.slow  # trains three tiny bundles
def test_the_gate_promotes_a_candidate_better_than_the_bundle_in_service(
    tmp_path: Path,
) -> None:
    broken = first_rows_bundle(tmp_path / "first", broken=True)
    path = series_file(tmp_path / "a.csv")
    _, retrains, in_service = continual(path, broken, tmp_path / "a")
    first = retrains[0]
    assert first.decision == "promoted" and first.reasons == ()
    assert first.live and first.candidate and first.candidate.mae < first.live.mae
    promoted = [r.version for r in retrains if r.decision == "promoted"]
    assert in_service == promoted[-1] != broken.manifest.version


@pytest.mark.slow  # trains tiny bundles for two files, and retrains them
def test_nab_benchmark_trains_with_options_and_retrains_causally(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, out, report = tmp_path / "nab", tmp_path / "results", tmp_path / "r.json"
    write_corpus(root)  # two files of 700 rows: probation 105, retrains before 300 and 600
    args = ["--nab-root", str(root), "--out", str(out), "--json", str(report), "--jobs", "1"]
    args += ["--train", TINY, "--variant", "r300:retrain=300"]
    assert nab.main([*args, "--variant", "p:model=persistence"]) == 0
    printed = capsys.readouterr().out
    assert "training options: epochs=3,hidden=8,layers=1,window=32" in printed
    assert "r300 (retrain every 300 rows)" in printed and "p (engine persistence)" in printed
    # The daemon's gate at its defaults: 300 rows are too few to retrain on, 600 are judged.
    assert re.search(r"\nr300: 4 retrains \(2 skipped, [0-2] refused\) in", printed)
    figures = json.loads(report.read_text())
    assert figures["train"] == {"epochs": 3, "hidden": 8, "layers": 1, "window": 32}
    assert figures["variants"]["r300"] == {"engine": "lstm", "retrain": 300, "gate": True}
    assert figures["variants"]["p"] == {"engine": "persistence", "retrain": None, "gate": True}
    assert figures["retrains"]["r300"]["retrains"] == 4 and set(figures["retrains"]) == {"r300"}
    made = figures["retrains_per_file"]["0/withAnomaly/spike.csv"]["r300"]
    assert [r["at"] for r in made] == [300, 600]
    assert made[0]["decision"] == "skipped" and made[0]["skipped"].startswith("too little data")
    assert made[1]["decision"] in ("promoted", "refused") and made[1]["seconds"] > 0
    assert made[1]["live"]["scored"] == made[1]["candidate"]["scored"] == made[1]["holdout"]
    # Bundles trained with other options have a folder of their own, retrains theirs.
    tagged = out / "bundles" / "epochs=3,hidden=8,layers=1,window=32" / "seed0"
    assert (tagged / "withAnomaly" / "spike" / "bundle.json").exists()
    assert not (out / "bundles" / "seed0").exists()
    retrained = out / "retrained" / tagged.parent.name / "seed0" / "r300" / "withAnomaly"
    assert (retrained / "spike" / "row600" / "bundle.json").exists()
    assert set(figures["seeds"]["0"]) == {"channels", "r300", "p"}


def test_a_bad_training_option_stops_the_benchmark_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "nab"
    write_corpus(root)
    code = nab.main(["--nab-root", str(root), "--out", str(tmp_path), "--train", "speed=3"])
    assert code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("nab.py: --train: 'speed' is not an option") and "\n" not in err
    assert not (tmp_path / "bundles").exists()
