"""Variants of the daemon's settings for the detection benchmarks (nab.py, skab.py).

A variant is ``NAME`` or ``NAME:key=value,key=value`` where each key is a field of
``DetectorSettings`` (``threshold``, ``channels``, ``context_span``, ...) or, prefixed with
``alert.``, of ``AlertPolicy`` (``alert.repeat_window``, ...); ``channels`` takes channel
names joined by ``+``. ``model=persistence`` replays the variant with "repeat the last value"
in place of the bundle's network (the switch of ``sensord replay --engine``).
``retrain=N`` learns continually and causally (benchmarks/causalretrain.py): after every N rows
of a file the bundle is retrained on the rows before, and the replay goes on with it, the
streams' state carried over as the daemon's hot swap does; each candidate is judged first as
``sensord retrain`` judges one, and swapped in only if it is not worse (``gate=off``: every
candidate swapped in, unjudged). ``kind=`` names a baseline
(benchmarks/baselines/) to score in place of the channels detector, with its own options
(``smoothing``, ``window``, ``prior_weight``). The variant ``default`` is the daemon's
defaults.

    default
    no-contextual:channels=point+sustained+shift+extremes
    threshold-0.45:threshold=0.45
    persistence:model=persistence
    retrain1000:retrain=1000
    likelihood-0.5:kind=likelihood,threshold=0.5
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from benchmarks.baselines import BaselineSettings, baseline_factory
from sensord.core.alert import AlertPolicy
from sensord.core.bundle import Bundle
from sensord.core.detect import DetectorSettings
from sensord.core.pipeline import Pipeline, PipelineSettings
from sensord.offline.replay import ENGINES, engine_for

MODELS = ENGINES  # model=: what predicts each reading (sensord replay --engine's choices)
PRODUCT = DetectorSettings().kind  # the product's detector: no baseline in its place
BASELINE_KEYS = {f.name for f in dataclasses.fields(BaselineSettings)}  # kind= among them


@dataclass(frozen=True)
class Variant:
    name: str
    settings: PipelineSettings = field(default_factory=PipelineSettings)
    model: str = "lstm"
    baseline: BaselineSettings | None = None  # scored in place of the channels detector
    retrain: int | None = None  # rows between causal retrains (None: the one bundle)
    gate: bool = True  # retrain=N: judge each candidate before it is swapped in

    def pipeline(self, bundle: Bundle) -> Pipeline:
        """A core for ``bundle`` that scores as this variant says."""
        engine = engine_for(bundle, self.model)
        if self.baseline is None:
            return Pipeline(engine, self.settings)
        return Pipeline(engine, self.settings, detector_factory=baseline_factory(self.baseline))


def parse_variant(text: str) -> Variant:
    """A variant from its text (see the module docstring); ValueError with the reason."""
    name, _, spec = text.partition(":")
    if not name:
        raise ValueError(f"variant {text!r}: no name")
    # Values parsed by each field's type (``_value``); the dataclasses validate them.
    detector: dict[str, Any] = {}
    alerts: dict[str, Any] = {}
    baseline: dict[str, Any] = {}
    model, retrain, gate = MODELS[0], None, True
    for item in filter(None, spec.split(",")):
        key, _, raw = item.partition("=")
        if not raw:
            raise ValueError(f"variant {name}: {item!r} is not key=value")
        if key == "model":
            if raw not in MODELS:
                raise ValueError(f"variant {name}: model {raw!r} is not one of {MODELS}")
            model = raw
        elif key == "retrain":
            retrain = _rows(name, raw)
        elif key == "gate":
            if raw not in ("on", "off"):
                raise ValueError(f"variant {name}: gate {raw!r} is not on or off")
            gate = raw == "on"
        elif key.startswith("alert."):
            key = key.removeprefix("alert.")
            alerts[key] = _value(AlertPolicy, key, raw)
        elif key in BASELINE_KEYS:
            baseline[key] = _value(BaselineSettings, key, raw)
        else:
            detector[key] = _value(DetectorSettings, key, raw)
    try:
        settings = PipelineSettings(
            detector=dataclasses.replace(DetectorSettings(), **detector),
            alerts=dataclasses.replace(AlertPolicy(), **alerts),
        )
        return Variant(name, settings, model, _baseline(baseline), retrain, gate)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"variant {name}: {exc}") from None


def _rows(name: str, raw: str) -> int:
    """retrain=N: a whole number of rows, at least one."""
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"variant {name}: retrain {raw!r} is not a number of rows >= 1")
    return int(raw)


def _baseline(options: dict[str, Any]) -> BaselineSettings | None:
    """The baseline these options name (None: the product's detector)."""
    kind = options.pop("kind", PRODUCT)
    if kind != PRODUCT:
        return BaselineSettings(kind=kind, **options)
    if options:
        raise ValueError(f"{sorted(options)}: a baseline's options, and no kind= names one")
    return None


def _value(kind: type, key: str, raw: str) -> object:
    if key not in {f.name for f in dataclasses.fields(kind)}:
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
