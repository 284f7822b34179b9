"""Variants of the daemon's settings for the detection benchmarks (nab.py, skab.py).

A variant is ``NAME`` or ``NAME:key=value,key=value`` where each key is a field of
``DetectorSettings`` (``threshold``, ``channels``, ``context_span``, ...) or, prefixed with
``alert.``, of ``AlertPolicy`` (``alert.repeat_window``, ...); ``channels`` takes channel
names joined by ``+``. ``model=persistence`` replays the variant with "repeat the last value"
in place of the bundle's network. The variant ``default`` is the daemon's defaults.

    default
    no-contextual:channels=point+sustained+shift+extremes
    threshold-0.45:threshold=0.45
    persistence:model=persistence
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from sensord.core.alert import AlertPolicy
from sensord.core.detect import DetectorSettings
from sensord.core.pipeline import PipelineSettings

MODELS = ("lstm", "persistence")


@dataclass(frozen=True)
class Variant:
    name: str
    settings: PipelineSettings = field(default_factory=PipelineSettings)
    model: str = "lstm"


def parse_variant(text: str) -> Variant:
    """A variant from its text (see the module docstring); ValueError with the reason."""
    name, _, spec = text.partition(":")
    if not name:
        raise ValueError(f"variant {text!r}: no name")
    # Values parsed by each field's type (``_value``); the dataclasses validate them.
    detector: dict[str, Any] = {}
    alerts: dict[str, Any] = {}
    model = "lstm"
    for item in filter(None, spec.split(",")):
        key, _, raw = item.partition("=")
        if not raw:
            raise ValueError(f"variant {name}: {item!r} is not key=value")
        if key == "model":
            if raw not in MODELS:
                raise ValueError(f"variant {name}: model {raw!r} is not one of {MODELS}")
            model = raw
        elif key.startswith("alert."):
            key = key.removeprefix("alert.")
            alerts[key] = _value(AlertPolicy, key, raw)
        else:
            detector[key] = _value(DetectorSettings, key, raw)
    try:
        settings = PipelineSettings(
            detector=dataclasses.replace(DetectorSettings(), **detector),
            alerts=dataclasses.replace(AlertPolicy(), **alerts),
        )
    except (TypeError, ValueError) as exc:
        raise ValueError(f"variant {name}: {exc}") from None
    return Variant(name, settings, model)


def _value(kind: type, key: str, raw: str) -> object:
    fields = {f.name: f for f in dataclasses.fields(kind)}
    if key not in fields:
        raise ValueError(f"{key!r} is not a setting of {kind.__name__}")
    default = getattr(kind(), key)
    if key == "channels":
        return frozenset(raw.split("+"))
    if raw == "none":
        return None
    if isinstance(default, bool):
        return raw.lower() in ("1", "true", "yes")
    if isinstance(default, int):
        return int(raw)
    if isinstance(default, float) or default is None:
        return float(raw)
    return raw
