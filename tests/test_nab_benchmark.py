"""benchmarks/nab.py end to end on a tiny corpus in NAB's layout (no ../shared needed)."""

import json
from pathlib import Path

from benchmarks import nab
from sensord.synthetic import Anomaly, generate
from sensord.timestamps import format_timestamp


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
    code = nab.main(
        [
            "--nab-root",
            str(root),
            "--out",
            str(out),
            "--json",
            str(tmp_path / "r.json"),
            "--detectors",
            "likelihood,fixed",
            "--jobs",
            "1",
        ]
    )
    assert code == 0
    result_file = out / "likelihood" / "withAnomaly" / "spike.csv"
    header, *rows = result_file.read_text().splitlines()
    assert header == "timestamp,value,anomaly_score,alert,raised" and len(rows) == 700
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["files"] == 2 and report["default_detector"] == "likelihood"
    standard = report["results"]["likelihood"]["score"]["standard"]
    assert standard["normalized"] > 50  # the spike is found early, the clean file stays quiet
    assert report["runs"][0]["probation"] == 105  # floor(0.15 * 700)
    assert set(report["results"]["fixed"]) == {"score", "alert", "raised"}
