"""benchmarks/nab.py end to end on a tiny corpus in NAB's layout (no ../shared needed)."""

import json
from pathlib import Path

import pytest

from benchmarks import nab
from sensord.core.timestamps import format_timestamp
from sensord.offline.synthetic import Anomaly, generate

pytestmark = pytest.mark.slow  # models trained, runs end to end: seconds each


def nab_time(epoch: float) -> str:
    return format_timestamp(epoch).replace("T", " ").removesuffix("Z")[:19]


def write_corpus(root: Path) -> None:
    windows: dict[str, list[list[str]]] = {}
    for name, anomaly in (("withAnomaly/spike.csv", 500), ("noAnomaly/clean.csv", None)):
        anomalies = (Anomaly("spike", anomaly),) if anomaly else ()
        g = generate(700, seed=len(name), anomalies=anomalies)
        path = root / "data" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = ["timestamp,value"] + [
            f"{nab_time(t)},{v:.4f}" for t, v in zip(g.timestamps, g.values, strict=True)
        ]
        path.write_text("\n".join(lines) + "\n")
        windows[name] = (
            []
            if anomaly is None
            else [
                [
                    nab_time(g.timestamps[anomaly - 20]) + ".000000",
                    nab_time(g.timestamps[anomaly + 20]) + ".000000",
                ]
            ]
        )
    (root / "labels").mkdir()
    (root / "labels" / "combined_windows.json").write_text(json.dumps(windows))
    weights = {"standard": 0.11, "reward_low_FP_rate": 0.22, "reward_low_FN_rate": 0.11}
    (root / "profiles.json").write_text(
        json.dumps(
            {
                name: {
                    "CostMatrix": {
                        "tpWeight": 1.0,
                        "fpWeight": fp,
                        "tnWeight": 1.0,
                        "fnWeight": 2.0 if "FN" in name else 1.0,
                    }
                }
                for name, fp in weights.items()
            }
        )
    )


def test_nab_benchmark_runs_and_scores(tmp_path: Path) -> None:
    root = tmp_path / "nab"
    write_corpus(root)
    out = tmp_path / "results"
    args = ["--nab-root", str(root), "--out", str(out), "--json", str(tmp_path / "r.json")]
    args += ["--detectors", "channels,likelihood", "--variant", "persistence:model=persistence"]
    assert nab.main([*args, "--jobs", "1"]) == 0
    result_file = out / "seed0" / "channels" / "withAnomaly" / "spike.csv"
    header, *rows = result_file.read_text().splitlines()
    assert header == "timestamp,value,anomaly_score,alert,raised,onset" and len(rows) == 700
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["files"] == 2
    results = report["seeds"]["0"]
    assert set(results) == {"channels", "likelihood", "persistence"}
    for variant in results.values():
        assert set(variant) == {"score", "onset", "raised", "alert"}
    # The spike is found early and the clean file stays quiet, by the daemon's own alerts.
    assert results["channels"]["onset"]["standard"]["normalized"] > 50
    assert report["runs"][0]["probation"] == 105  # floor(0.15 * 700)
    # A second run reuses the bundles instead of training again.
    assert nab.main([*args, "--jobs", "1", "--reuse"]) == 0
    again = json.loads((tmp_path / "r.json").read_text())
    assert all(run["train_seconds"] == 0.0 for run in again["runs"])
