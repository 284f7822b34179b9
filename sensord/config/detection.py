"""The sections about what a route makes of its readings: the route itself, its detector, the
alerts and the nodata events; and the core's plain settings they become.

Every default the core also has is taken from the core (``DetectorSettings``, ``AlertPolicy``,
``NodataPolicy``), so it is written once, where the core defines it.
"""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from sensord.config.base import Section
from sensord.core.alert import AlertPolicy
from sensord.core.detect import DEFAULT_RANGE_MARGIN, DetectorKind, DetectorSettings
from sensord.core.nodata import NodataPolicy
from sensord.core.pipeline import PipelineSettings
from sensord.wire.topics import check_stream_template, check_topic_filter, safe_topic_level

# The channels detector's channels, as the core names them (tests/config/test_config.py checks that
# this list is the core's DETECTOR_CHANNELS: a Literal cannot be built from a tuple).
ChannelName = Literal["point", "sustained", "contextual", "shift", "extremes"]
CHANNEL_NAMES: tuple[ChannelName, ...] = typing.get_args(ChannelName)

_DETECTOR = DetectorSettings()
_ALERTS = AlertPolicy()
_NODATA = NodataPolicy()

# What an old configuration may still name, with what to do instead: one line each.
REMOVED_SINCE = "removed after sensord 0.1.0 (docs/detection.md#one-detector)"
REMOVED_KINDS = ("likelihood", "adaptive", "fixed", "telemanom", "spot")
REMOVED_KEYS = ("smoothing", "window")  # the single-error detectors' own options
CHANNELS_KIND = 'set kind = "channels" or delete the line'


def removed_kind(kind: object) -> str:
    return f"the {kind!r} detector was {REMOVED_SINCE}: channels is the only one; {CHANNELS_KIND}"


def removed_keys(keys: list[str], kind: object) -> str:
    also = f"; and kind {kind!r}: {CHANNELS_KIND}" if kind in REMOVED_KINDS else ""
    return (
        f"{', '.join(keys)}: of the single-error detectors, {REMOVED_SINCE}: "
        f"delete {'it' if len(keys) == 1 else 'them'}{also}"
    )


class DetectorConfig(Section):
    kind: DetectorKind = Field(
        _DETECTOR.kind,
        description="How surprises are scored: channels, the only detector (point, sustained, "
        "contextual, shift and extremes channels on calibrated tails). The single-error "
        f"detectors ({', '.join(REMOVED_KINDS)}) were {REMOVED_SINCE}.",
    )
    threshold: float = Field(
        _DETECTOR.threshold,
        gt=0,
        lt=1,
        description="Score at or above which a sample is anomalous. For channels, a score s "
        "means a tail probability of 10^(-5 s / (1 - s)) on the stream's normal data: 0.5 is "
        "one sample in 100,000, 0.45 one in 12,000, 0.55 one in 1.3 million.",
    )
    channels: list[ChannelName] = Field(
        default_factory=lambda: [c for c in CHANNEL_NAMES if c in _DETECTOR.channels],
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
    range_rule: bool = Field(
        _DETECTOR.range_margin is not None,
        description="The extremes channel (the range rule): a value beyond the range the "
        "stream has shown is a new extreme.",
    )
    range_margin: float = Field(
        DEFAULT_RANGE_MARGIN,
        ge=0,
        le=10,
        description="The range rule's slack: this fraction of the range on each side.",
    )
    range_min_samples: int = Field(
        _DETECTOR.range_min_samples,
        ge=0,
        le=10_000_000,
        description="Values a stream must show before the range rule.",
    )
    raise_after: int = Field(
        _ALERTS.raise_after,
        ge=1,
        le=10_000,
        description="Anomalous samples in a row that raise an alert.",
    )
    clear_after: int = Field(
        _ALERTS.clear_after, ge=1, le=10_000, description="Normal samples in a row that clear it."
    )
    warmup: int = Field(
        _ALERTS.warmup,
        ge=0,
        le=1_000_000,
        description="Samples after a stream (re)starts before it may alert.",
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

    @model_validator(mode="before")
    @classmethod
    def _removed_keys(cls, data: Any) -> Any:
        # An option of the removed detectors is refused with what to do, not as a typo.
        gone = [key for key in REMOVED_KEYS if isinstance(data, dict) and key in data]
        if gone:
            raise ValueError(removed_keys(gone, data.get("kind")))
        return data

    @field_validator("kind", mode="before")
    @classmethod
    def _removed_kind(cls, value: object) -> object:
        if value in REMOVED_KINDS:
            raise ValueError(removed_kind(value))
        return value


class RouteSettings(Section):
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


class AlertsSettings(Section):
    prefix: str = Field("sensord", description="Topic prefix of everything sensord publishes.")
    cooldown_s: float = Field(
        _ALERTS.cooldown_s,
        ge=0,
        description="After a clear, no new alert on the stream for this long.",
    )
    hysteresis: float = Field(
        _ALERTS.hysteresis, ge=0, lt=1, description="Clear only below threshold minus this."
    )
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


class NodataSettings(Section):
    enabled: bool = Field(True, description="Raise a nodata event when a stream falls silent.")
    multiple: float = Field(
        _NODATA.multiple,
        ge=1.5,
        le=1_000_000,
        description="Silent for this many usual periods: nodata.",
    )
    min_silence_s: float = Field(
        _NODATA.min_silence_s,
        ge=0,
        le=365 * 86_400,
        description="Never call a silence shorter than this nodata.",
    )
    min_intervals: int = Field(
        _NODATA.min_intervals,
        ge=1,
        le=1_000_000,
        description="Intervals seen before a stream's period is known.",
    )


def pipeline_settings(route: RouteSettings, alerts: AlertsSettings) -> PipelineSettings:
    """The core's plain settings for one route (the core never sees these models)."""
    d = route.detector
    return PipelineSettings(
        detector=DetectorSettings(
            kind=d.kind,
            threshold=d.threshold,
            range_margin=d.range_margin if d.range_rule else None,
            range_min_samples=d.range_min_samples,
            channels=frozenset(d.channels),
            error_horizon=d.error_horizon,
            sustained_span=d.sustained_span,
            context_span=d.context_span,
            context_days=d.context_days,
            shift_span=d.shift_span,
            min_samples=d.min_samples,
        ),
        alerts=AlertPolicy(
            raise_after=d.raise_after,
            clear_after=d.clear_after,
            hysteresis=alerts.hysteresis,
            cooldown_s=alerts.cooldown_s,
            warmup=d.warmup,
            repeat_window=d.repeat_window,
            adopt_after_s=d.adopt_after_s,
        ),
        max_gap_s=route.max_gap_s,
    )
