"""The sections of the configuration: one pydantic model each, ``extra="forbid"``, every field
with a default, bounds and a description (``config.example.toml`` documents them all)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from sensord.core.alert import AlertPolicy
from sensord.core.detect import DEFAULT_THRESHOLD, DetectorKind, DetectorSettings
from sensord.wire.topics import check_stream_template, check_topic_filter, safe_topic_level

CONFIG_ENV = "SENSORD_CONFIG"
ENV_PREFIX = "SENSORD_"  # SENSORD_MQTT__PORT sets mqtt.port
ChannelName = Literal["point", "sustained", "contextual", "shift", "extremes"]
CHANNEL_NAMES: tuple[ChannelName, ...] = ("point", "sustained", "contextual", "shift", "extremes")
SECRET_MASK = "**********"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class TlsSettings(_Section):
    enabled: bool = Field(False, description="Connect with TLS.")
    ca_file: Path | None = Field(None, description="CA bundle; default: the system's.")
    cert_file: Path | None = Field(None, description="Client certificate (mutual TLS).")
    key_file: Path | None = Field(None, description="Client private key (mutual TLS).")


class MqttSettings(_Section):
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
    protocol: Literal["5", "3.1.1"] = Field("5", description="MQTT protocol version.")
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


# The core's own defaults: each written once, where the core defines it.
_DETECTOR = DetectorSettings()
_ALERTS = AlertPolicy()


class DetectorConfig(_Section):
    kind: DetectorKind = Field(
        _DETECTOR.kind,
        description="How surprises are scored: channels (point, sustained, contextual, shift "
        "and extremes channels on calibrated tails), or the single-error detectors "
        "likelihood, adaptive, fixed, telemanom, spot.",
    )
    threshold: float = Field(
        DEFAULT_THRESHOLD,
        gt=0,
        lt=1,
        description="Score at or above which a sample is anomalous. For channels, a score s "
        "means a tail probability of 10^(-5 s / (1 - s)) on the stream's normal data: 0.5 is "
        "one sample in 100,000, 0.45 one in 12,000, 0.55 one in 1.3 million.",
    )
    channels: list[ChannelName] = Field(
        default_factory=lambda: list(CHANNEL_NAMES),
        min_length=1,
        description="The channels the channels detector listens to (extremes is the range "
        "rule, also governed by range_rule).",
    )
    error_horizon: int = Field(
        _DETECTOR.error_horizon,
        ge=2,
        le=10_000_000,
        description="Samples the error scale remembers.",
    )
    sustained_span: float = Field(
        _DETECTOR.sustained_span,
        ge=1,
        le=100_000,
        description="Samples the sustained channel averages errors over.",
    )
    context_span: float = Field(
        _DETECTOR.context_span,
        ge=1,
        le=100_000,
        description="Samples the contextual channel's level spans.",
    )
    context_days: float = Field(
        _DETECTOR.context_days,
        gt=0,
        le=3650,
        description="Days the time-of-day profile remembers.",
    )
    shift_span: float = Field(
        _DETECTOR.shift_span,
        ge=1,
        le=100_000,
        description="Samples the shift channel accumulates over.",
    )
    min_samples: int = Field(
        _DETECTOR.min_samples,
        ge=1,
        le=10_000_000,
        description="Samples a channel sees before it may speak.",
    )
    smoothing: float | None = Field(
        None, gt=0, le=1, description="EWMA weight of the newest error; default: the bundle's."
    )
    window: int = Field(
        8640,
        ge=2,
        le=10_000_000,
        description="The single-error detectors' statistics horizon, samples.",
    )
    range_rule: bool = Field(True, description="Score 1 for a value beyond the range seen.")
    range_margin: float = Field(
        0.05,
        ge=0,
        le=10,
        description="The range rule's slack: this fraction of the range on each side.",
    )
    range_min_samples: int = Field(
        100, ge=0, le=10_000_000, description="Values a stream must show before the range rule."
    )
    raise_after: int = Field(
        1, ge=1, le=10_000, description="Anomalous samples in a row that raise an alert."
    )
    clear_after: int = Field(
        5, ge=1, le=10_000, description="Normal samples in a row that clear it."
    )
    warmup: int = Field(
        10, ge=0, le=1_000_000, description="Samples after a stream (re)starts before it may alert."
    )
    repeat_window: int = Field(
        _ALERTS.repeat_window,
        ge=0,
        le=1_000_000,
        description="A new alert within this many samples of a higher score is the same event.",
    )
    adopt_after_s: float | None = Field(
        _ALERTS.adopt_after_s,
        gt=0,
        description="After an alert has lasted this long, the stream's state becomes its new "
        "normal and the alert clears (reason 'adopted'); none: only an operator's new_normal "
        "verdict or a retrained bundle does that.",
    )


class RouteSettings(_Section):
    topic: str = Field(description="MQTT topic filter (+ and # wildcards).")
    bundle: Path = Field(description="Model bundle directory.")
    name: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="Route name for logs and metrics; default: the bundle's model name.",
    )
    format: Literal["auto", "number", "json", "senml"] = Field(
        "auto", description="Payload format; auto tells number, JSON object and SenML apart."
    )
    stream: str = Field(
        "{wild}",
        description="Stream id template: {wild} (the levels the "
        "wildcards matched, joined by '.'), {topic}, "
        "{N} (topic level N, from 0; -1 is the last).",
    )
    max_gap_s: float | None = Field(
        None, gt=0, description="Silence after which a stream's state resets; none: never."
    )
    max_streams: int = Field(
        100_000,
        ge=1,
        le=10_000_000,
        description="Most streams this route keeps; new ones beyond are rejected and counted.",
    )
    idle_ttl_s: float | None = Field(
        7 * 86400, gt=0, description="Forget a stream silent this long; none: never."
    )
    detector: DetectorConfig = Field(default_factory=DetectorConfig, description="Detector.")
    units: dict[str, str] = Field(
        default_factory=dict,
        description='Units of the bundle\'s features, by feature name (e.g. value = "°C"): '
        "shown in alerts and their messages.",
    )
    shadow: Path | None = Field(
        None,
        description="A second bundle scored on the same readings without publishing "
        "alerts; its error and alert rate are exposed beside the live model's.",
    )

    @field_validator("topic")
    @classmethod
    def _topic(cls, value: str) -> str:
        check_topic_filter(value)
        return value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and value.strip(".") == "":
            raise ValueError("a route name names files and directories: not only dots")
        return value

    @field_validator("stream")
    @classmethod
    def _stream(cls, value: str) -> str:
        check_stream_template(value)
        return value


class AlertsSettings(_Section):
    prefix: str = Field("sensord", description="Topic prefix of everything sensord publishes.")
    cooldown_s: float = Field(
        0.0, ge=0, description="After a clear, no new alert on the stream for this long."
    )
    hysteresis: float = Field(0.1, ge=0, lt=1, description="Clear only below threshold minus this.")
    publish_state: bool = Field(True, description="Publish retained <prefix>/state/<stream>.")
    state_refresh_s: float = Field(
        60.0,
        ge=0,
        le=86_400,
        description="Also republish a stream's state this often (as its readings arrive) with "
        "its latest score and reading, for dashboards and Home Assistant's score entity; "
        "0: only when its status changes.",
    )

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        levels = value.split("/")
        if not all(safe_topic_level(level) for level in levels):
            raise ValueError("each level must be letters, digits, _ . : - (no wildcards)")
        return value


class StateSettings(_Section):
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


class BatchingSettings(_Section):
    max_batch: int = Field(
        256,
        ge=1,
        le=65_536,
        description="Most readings per micro-batch (and parsed ahead of scoring).",
    )
    max_delay_ms: float = Field(
        0.0,
        ge=0,
        le=10_000,
        description="Longest wait for a batch to fill after its first reading; 0: score what "
        "has arrived at once (batches still fill under load, while a batch is scored).",
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
        "has made 16 steps.",
    )


class LimitsSettings(_Section):
    max_payload_bytes: int = Field(
        65_536, ge=16, le=16_777_216, description="Larger payloads are rejected before decoding."
    )
    log_interval_s: float = Field(
        10.0, ge=0, description="Rejection logs: at most one line per reason per this interval."
    )


class MetricsSettings(_Section):
    host: str = Field("127.0.0.1", min_length=1, description="Address to listen on.")
    port: int | None = Field(
        None,
        ge=0,
        le=65535,
        description="Serve Prometheus metrics at http://host:port/metrics (0: any free "
        "port); unset: no endpoint.",
    )


class WebSettings(_Section):
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


class RecordSettings(_Section):
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


class RetrainSettings(_Section):
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


class NodataSettings(_Section):
    enabled: bool = Field(True, description="Raise a nodata event when a stream falls silent.")
    multiple: float = Field(
        10.0, ge=1.5, le=1_000_000, description="Silent for this many usual periods: nodata."
    )
    min_silence_s: float = Field(
        30.0, ge=0, le=365 * 86_400, description="Never call a silence shorter than this nodata."
    )
    min_intervals: int = Field(
        5, ge=1, le=1_000_000, description="Intervals seen before a stream's period is known."
    )


class FeedbackSettings(_Section):
    enabled: bool = Field(
        True, description="Take operators' verdicts on <prefix>/feedback/<stream>."
    )
    max_payload_bytes: int = Field(
        4096, ge=64, le=1_048_576, description="Larger feedback messages are refused."
    )


class HomeAssistantSettings(_Section):
    enabled: bool = Field(False, description="Publish Home Assistant MQTT discovery.")
    discovery_prefix: str = Field("homeassistant", description="Home Assistant's discovery prefix.")

    @field_validator("discovery_prefix")
    @classmethod
    def _discovery_prefix(cls, value: str) -> str:
        if not all(safe_topic_level(level) for level in value.split("/")):
            raise ValueError("each level must be letters, digits, _ . : - (no wildcards)")
        return value


class LoggingSettings(_Section):
    level: Literal["debug", "info", "warning", "error"] = Field("info", description="Log level.")
    format: Literal["auto", "console", "json"] = Field(
        "auto", description="json under systemd/pipes, console on a terminal, or forced."
    )


class ClusterSettings(_Section):
    url: str | None = Field(
        None,
        min_length=1,
        description="NATS server(s) with JetStream, e.g. nats://engine:4222 (several: comma "
        "separated); unset: single-node mode, no cluster.",
    )
    member: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="This member's name, unique in the cluster; default: the host name.",
    )
    user: str | None = Field(None, min_length=1, description="NATS user name.")
    password: SecretStr | None = Field(None, description="NATS password (for user).")
    credentials: Path | None = Field(
        None, description="NATS credentials file (.creds: JWT and NKey seed), instead of user."
    )
    name: str = Field(
        "sensord",
        min_length=1,
        max_length=32,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="The cluster's name: its buckets are <name>_members, <name>_leases, "
        "<name>_state and <name>_alerts. Every member of one cluster uses the same.",
    )
    partitions: int = Field(
        12,
        ge=1,
        le=1024,
        description="Partitions the streams are hashed into; must equal the engine's subject "
        "mapping partition(N,1) (sensord cluster-config prints it). At least the members.",
    )
    lease_s: float = Field(
        6.0,
        ge=1.0,
        le=300.0,
        description="A partition's lease time: a dead member's partitions move within about "
        "this plus a third of it. Every member uses the same.",
    )
    checkpoint_s: float = Field(
        5.0,
        ge=0.5,
        le=3600.0,
        description="How often each owned partition's state is saved to the engine: what a "
        "member taking over replays at most.",
    )
    log_stream: str = Field(
        "SENSORD_READINGS",
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="The JetStream stream that journals the partitioned readings (part.>).",
    )
    log_max_age_s: float = Field(
        86_400.0,
        ge=60.0,
        le=366 * 86_400,
        description="How long the readings log keeps readings (must outlast checkpoint_s "
        "by far) and the alert ledger its entries.",
    )
    prefetch: int = Field(
        1024,
        ge=16,
        le=100_000,
        description="Readings fetched ahead of scoring, all partitions together.",
    )
