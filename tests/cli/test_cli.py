"""The sensord command: one-line errors with exit 1, no traceback unless --debug."""

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sensord.cli.main import EXIT_BAD_BUNDLE, main
from sensord.core.bundle import Bundle


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code: int, err: str, pattern: str, expected_code: int = 1) -> None:
    import re

    assert code == expected_code
    lines = [line for line in err.splitlines() if line.startswith("sensord: error:")]
    assert len(lines) == 1, err
    assert re.search(pattern, lines[0]), lines[0]
    assert "Traceback" not in err


def write(tmp_path: Path, text: str, name: str = "data.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        (None, r"missing\.csv: no such file"),
        ("time,value\n1,2\n", r"line 1: no 'timestamp' column"),
        ("timestamp,label\n1,a\n", r"line 2, column 'label': 'a' is not a number"),
        ("timestamp\n1\n", r"no feature column"),
        ("timestamp,value\nsoon,1\n", r"line 2, column 'timestamp': timestamp 'soon' is neither"),
        ("timestamp,value\n2,1\n1,1\n", r"line 3, column 'timestamp': .* is before line 2"),
        ("timestamp,value\n1,1\n2,2\n", r"2 usable rows; training needs at least 100"),
    ],
)
def test_train_bad_input(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str | None, pattern: str
) -> None:
    data = tmp_path / "missing.csv" if text is None else write(tmp_path, text)
    code, _, err = run(capsys, "train", str(data), "--out", str(tmp_path / "b"))
    assert_one_line_error(code, err, pattern)
    assert not (tmp_path / "b" / "bundle.json").exists()


def test_debug_shows_the_traceback(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(
        capsys, "--debug", "train", str(tmp_path / "x.csv"), "--out", str(tmp_path / "b")
    )
    assert code == 1 and "Traceback" in err and "sensord: error:" in err


def test_inspect_shows_and_verifies(
    capsys: pytest.CaptureFixture[str], small_bundle: Bundle
) -> None:
    code, out, _ = run(capsys, "inspect", str(small_bundle.path))
    assert code == 0
    assert "LSTM 1x8" in out and small_bundle.manifest.graph.sha256 in out
    assert "graph sha256, graph input/output shapes: ok" in out
    code, out, _ = run(capsys, "inspect", "--json", str(small_bundle.path))
    assert json.loads(out)["name"] == "small"


def test_inspect_tampered_bundle(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, small_bundle: Bundle
) -> None:
    copy = tmp_path / "b"
    shutil.copytree(small_bundle.path, copy)
    (copy / "model.onnx").write_bytes((copy / "model.onnx").read_bytes() + b"\0")
    code, _, err = run(capsys, "inspect", str(copy))
    assert_one_line_error(code, err, r"model\.onnx: sha256 .* does not match", EXIT_BAD_BUNDLE)


def test_inspect_unknown_format(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, small_bundle: Bundle
) -> None:
    copy = tmp_path / "b"
    shutil.copytree(small_bundle.path, copy)
    manifest = json.loads((copy / "bundle.json").read_text())
    manifest["format_version"] = 99
    (copy / "bundle.json").write_text(json.dumps(manifest))
    code, _, err = run(capsys, "inspect", str(copy))
    assert_one_line_error(code, err, r"format_version 99 is not supported", EXIT_BAD_BUNDLE)


def test_replay_columns_must_match(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, small_bundle: Bundle
) -> None:
    data = write(tmp_path, "timestamp,pressure\n1,2\n")
    code, _, err = run(
        capsys,
        "replay",
        str(data),
        "--bundle",
        str(small_bundle.path),
        "--out",
        str(tmp_path / "r.csv"),
    )
    assert_one_line_error(
        code,
        err,
        r"missing feature column\(s\) value \(the file has: "
        r"timestamp, pressure\)",
    )


def test_replay_bad_option(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, small_bundle: Bundle, clean_csv: Path
) -> None:
    code, _, err = run(
        capsys,
        "replay",
        str(clean_csv),
        "--bundle",
        str(small_bundle.path),
        "--out",
        str(tmp_path / "r.csv"),
        "--threshold",
        "2",
    )
    assert_one_line_error(code, err, r"replay options: threshold 2.0 is not in \(0, 1\)")


def test_replay_prints_alerts_and_summary(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, bundle: Bundle, anomalous_csv: Path
) -> None:
    code, out, _ = run(
        capsys,
        "replay",
        str(anomalous_csv),
        "--bundle",
        str(bundle.path),
        "--out",
        str(tmp_path / "r.csv"),
        "--plot",
        str(tmp_path / "p.png"),
    )
    assert code == 0
    assert out.count(" raised ") == 3
    assert "replayed 800 rows" in out and "3 alerts raised" in out
    assert (tmp_path / "r.csv").exists() and (tmp_path / "p.png").exists()


@pytest.mark.slow
def test_console_script_train_inspect_replay(
    tmp_path: Path, history_csv: Path, clean_csv: Path
) -> None:
    """The installed `sensord` entry point, as a user runs it."""
    sensord = Path(sys.executable).with_name("sensord")
    bundle = tmp_path / "bundle"
    subprocess.run(
        [
            str(sensord),
            "train",
            str(history_csv),
            "--out",
            str(bundle),
            "--epochs",
            "2",
            "--hidden",
            "8",
            "--layers",
            "1",
            "--name",
            "cli",
        ],
        check=True,
    )
    shown = subprocess.run(
        [str(sensord), "inspect", str(bundle)], check=True, capture_output=True, text=True
    ).stdout
    assert "model       cli version" in shown
    done = subprocess.run(
        [
            str(sensord),
            "replay",
            str(clean_csv),
            "--bundle",
            str(bundle),
            "--out",
            str(tmp_path / "r.csv"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    failed = subprocess.run(
        [str(sensord), "inspect", str(tmp_path / "nothing")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert failed.returncode == EXIT_BAD_BUNDLE
    assert failed.stderr.strip().startswith("sensord: error:")
    assert len(failed.stderr.strip().splitlines()) == 1


def test_commands_that_need_an_extra_say_so_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "tqdm", None)  # the train extra, partly missing
    assert main(["demo", "--offline", "--out", str(tmp_path / "demo")]) == 1
    err = capsys.readouterr().err
    assert "needs the train extra (tqdm is missing)" in err and "Traceback" not in err
    assert not (tmp_path / "demo" / "history.csv").exists()  # nothing generated first
    assert main(["train", str(tmp_path / "x.csv"), "--out", str(tmp_path / "b")]) == 1
    assert "needs the train extra (tqdm is missing)" in capsys.readouterr().err


def test_replay_plot_without_matplotlib_fails_before_replaying(
    small_bundle: Bundle,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    out = tmp_path / "result.csv"
    args = ["replay", str(tmp_path / "absent.csv"), "--bundle", str(small_bundle.path)]
    assert main([*args, "--out", str(out), "--plot", str(tmp_path / "p.png")]) == 1
    err = capsys.readouterr().err
    assert "--plot needs the plot extra" in err and "absent.csv" not in err


def test_demo_with_a_broker_that_is_not_there_fails_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sensord.cli.broker import free_port

    port = free_port()
    code = main(["demo", "--host", "127.0.0.1", "--port", str(port), "--out", str(tmp_path)])
    assert code == 1
    err = capsys.readouterr().err
    assert f"--port {port}: no MQTT broker answers" in err
    assert not (tmp_path / "bundle").exists() and not (tmp_path / "history.csv").exists()


@pytest.mark.parametrize("command", ["simulate", "demo", "replay", "train", "retrain"])
def test_every_option_has_help_and_shows_its_default(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from sensord.cli.main import build_parser

    parser = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args([command, "--help"])
    text = capsys.readouterr().out
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    sub = commands.choices[command]
    for action in sub._actions:
        if action.option_strings and action.dest != "help":
            assert action.help, f"{command} {action.option_strings[0]} has no help text"
    if command == "simulate":
        assert "--seed SEED           random seed (same seed, same readings) (default: 0)" in text
