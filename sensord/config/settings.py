"""The whole configuration: one TOML file, overridden by ``SENSORD_<SECTION>__<KEY>``
environment variables; loaded, cross-checked and shown with its secrets masked."""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from sensord.config.cluster import GATEWAY_PROTOCOL, ClusterSettings
from sensord.config.detection import (
    AlertsSettings,
    NodataSettings,
    RouteSettings,
    pipeline_settings,
)
from sensord.config.sections import (
    CONFIG_ENV,
    ENV_PREFIX,
    SECRET_MASK,
    BatchingSettings,
    FeedbackSettings,
    HomeAssistantSettings,
    LimitsSettings,
    LoggingSettings,
    MetricsSettings,
    MqttSettings,
    RecordSettings,
    RetrainSettings,
    StateSettings,
    WebSettings,
)
from sensord.core.pipeline import PipelineSettings
from sensord.errors import ConfigError
from sensord.wire.partition import nats_subject, subject_mapping


class Settings(BaseSettings):
    """The whole configuration of ``sensord run``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    routes: list[RouteSettings] = Field(default_factory=list, description="Topic → bundle.")
    alerts: AlertsSettings = Field(default_factory=AlertsSettings)
    state: StateSettings = Field(default_factory=StateSettings)
    batching: BatchingSettings = Field(default_factory=BatchingSettings)
    limits: LimitsSettings = Field(default_factory=LimitsSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    web: WebSettings = Field(default_factory=WebSettings)
    record: RecordSettings = Field(default_factory=RecordSettings)
    retrain: RetrainSettings = Field(default_factory=RetrainSettings)
    nodata: NodataSettings = Field(default_factory=NodataSettings)
    feedback: FeedbackSettings = Field(default_factory=FeedbackSettings)
    homeassistant: HomeAssistantSettings = Field(default_factory=HomeAssistantSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    cluster: ClusterSettings = Field(default_factory=ClusterSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The TOML file arrives as init arguments; environment variables override it.
        return (env_settings, init_settings)

    @model_validator(mode="after")
    def _gateway_protocol(self) -> Settings:
        """A cluster member's MQTT side is the engine's MQTT gateway, which speaks 3.1.1 only
        (docs/cluster.md): unless the protocol is given, use that (cross_check refuses an
        explicit "5"). A member left on 5 would hold partitions it cannot publish for."""
        if self.cluster.url is not None and "protocol" not in self.mqtt.model_fields_set:
            self.mqtt = self.mqtt.model_copy(update={"protocol": GATEWAY_PROTOCOL})
        return self

    @property
    def records_dir(self) -> Path:
        return self.record.dir or self.state.dir / "records"

    @property
    def models_dir(self) -> Path:
        return self.retrain.models_dir or self.state.dir / "models"

    @property
    def feedback_file(self) -> Path:
        return self.state.dir / "feedback.jsonl"

    def pipeline_settings(self, route: RouteSettings) -> PipelineSettings:
        """The core's plain settings for one route (the core never sees this object)."""
        return pipeline_settings(route, self.alerts)


def route_name(index: int, route: RouteSettings, model_name: str) -> str:
    """A route's name: its own, else ``route<index>-<model name>``."""
    return route.name or f"route{index}-{model_name}"


def config_path(path: Path | None) -> Path | None:
    """The file to read: the argument, else ``$SENSORD_CONFIG``, else none."""
    if path is not None:
        return path
    env = os.environ.get(CONFIG_ENV)
    return Path(env) if env else None


def load_settings(path: Path | None, require_routes: bool = True) -> Settings:
    """Read, merge and validate; raise ConfigError listing every problem."""
    data = _read_toml(path) if path is not None else {}
    where = str(path) if path is not None else "settings"
    try:
        settings = with_credentials(Settings(**data), os.environ)
    except ValidationError as exc:
        lines, from_file = format_errors(exc, os.environ)
        heading = where if from_file else "environment"
        raise ConfigError(f"{heading}: invalid configuration\n" + "\n".join(lines)) from None
    problems = cross_check(settings)
    if require_routes and not settings.routes:
        if path is None:
            raise ConfigError(
                f"no configuration file given: pass one (--config FILE) or set ${CONFIG_ENV}"
            )
        problems.append("routes: []: at least one [[routes]] entry is needed (topic and bundle)")
    if problems:
        raise ConfigError(f"{where}: invalid configuration\n" + "\n".join(problems))
    return settings


def cross_check(settings: Settings) -> list[str]:
    """Rules that tie two sections together, each as ``key path: value: reason``."""
    problems = []
    mqtt, batch = settings.mqtt, settings.batching.max_batch
    if mqtt.protocol == "5" and mqtt.receive_maximum < batch:
        problems.append(
            f"mqtt.receive_maximum: {mqtt.receive_maximum}: must be at least "
            f"batching.max_batch ({batch}), or batches can never fill"
        )
    web = settings.web
    if web.verdicts and web.token is None:
        problems.append("web.verdicts: true: needs web.token, the page's bearer token")
    if web.verdicts and not settings.feedback.enabled:
        problems.append("web.verdicts: true: needs feedback.enabled, the desk verdicts go to")
    problems += _cluster_problems(settings)
    names = [r.name for r in settings.routes if r.name]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"routes.name: {name!r}: two routes have this name")
    return problems


def _cluster_problems(settings: Settings) -> list[str]:
    """Cluster mode leaves out what would need one member to see every stream."""
    cluster = settings.cluster
    if cluster.url is None:
        return []
    problems = []
    if settings.mqtt.protocol != GATEWAY_PROTOCOL:
        problems.append(
            f"mqtt.protocol: {settings.mqtt.protocol!r}: a cluster member publishes through "
            f"the engine's MQTT gateway, which speaks only {GATEWAY_PROTOCOL}: set protocol "
            f'= "{GATEWAY_PROTOCOL}" or leave it unset (the default in cluster mode)'
        )
    if cluster.password is not None and cluster.user is None:
        problems.append("cluster.password: needs cluster.user")
    if cluster.user is not None and cluster.credentials is not None:
        problems.append("cluster.credentials: give cluster.user or a credentials file, not both")
    for i, route in enumerate(settings.routes):
        try:
            subject_mapping(cluster.partitions, nats_subject(route.topic))
        except ValueError as exc:
            problems.append(f"routes[{i}].topic: {route.topic!r}: in cluster mode, {exc}")
    if settings.homeassistant.enabled:
        problems.append(
            "homeassistant.enabled: true: not available in cluster mode yet (a stream's "
            "entities would follow the member that owns it)"
        )
    if settings.feedback.enabled and "enabled" in settings.feedback.model_fields_set:
        problems.append(
            "feedback.enabled: true: not available in cluster mode yet (a verdict must reach "
            "the member owning its stream)"
        )
    return problems


# systemd's credentials (LoadCredential=mqtt-password:/etc/sensord/mqtt-password) keep the
# broker password out of the config file and the environment, readable only by the service.
PASSWORD_CREDENTIAL = "mqtt-password"


def with_credentials(settings: Settings, environ: Mapping[str, str]) -> Settings:
    """The MQTT password from ``$CREDENTIALS_DIRECTORY/mqtt-password`` when the file and
    the environment set none (one set there is the more specific, and wins)."""
    folder = environ.get("CREDENTIALS_DIRECTORY")
    if not folder or settings.mqtt.password is not None:
        return settings
    path = Path(folder) / PASSWORD_CREDENTIAL
    try:
        secret = path.read_text().rstrip("\r\n")
    except FileNotFoundError:
        return settings
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the MQTT password credential ({exc})") from None
    mqtt = settings.mqtt.model_copy(update={"password": SecretStr(secret)})
    return settings.model_copy(update={"mqtt": mqtt})


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None


SECRETS = (
    "mqtt.password",
    "web.token",
    "cluster.password",
)  # masked in errors and in check-config's output


def format_errors(
    exc: ValidationError, environ: Mapping[str, str] | None = None
) -> tuple[list[str], bool]:
    """One line per error: ``key path: value: reason``, secrets masked, and the environment
    variable named where the value came from one; and whether any came from the file."""
    lines, from_file = [], False
    for error in exc.errors():
        path = _key_path(error["loc"])
        value = error.get("input")
        secret = any(path.endswith(key) for key in SECRETS)
        shown = SECRET_MASK if secret else _show_value(value)
        reason = re.sub(r"^Value error, ", "", error["msg"])
        variable = _env_source(error["loc"], environ or {})
        if variable is None:
            from_file = True
            lines.append(f"{path}: {shown}: {reason}")
        else:
            lines.append(f"{path} (from ${variable}): {shown}: {reason}")
    return lines, from_file


def _env_source(loc: tuple[int | str, ...], environ: Mapping[str, str]) -> str | None:
    """The environment variable that set the value at ``loc`` (``SENSORD_MQTT__PORT`` for
    ``mqtt.port``, or ``SENSORD_MQTT`` holding JSON), if one did."""
    names = {name.upper(): name for name in environ if name.upper().startswith(ENV_PREFIX)}
    keys: list[str] = []
    for part in loc:
        if isinstance(part, int):
            break  # a list's items come from JSON in the variable above them
        keys.append(str(part))
    for n in range(len(keys), 0, -1):
        name = names.get(ENV_PREFIX + "__".join(keys[:n]).upper())
        if name is not None:
            return name
    return None


def _key_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "(top level)"


def _show_value(value: object) -> str:
    if isinstance(value, dict):
        return "{…}"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "…"


def effective_config(settings: Settings) -> dict[str, Any]:
    """The settings as plain data, secrets masked."""
    data = settings.model_dump(mode="json")
    for key in SECRETS:
        section, name = key.split(".")
        if data[section].get(name) is not None:
            data[section][name] = SECRET_MASK
    return data
