"""A route at run time: its live pipeline, an optional shadow, and how each is doing.

A **shadow** bundle is scored on exactly the readings the live one gets (after the stream
cap), with its own stream state, but its alerts go nowhere: they are only counted. Beside
the live model's, its figures (readings scored, mean absolute error in the sensor's own
units, alerts raised per 1,000 readings) are in the metrics and the stats log, so a
candidate can be judged on live traffic before it is promoted. Errors are compared in raw
units because two bundles scale their inputs differently.

The bundle paths are watched: when a route's ``bundle`` (or ``shadow``) resolves to another
directory, typically because ``sensord retrain`` switched a ``current`` symlink, the daemon
reloads that pipeline keeping stream state (pipeline.replace_engine).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sensord.arrays import F64
from sensord.config import RouteSettings, route_name
from sensord.core.bundle import load_bundle
from sensord.core.engine import Engine
from sensord.core.pipeline import Pipeline, PipelineSettings
from sensord.core.sample import SCORED, Scored
from sensord.durable.store import SHADOW
from sensord.errors import ConfigError, SensordError
from sensord.logs import get_logger

log = get_logger(__name__)


@dataclass
class ModelFigures:
    """Running figures of one model on one route, since it was loaded."""

    scored: int = 0
    raised: int = 0
    abs_error_sum: float = 0.0

    def add(self, scored: Scored, values: F64) -> None:
        ok = scored.status == SCORED
        count = int(np.count_nonzero(ok))
        if count == len(ok):  # the usual batch: every reading scored, no masking needed
            self.abs_error_sum += float(np.abs(values - scored.expected).sum()) / values.shape[1]
        elif count:
            self.abs_error_sum += (
                float(np.abs(values[ok] - scored.expected[ok]).sum()) / values.shape[1]
            )
        self.scored += count
        self.raised += sum(1 for _, event in scored.events if event.event == "raised")

    @property
    def mean_abs_error(self) -> float:
        return self.abs_error_sum / self.scored if self.scored else float("nan")

    @property
    def alert_rate(self) -> float:
        """Alerts raised per 1,000 scored readings."""
        return 1000.0 * self.raised / self.scored if self.scored else float("nan")

    def summary(self, pipeline: Pipeline) -> dict[str, object]:
        manifest = pipeline.bundle.manifest
        return {
            "model": manifest.name,
            "version": manifest.version,
            "scored": self.scored,
            "raised": self.raised,
            "mean_abs_error": round(self.mean_abs_error, 6) if self.scored else None,
            "alert_rate": round(self.alert_rate, 3) if self.scored else None,
        }


@dataclass
class Route:
    """A route: its settings, its core, its shadow, and the bundle directories in use."""

    name: str
    settings: RouteSettings
    pipeline: Pipeline
    shadow: Pipeline | None = None
    received: int = 0  # readings routed here (before the stream cap)
    figures: ModelFigures = field(default_factory=ModelFigures)
    shadow_figures: ModelFigures = field(default_factory=ModelFigures)
    bundle_dir: str = ""  # what ``settings.bundle`` resolved to when loaded
    shadow_dir: str = ""
    timings: list[float] | None = None  # the live engine's step times go here (metrics)

    @property
    def features(self) -> tuple[str, ...]:
        return self.pipeline.bundle.features

    def score(self, streams: Sequence[str], ts: F64, values: F64, received: F64) -> Scored:
        """One batch through the live core, and through the shadow alike (its alerts are
        only counted); the figures of both are kept."""
        scored = self.pipeline.process_batch(streams, ts, values, received)
        self.figures.add(scored, values)
        if self.shadow is not None:
            shadow = self.shadow.process_batch(streams, ts, values, received)
            self.shadow_figures.add(shadow, values)
        return scored

    def moved(self) -> tuple[bool, bool]:
        """Whether the live and the shadow bundle paths now point elsewhere."""
        live = resolved(self.settings.bundle) != self.bundle_dir
        shadow = (
            self.settings.shadow is not None and resolved(self.settings.shadow) != self.shadow_dir
        )
        return live, shadow


@dataclass(frozen=True)
class ShadowView:
    """A route's shadow as durable/snapshots.py sees a route: a name and a pipeline."""

    name: str
    pipeline: Pipeline


def by_state_name(routes: Sequence[Route]) -> list[Route | ShadowView]:
    """Every pipeline by the name its snapshot and journal entries go by."""
    shadows = [ShadowView(r.name + SHADOW, r.shadow) for r in routes if r.shadow]
    return [*routes, *shadows]


def named_pipelines(routes: Sequence[Route]) -> list[tuple[str, int, Pipeline]]:
    """(name, route index, pipeline) of every route and shadow (cluster hand-overs)."""
    named = [(r.name, i, r.pipeline) for i, r in enumerate(routes)]
    named += [(r.name + SHADOW, i, r.shadow) for i, r in enumerate(routes) if r.shadow]
    return named


def describe_route(route: Route) -> dict[str, Any]:
    """A route as bridge/info tells it: what it listens to and with which model."""
    manifest = route.pipeline.bundle.manifest
    shadow = route.shadow.bundle.manifest if route.shadow is not None else None
    return {
        "name": route.name,
        "topic": route.settings.topic,
        "model": manifest.name,
        "model_version": manifest.version,
        "features": list(manifest.features),
        "detector": route.pipeline.settings.detector.kind,
        "threshold": route.pipeline.detector.threshold,
        "shadow": None
        if shadow is None
        else {"model": shadow.name, "model_version": shadow.version},
    }


def resolved(path: Path) -> str:
    """The directory a bundle path leads to now (through any symlinks)."""
    return os.path.realpath(path)


def open_route(
    index: int,
    settings: RouteSettings,
    core: PipelineSettings,
    timings: list[float] | None = None,
) -> Route:
    """Load a route's bundle (and shadow), verified; raise BundleError/ConfigError. The live
    engine appends each step's time to ``timings``, if given."""
    bundle_dir = resolved(settings.bundle)
    engine = Engine(load_bundle(Path(bundle_dir)), timings=timings)
    name = route_name(index, settings, engine.bundle.name)
    unknown = sorted(set(settings.units) - set(engine.bundle.features))
    if unknown:
        raise ConfigError(
            f"routes[{index}].units: {unknown[0]!r}: not a feature of the bundle "
            f"{list(engine.bundle.features)}"
        )
    route = Route(name, settings, Pipeline(engine, core), bundle_dir=bundle_dir, timings=timings)
    if settings.shadow is not None:
        shadow_dir = resolved(settings.shadow)
        shadow = Engine(load_bundle(Path(shadow_dir)))
        if shadow.bundle.features != engine.bundle.features:
            raise ConfigError(
                f"routes[{index}].shadow: {str(settings.shadow)!r}: features "
                f"{list(shadow.bundle.features)} differ from the bundle's "
                f"{list(engine.bundle.features)}"
            )
        route.shadow = Pipeline(shadow, core)
        route.shadow_dir = shadow_dir
    return route


def reload_route(route: Route, *, live: bool, shadow: bool) -> int:
    """Load the route's bundle paths again and swap them in, keeping stream state where
    the shapes match; return how many failed (those keep their loaded bundle)."""
    failures = 0
    if live:
        # Loaded from the directory the path leads to now, not through the link: a switch
        # during the load cannot mix two versions' files. Not retried until it moves again.
        route.bundle_dir = resolved(route.settings.bundle)
        engine = _load(route, Path(route.bundle_dir), route.timings)
        if engine is None:
            failures += 1
        else:
            _swap(route, route.pipeline, engine, "live")
            route.figures = ModelFigures()
    path = route.settings.shadow
    if shadow and path is not None and route.shadow is not None:
        route.shadow_dir = resolved(path)
        engine = _load(route, Path(route.shadow_dir), None)
        if engine is None:
            failures += 1
        else:
            _swap(route, route.shadow, engine, "shadow")
            route.shadow_figures = ModelFigures()
    return failures


def _load(route: Route, path: Path, timings: list[float] | None) -> Engine | None:
    try:
        return Engine(load_bundle(path), timings=timings)
    except SensordError as exc:
        log.error("reload failed; keeping the loaded bundle", route=route.name, error=str(exc))
        return None


def _swap(route: Route, pipeline: Pipeline, engine: Engine, role: str) -> None:
    old = pipeline.bundle.manifest.version
    kept = pipeline.replace_engine(engine)
    log.info(
        "bundle reloaded",
        route=route.name,
        role=role,
        model=engine.bundle.name,
        version=engine.bundle.manifest.version,
        previous=old,
        state_kept=kept,
    )
