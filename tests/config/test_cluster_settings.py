"""The [cluster] section against the rest: a member's MQTT protocol (the engine's gateway
speaks only 3.1.1), and settings in cluster mode where the cluster extra is missing."""

import importlib
import sys
from pathlib import Path

import pytest

from sensord.cli.main import EXIT_BAD_CONFIG, main
from sensord.config import load_settings
from sensord.errors import ConfigError

ROUTE = '[[routes]]\ntopic = "sensors/+/value"\nbundle = "/nonexistent/bundle"\n'
INSTALL = "pip install 'sensord[cluster]'"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sensord.toml"
    path.write_text(text + ROUTE)
    return path


def cluster(mqtt: str = "") -> str:
    return f'[mqtt]\n{mqtt}\n[cluster]\nurl = "nats://127.0.0.1:4222"\n'


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("sensord: error:")]


def test_a_member_speaks_the_gateways_protocol_unless_told_otherwise(tmp_path: Path) -> None:
    assert load_settings(write(tmp_path, cluster())).mqtt.protocol == "3.1.1"
    explicit = write(tmp_path, cluster('protocol = "3.1.1"'))
    assert load_settings(explicit).mqtt.protocol == "3.1.1"
    # single-node mode keeps MQTT 5
    assert load_settings(write(tmp_path, "")).mqtt.protocol == "5"


def test_a_member_on_mqtt_5_is_refused_naming_the_key_and_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, cluster('protocol = "5"'))
    with pytest.raises(ConfigError) as raised:
        load_settings(path)
    problem = str(raised.value).splitlines()[1]
    assert problem.startswith("mqtt.protocol: '5': a cluster member publishes through the ")
    assert 'set protocol = "3.1.1" or leave it unset' in problem
    assert main(["check-config", str(path)]) == EXIT_BAD_CONFIG
    assert problem in capsys.readouterr().err
    # the same from the environment, and `run` refuses it before starting anything
    monkeypatch.setenv("SENSORD_MQTT__PROTOCOL", "5")
    assert main(["run", "--config", str(write(tmp_path, cluster()))]) == EXIT_BAD_CONFIG
    err = capsys.readouterr().err
    assert problem in err and "Traceback" not in err


@pytest.mark.parametrize("command", ["check-config", "run"])
def test_cluster_mode_without_the_extra_is_one_line_with_the_install_line(
    command: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = write(tmp_path, cluster())
    monkeypatch.setitem(sys.modules, "nats", None)  # `import nats` raises ImportError now
    with pytest.raises(ImportError):  # the real import fails, as without nats-py
        importlib.import_module("nats")
    argv = [command, str(path)] if command == "check-config" else [command, "--config", str(path)]
    assert main(argv) == EXIT_BAD_CONFIG
    err = capsys.readouterr().err
    assert error_lines(err) == [
        f"sensord: error: {path}: cluster.url is set, and cluster mode needs the cluster extra "
        f"(nats is missing): {INSTALL} (or unset cluster.url)"
    ]
    assert "Traceback" not in err and "ModuleNotFoundError" not in err


def test_single_node_mode_does_not_ask_for_the_cluster_extra(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "nats", None)
    assert main(["check-config", str(write(tmp_path, ""))]) == EXIT_BAD_CONFIG  # the bundle
    err = capsys.readouterr().err
    assert "routes[0].bundle" in err and INSTALL not in err
