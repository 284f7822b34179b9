"""The sections of the configuration: one pydantic model each, ``extra="forbid"``, every field
with a default, bounds and a description (``config.example.toml`` documents them all).

Here, the service's own sections: the MQTT connection, batching, state, limits, the web page,
metrics, recording and retraining, feedback, Home Assistant, logging. The cluster's is
cluster.py's. What a route makes of its readings (the route, its detector, alerts, nodata)
is detection.py's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator

from sensord.config.base import Section
from sensord.core.gaps import MIN_INTERVALS
from sensord.wire.topics import safe_topic_level

__all__ = [
    "CONFIG_ENV",
    "ENV_PREFIX",
    "SECRET_MASK",
    "YEAR_S",
    "BatchingSettings",
    "FeedbackSettings",
    "HomeAssistantSettings",
    "LimitsSettings",
    "LoggingSettings",
    "MetricsSettings",
    "MqttSettings",
    "RecordSettings",
    "RetrainSettings",
    "RouteSchedule",
    "StateSettings",
    "TlsSettings",
    "WebSettings",
]

CONFIG_ENV = "SENSORD_CONFIG"
ENV_PREFIX = "SENSORD_"  # SENSORD_MQTT__PORT sets mqtt.port
SECRET_MASK = "**********"


class TlsSettings(Section):
    enabled: bool = Field(False, description="Connect with TLS.")
    ca_file: Path | None = Field(None, description="CA bundle; default: the system's.")
    cert_file: Path | None = Field(None, description="Client certificate (mutual TLS).")
    key_file: Path | None = Field(None, description="Client private key (mutual TLS).")


class MqttSettings(Section):
    host: str = Field("localhost", min_length=1, description="Broker host.")
    port: int = Field(1883, ge=1, le=65535, description="Broker port.")
    client_id: str = Field(
        "sensord",
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9_.:-]+$",
        description="Stable client id: the broker keeps its session by it.",
    )
    username: str | None = Field(None, description="Username, if the broker wants one.")
    password: SecretStr | None = Field(None, description="Password (never logged).")
    protocol: Literal["5", "3.1.1"] = Field(
        "5",
        description='MQTT protocol version. In cluster mode, unless given: "3.1.1", all that '
        'the engine\'s MQTT gateway speaks ("5" is refused there).',
    )
    keepalive: int = Field(30, ge=5, le=3600, description="Keepalive interval, seconds.")
    qos: Literal[0, 1] = Field(
        1,
        description="QoS of the sensor subscriptions. 1: at least once, acknowledged after "
        "scoring, so nothing read is lost if sensord dies; 0: the broker may drop readings. "
        "(2 would promise no more: paho keeps QoS 2 state in memory only.)",
    )
    receive_maximum: int = Field(
        1024,
        ge=1,
        le=65_535,
        description="MQTT 5: most unacknowledged readings the broker sends ahead; at least "
        "batching.max_batch, ideally 2-4 times it. (MQTT 3.1.1: the broker's "
        "max_inflight_messages decides.)",
    )
    session_expiry_s: int = Field(
        3600,
        ge=0,
        le=4_294_967_295,
        description="MQTT 5: how long the broker keeps the session (and queued readings) "
        "while sensord is away.",
    )
    reconnect_min_s: float = Field(1.0, gt=0, le=60, description="First reconnect delay.")
    reconnect_max_s: float = Field(60.0, gt=0, le=3600, description="Longest reconnect delay.")
    tls: TlsSettings = Field(default_factory=TlsSettings, description="TLS options.")


class StateSettings(Section):
    dir: Path = Field(
        Path("/var/lib/sensord"), description="Where snapshots of stream state are kept."
    )
    snapshot: bool = Field(True, description="Restore state at start, snapshot at stop.")
    snapshot_interval_s: float = Field(
        60.0,
        ge=0,
        le=86_400,
        description="Also snapshot this often while running (0: only at stop, or when the "
        "journal is full); after a crash the journal since the snapshot is replayed onto it.",
    )
    journal_sync: bool = Field(
        False,
        description="fdatasync the readings journal after every batch: state survives a "
        "power cut too, not only a crash of the process (costs a disk flush per batch).",
    )
    journal_max_bytes: int = Field(
        16 * 1024 * 1024,
        ge=4096,
        le=1 << 34,
        description="Snapshot early once the journal of readings since the last snapshot "
        "is this large (it bounds the replay at start).",
    )
    outbox: bool = Field(
        True,
        description="Keep alerts in <dir>/outbox.log until the broker acknowledges them, "
        "and publish them again after a crash.",
    )


class BatchingSettings(Section):
    max_batch: int = Field(
        256,
        ge=1,
        le=65_536,
        description="Most readings per micro-batch (and parsed ahead of scoring).",
    )
    max_delay_ms: float = Field(
        5.0,
        ge=0,
        le=10_000,
        description="Latency budget of adaptive batching: once readings arrive, wait for more "
        "while they keep coming (in steps of a quarter of this; a step that brings none ends "
        "the wait, as does a full batch), at most this long after the first. At live rates a "
        "batch then holds several readings instead of one or two, at a fraction of the CPU "
        "per reading (benchmarks/lingering.py); a lone reading waits a quarter of this, and "
        "nothing waits while idle. 0: score what has arrived at once.",
    )
    reorder_window_ms: float = Field(
        1000.0,
        ge=0,
        le=60_000,
        description="How long a reading that arrives after a gap in its stream waits for the "
        "older ones a reconnecting publisher may send after it (released in order as soon as "
        "the gap fills); readings with no gap never wait. With MQTT 5, holds end sooner "
        "when mqtt.receive_maximum acknowledgements wait behind them (the broker can send "
        "nothing more). 0: off (late readings dropped).",
    )
    reorder_gap: float = Field(
        1.5,
        gt=1,
        le=1000,
        description="A gap: a timestamp more than this many times the stream's longest recent "
        "step (between its readings' timestamps) past its last reading; only once the stream "
        f"has made {MIN_INTERVALS} steps.",
    )


class LimitsSettings(Section):
    max_payload_bytes: int = Field(
        65_536, ge=16, le=16_777_216, description="Larger payloads are rejected before decoding."
    )
    log_interval_s: float = Field(
        10.0, ge=0, description="Rejection logs: at most one line per reason per this interval."
    )


class MetricsSettings(Section):
    host: str = Field("127.0.0.1", min_length=1, description="Address to listen on.")
    port: int | None = Field(
        None,
        ge=0,
        le=65535,
        description="Serve Prometheus metrics at http://host:port/metrics (0: any free "
        "port); unset: no endpoint.",
    )


class WebSettings(Section):
    host: str = Field("127.0.0.1", min_length=1, description="Address the web page listens on.")
    port: int | None = Field(
        None,
        ge=0,
        le=65535,
        description="Serve the operator's page at http://host:port/ (0: any free port); "
        "unset: no page.",
    )
    streams: int = Field(
        64,
        ge=1,
        le=10_000,
        description="Streams whose recent readings are kept for charts: those viewed and those "
        "that raised an alert, the least recently used let go first.",
    )
    points: int = Field(600, ge=16, le=100_000, description="Readings kept per charted stream.")
    alerts: int = Field(
        500, ge=10, le=100_000, description="Recent alert events kept for the page."
    )
    verdicts: bool = Field(
        False,
        description="Let the page send operators' verdicts (through the feedback desk; needs "
        "token and [feedback] enabled). Off: the page is read-only.",
    )
    token: SecretStr | None = Field(
        None,
        description="Bearer token the page must send with a verdict (at least 16 characters).",
    )
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Host names the page answers to (the request's Host header), against DNS "
        "rebinding; empty: only loopback names while host is a loopback address, else any.",
    )

    @field_validator("token")
    @classmethod
    def _token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters")
        return value


class RecordSettings(Section):
    enabled: bool = Field(
        False, description="Record the readings of the chosen routes for retraining."
    )
    routes: list[str] = Field(
        default_factory=list, description="Route names to record; empty: every route."
    )
    dir: Path | None = Field(None, description="Where recordings go; default: <state.dir>/records.")
    max_file_bytes: int = Field(
        64 * 1024 * 1024, ge=4096, le=1 << 40, description="Start a new file past this size."
    )
    max_file_age_s: float = Field(
        86_400.0, gt=0, le=366 * 86_400, description="Start a new file after this long."
    )
    keep_bytes: int = Field(
        1 << 30, ge=4096, le=1 << 50, description="Delete the oldest files past this total."
    )
    keep_days: float = Field(
        90.0, gt=0, le=36_500, description="Delete files whose newest reading is older than this."
    )


YEAR_S = 366 * 86_400


class RouteSchedule(Section):
    """A route's continual retraining where it differs from [retrain]'s; unset: as there."""

    continual: bool | None = Field(None, description="[retrain.routes.NAME]: route NAME's.")
    every_rows: int | None = Field(None, ge=10, le=100_000_000, description="Route NAME's.")
    min_interval_s: float | None = Field(None, ge=0, le=YEAR_S, description="Route NAME's.")


class RetrainSettings(Section):
    models_dir: Path | None = Field(
        None,
        description="Versioned bundles per route (<dir>/<route>/versions/<version>, "
        "<dir>/<route>/current); default: <state.dir>/models.",
    )
    holdout_fraction: float = Field(
        0.2, ge=0.05, le=0.5, description="Newest fraction of the recording held back to judge."
    )
    tolerance: float = Field(
        0.02,
        ge=0,
        le=1,
        description="A candidate is 'not worse' within this relative margin of the model in "
        "service (error, alert rate, NAB score).",
    )
    exclude_margin_s: float = Field(
        600.0, ge=0, le=30 * 86_400, description="Also leave out this long around an alert."
    )
    min_rows: int = Field(
        500, ge=100, le=100_000_000, description="Fewest recorded rows per stream to retrain on."
    )
    max_rows: int = Field(
        500_000, ge=1000, le=100_000_000, description="Train on at most the newest rows."
    )
    epochs: int = Field(60, ge=1, le=10_000, description="Most epochs per candidate.")
    threads: int = Field(
        1, ge=1, le=64, description="torch threads of a retrain: one takes at most one core."
    )
    continual: bool = Field(
        False,
        description="Retrain in the daemon: when a recorded route's schedule is due, a "
        "'sensord retrain' child process (one at a time, niced, CPU-limited) fits, judges "
        "and may promote a candidate, which the daemon hot-swaps keeping stream state. "
        "Needs [record] and the train extra; each route's bundle must be its current link.",
    )
    every_rows: int = Field(
        2000,
        ge=10,
        le=100_000_000,
        description="Continual: a route is due once this many readings per stream (on "
        "average) were scored since its last attempt (or since the daemon started).",
    )
    min_interval_s: float = Field(
        86_400.0,
        ge=0,
        le=YEAR_S,
        description="Continual: and no sooner than this after its last attempt ended (its "
        "last decision logged, so a restart does not retrain again at once).",
    )
    nice: int = Field(
        19, ge=0, le=19, description="Continual: the retrain child's nice value (19: lowest)."
    )
    max_cpu_s: int = Field(
        3600, ge=1, le=604_800, description="Continual: CPU seconds a retrain may use (RLIMIT_CPU)."
    )
    routes: dict[str, RouteSchedule] = Field(
        default_factory=dict, description="Continual: per route, [retrain.routes.NAME]."
    )


class FeedbackSettings(Section):
    enabled: bool = Field(
        True, description="Take operators' verdicts on <prefix>/feedback/<stream>."
    )
    max_payload_bytes: int = Field(
        4096, ge=64, le=1_048_576, description="Larger feedback messages are refused."
    )


class HomeAssistantSettings(Section):
    enabled: bool = Field(False, description="Publish Home Assistant MQTT discovery.")
    discovery_prefix: str = Field("homeassistant", description="Home Assistant's discovery prefix.")

    @field_validator("discovery_prefix")
    @classmethod
    def _discovery_prefix(cls, value: str) -> str:
        if not all(safe_topic_level(level) for level in value.split("/")):
            raise ValueError("each level must be letters, digits, _ . : - (no wildcards)")
        return value


class LoggingSettings(Section):
    level: Literal["debug", "info", "warning", "error"] = Field("info", description="Log level.")
    format: Literal["auto", "console", "json"] = Field(
        "auto", description="json under systemd/pipes, console on a terminal, or forced."
    )
