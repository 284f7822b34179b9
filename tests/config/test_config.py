"""Settings: TOML + SENSORD_* environment, errors as `key path: value: reason`, check-config."""

import json
from pathlib import Path

import pytest

from sensord.cli.main import EXIT_BAD_CONFIG, main
from sensord.config import RouteSettings, effective_config, load_settings
from sensord.config.detection import REMOVED_KINDS
from sensord.core.bundle import Bundle
from sensord.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sensord.toml"
    path.write_text(text)
    return path


def route(bundle: Path) -> str:
    return f'[[routes]]\ntopic = "sensors/+/temp"\nbundle = "{bundle}"\n'


def test_defaults_and_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[mqtt]\nhost = "broker"\nport = 8883\n' + route(tmp_path))
    settings = load_settings(path)
    assert (settings.mqtt.host, settings.mqtt.port, settings.mqtt.protocol) == ("broker", 8883, "5")
    assert settings.alerts.prefix == "sensord"
    assert settings.routes[0].stream == "{wild}"
    assert settings.routes[0].detector.kind == "channels"


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, '[mqtt]\nhost = "broker"\nport = 8883\n' + route(tmp_path))
    monkeypatch.setenv("SENSORD_MQTT__PORT", "1884")
    monkeypatch.setenv("SENSORD_BATCHING__MAX_BATCH", "64")
    settings = load_settings(path)
    assert settings.mqtt.port == 1884 and settings.mqtt.host == "broker"
    assert settings.batching.max_batch == 64


def test_every_error_is_listed_with_key_value_reason(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[mqtt]\nport = 0\nprotocol = "4"\nsurprise = 1\n'
        '[[routes]]\ntopic = "a/#/b"\nbundle = "x"\n'
        "[batching]\nmax_delay_ms = -1\n",
    )
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    lines = str(info.value).splitlines()
    assert lines[0] == f"{path}: invalid configuration"
    assert "mqtt.port: 0: Input should be greater than or equal to 1" in lines
    assert "mqtt.protocol: '4': Input should be '5' or '3.1.1'" in lines
    assert "mqtt.surprise: 1: Extra inputs are not permitted" in lines
    assert "routes[0].topic: 'a/#/b': '#' must be a whole level and the last one" in lines
    assert "batching.max_delay_ms: -1: Input should be greater than or equal to 0" in lines


def test_route_names_that_would_name_files_badly_or_twice_are_refused(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '[[routes]]\ntopic = "a/+"\nbundle = "x"\nname = ".."\n'
        '[[routes]]\ntopic = "b/+"\nbundle = "x"\nname = "t"\n'
        '[[routes]]\ntopic = "c/+"\nbundle = "x"\nname = "t"\n'
        '[homeassistant]\ndiscovery_prefix = "home/#"\n',
    )
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    lines = str(info.value).splitlines()
    assert "routes[0].name: '..': a route name names files and directories: not only dots" in lines
    assert "homeassistant.discovery_prefix: 'home/#': each level must be letters, digits, " in (
        str(info.value)
    )
    fixed = path.read_text().replace('name = ".."', 'name = "a"').replace("home/#", "home")
    path.write_text(fixed)
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert "routes.name: 't': two routes have this name" in str(info.value).splitlines()


def test_there_is_no_way_to_skip_tls_verification(tmp_path: Path) -> None:
    path = write(tmp_path, "[mqtt.tls]\nenabled = true\ninsecure = true\n" + route(tmp_path))
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert "mqtt.tls.insecure: True: Extra inputs are not permitted" in str(info.value)


def test_password_is_never_shown(tmp_path: Path) -> None:
    path = write(tmp_path, "[mqtt]\npassword = 12345\n" + route(tmp_path))
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert "12345" not in str(info.value) and "mqtt.password: **********" in str(info.value)


def test_routes_are_required(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"routes: \[\]: at least one \[\[routes\]\]"):
        load_settings(write(tmp_path, "[mqtt]\n"))


def test_toml_syntax_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"sensord\.toml: not valid TOML"):
        load_settings(write(tmp_path, "[mqtt\n"))


def test_check_config_prints_masked_settings(
    tmp_path: Path, small_bundle: Bundle, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(
        tmp_path, '[mqtt]\nusername = "u"\npassword = "hunter2"\n' + route(small_bundle.path)
    )
    assert main(["check-config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "hunter2" not in out
    effective = json.loads(out)
    assert effective["mqtt"]["password"] == "**********"
    assert effective["routes"][0]["bundle"] == str(small_bundle.path)


def test_check_config_reports_errors_and_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, route(tmp_path / "missing-bundle"))
    monkeypatch.setenv("SENSORD_CONFIG", str(path))
    assert main(["check-config"]) == EXIT_BAD_CONFIG
    err = capsys.readouterr().err
    assert "routes[0].bundle:" in err and "not a bundle directory" in err
    bad = write(tmp_path, "[alerts]\nprefix = 'a/+'\n" + route(tmp_path))
    assert main(["check-config", str(bad)]) == EXIT_BAD_CONFIG
    assert "alerts.prefix: 'a/+': each level must be" in capsys.readouterr().err


EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.toml"


def test_example_config_is_valid() -> None:
    settings = load_settings(EXAMPLE)
    assert settings.routes[0].topic == "sensors/+/temperature"


def test_example_config_documents_every_key() -> None:
    from pydantic import BaseModel

    from sensord.config import Settings

    text = EXAMPLE.read_text()

    def keys(model: type[BaseModel]) -> list[str]:
        found = []
        for name, info in model.model_fields.items():
            found.append(name)
            annotation = info.annotation
            inner = getattr(annotation, "__args__", (annotation,))
            for candidate in inner:
                if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                    found.extend(keys(candidate))
        return found

    missing = [
        k
        for k in keys(Settings)
        if f"{k} =" not in text and f"[{k}" not in text and f".{k}]" not in text
    ]
    assert missing == []


def test_password_from_a_systemd_credential(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "mqtt-password").write_text("from-systemd\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    path = write(tmp_path, route(tmp_path))
    settings = load_settings(path)
    assert settings.mqtt.password is not None
    assert settings.mqtt.password.get_secret_value() == "from-systemd"
    assert "from-systemd" not in json.dumps(effective_config(settings))
    (tmp_path / "explicit").mkdir()
    explicit = write(tmp_path / "explicit", '[mqtt]\npassword = "from-config"\n' + route(tmp_path))
    chosen = load_settings(explicit).mqtt.password
    assert chosen is not None and chosen.get_secret_value() == "from-config"
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path / "none"))
    assert load_settings(path).mqtt.password is None


def test_a_bad_environment_variable_is_named_not_blamed_on_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, route(tmp_path))
    monkeypatch.setenv("SENSORD_MQTT__PORT", "not-a-port")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    lines = str(info.value).splitlines()
    assert lines[0] == "environment: invalid configuration"
    assert lines[1].startswith("mqtt.port (from $SENSORD_MQTT__PORT): 'not-a-port': ")
    # with a bad key in the file as well, the file is named and each line says its source
    bad = write(tmp_path, "[mqtt]\nkeepalive = -5\n" + route(tmp_path))
    with pytest.raises(ConfigError) as info:
        load_settings(bad)
    lines = str(info.value).splitlines()
    assert lines[0] == f"{bad}: invalid configuration"
    assert any(line.startswith("mqtt.keepalive: -5: ") for line in lines), lines


def test_check_config_with_no_file_says_so(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SENSORD_CONFIG", raising=False)
    assert main(["check-config"]) == EXIT_BAD_CONFIG
    err = capsys.readouterr().err
    assert "no configuration file given" in err and "routes: []" not in err


@pytest.mark.parametrize("kind", REMOVED_KINDS)
def test_a_removed_detector_kind_is_one_clear_line_of_check_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    path = write(tmp_path, route(tmp_path) + f'[routes.detector]\nkind = "{kind}"\n')
    assert main(["check-config", str(path)]) == EXIT_BAD_CONFIG
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (line,) = [line for line in err.splitlines() if line.startswith("routes[0]")]
    assert line.startswith(f"routes[0].detector.kind: '{kind}': the '{kind}' detector was ")
    assert "channels is the only one" in line and "docs/detection.md" in line


def test_the_removed_detectors_options_are_refused_with_what_to_do(tmp_path: Path) -> None:
    text = route(tmp_path) + '[routes.detector]\nkind = "likelihood"\nwindow = 8640\n'
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, text))
    (line,) = [line for line in str(info.value).splitlines() if line.startswith("routes[0]")]
    assert line.startswith("routes[0].detector: {…}: window: of the single-error detectors")
    assert line.endswith(
        """delete it; and kind 'likelihood': set kind = "channels" or delete the line"""
    )
    channels = route(tmp_path) + '[routes.detector]\nkind = "channels"\nthreshold = 0.5\n'
    assert load_settings(write(tmp_path, channels)).routes[0].detector.threshold == 0.5


def test_the_defaults_the_core_also_has_are_the_cores() -> None:
    from sensord.config.detection import CHANNEL_NAMES, pipeline_settings
    from sensord.config.sections import BatchingSettings
    from sensord.core.detect import DETECTOR_CHANNELS
    from sensord.core.gaps import MIN_INTERVALS
    from sensord.core.nodata import NodataPolicy
    from sensord.core.pipeline import PipelineSettings

    settings = load_settings(None, require_routes=False)
    core = PipelineSettings()
    route = RouteSettings(topic="a/+", bundle=Path("b"))
    assert pipeline_settings(route, settings.alerts) == core
    nodata = settings.nodata
    assert NodataPolicy(nodata.multiple, nodata.min_silence_s, nodata.min_intervals) == (
        NodataPolicy()
    )
    # A Literal cannot be built from the core's tuple: the two are checked here instead.
    assert CHANNEL_NAMES == DETECTOR_CHANNELS
    reorder_gap = BatchingSettings.model_fields["reorder_gap"].description or ""
    assert f"has made {MIN_INTERVALS} steps" in reorder_gap


def test_web_verdicts_need_a_token_and_the_feedback_desk(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "[web]\nport = 0\nverdicts = true\n[feedback]\nenabled = false\n" + route(tmp_path),
    )
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    lines = str(info.value).splitlines()
    assert "web.verdicts: true: needs web.token, the page's bearer token" in lines
    assert "web.verdicts: true: needs feedback.enabled, the desk verdicts go to" in lines
    short = path.read_text().replace("verdicts = true", 'verdicts = true\ntoken = "short"')
    path.write_text(short)
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert "short" not in str(info.value)
    assert "web.token: **********: must be at least 16 characters" in str(info.value)


def test_web_token_is_never_shown(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    secret = "a-secret-token-of-some-length"
    path = write(
        tmp_path, f'[web]\nport = 8080\nverdicts = true\ntoken = "{secret}"\n' + route(tmp_path)
    )
    settings = load_settings(path)
    assert settings.web.token is not None and settings.web.token.get_secret_value() == secret
    assert secret not in json.dumps(effective_config(settings), default=str)
