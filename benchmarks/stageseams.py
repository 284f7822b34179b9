"""The seams benchmarks/stages.py times, for each of the core's two paths: the numpy
reference's (``Pipeline(compiled=False)``: step.py, detect/, alert.py) and the compiled
path's (core/compiled/path.py, ``CompiledPath.process``). A stage is the time spent in its
seams' own lines; a pipeline's seams are those of the path it runs. And the wrappers that
time them: put on for a block, taken off after it."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import sensord.core.compiled.path as path_module
import sensord.core.pipeline as pipeline_module
import sensord.core.step as step_module
from sensord.core.compiled.path import CompiledPath
from sensord.core.detect import ChannelDetector
from sensord.core.engine import Engine
from sensord.core.pipeline import Pipeline

# Display groups, in the order a reading meets them.
REFERENCE_GROUPS = {
    "pipeline": "pipeline bookkeeping",
    "checks": "pre-step checks",
    "error": "error and observation",
    "model": "model step",
    "assess": "detector assess",
    "learn": "detector learn",
    "alert": "alert lifecycle",
    "emit": "emit",
}
COMPILED_GROUPS = {
    "admit": "admit and scaling",
    "engine": "engine",
    "kernel": "kernel",
    "events": "alert events",
    "rest": "the rest: Python glue",
}
# What each compiled group does instead of the reference's stages (key prefixes): every
# reference stage in exactly one. Approximate at the edges: the reference scales a reading
# in "error vs prediction", and the kernel writes the outcome columns that emit writes.
REPLACES = {
    "admit": ("checks.",),
    "engine": ("model.",),
    "kernel": ("pipeline.bookkeeping", "error.", "assess.", "learn.", "alert."),
    "events": ("emit.",),
    "rest": ("pipeline.lookup", "pipeline.waves", "pipeline.step"),
}


@dataclass(frozen=True)
class Stage:
    key: str  # "<group>.<part>"
    label: str

    @property
    def group(self) -> str:
        return self.key.split(".", 1)[0]


@dataclass(frozen=True)
class Patch:
    """A callable attribute of ``target`` (an instance or a module) timed as ``stage``."""

    target: object
    name: str
    stage: str


@dataclass(frozen=True)
class Seams:
    """One path's display groups, stages and the patches that time them."""

    path: str  # "reference" or "compiled"
    groups: dict[str, str]
    stages: list[Stage]
    patches: list[Patch]


def seams_of(pipeline: Pipeline) -> Seams:
    """The seams of the path this pipeline runs."""
    if pipeline.path is None:
        return Seams(
            "reference", REFERENCE_GROUPS, reference_stages(pipeline), reference_patches(pipeline)
        )
    return Seams(
        "compiled",
        COMPILED_GROUPS,
        compiled_stages(),
        compiled_patches(pipeline, pipeline.path),
    )


def replaced(group: str, reference: Sequence[Stage]) -> list[str]:
    """The reference's stages a compiled group does the work of."""
    return [s.key for s in reference if s.key.startswith(REPLACES[group])]


def detector_of(pipeline: Pipeline) -> ChannelDetector:
    detector = pipeline.detector
    if not isinstance(detector, ChannelDetector):  # its parts are what the stages time
        raise SystemExit(f"the stages are the channels detector's, not {detector.kind}'s")
    return detector


def session_of(pipeline: Pipeline) -> object:
    engine = pipeline.engine
    if not isinstance(engine, Engine):  # Session.run is the seam the model step is timed at
        raise SystemExit(f"the model stage is onnxruntime's, not {type(engine).__name__}'s")
    return engine._session  # (private to the engine: read here, never changed for good)


def reference_stages(pipeline: Pipeline) -> list[Stage]:
    """Every stage of the reference, in the order a reading meets them."""
    channels = [c.name for c in detector_of(pipeline).channels]
    parts = ["scale", *channels, "tails", "combine"]
    what = {"scale": "error scale", "tails": "calibrated tails", "combine": "combining"}
    learnt = [Stage(f"learn.{p}", what.get(p, p)) for p in parts]
    # A tail's periodic refit apart from its per-reading learning: a fit, not a recurrence.
    learnt.insert(parts.index("tails") + 1, Stage("learn.refit", "tail refits"))
    return [
        Stage("pipeline.lookup", "stream ids to slots"),
        Stage("pipeline.waves", "waves, outcome columns"),
        Stage("pipeline.step", "_step_kept's own: counters"),
        Stage("pipeline.bookkeeping", "steps, recent, gaps, period"),
        Stage("checks.late_duplicate", "late or duplicate"),
        Stage("checks.gap", "reset after a gap"),
        Stage("error.deviation", "error vs prediction"),
        Stage("error.observation", "observation, score columns"),
        Stage("model.gather", "inputs, state gather/scatter"),
        Stage("model.run", "onnxruntime Session.run"),
        *[Stage(f"assess.{p}", what.get(p, p)) for p in parts],
        *learnt,
        Stage("alert.advance", "advance"),
        Stage("alert.drivers", "held scores, drivers, shares"),
        Stage("alert.trust", "trust"),
        Stage("emit.outcomes", "outcomes and events"),
    ]


def reference_patches(pipeline: Pipeline) -> list[Patch]:
    """The seams each reference stage is timed at. A stage's own time excludes the wrapped
    calls inside it, so ``assess.combine`` is ``assess`` without the scale, channels and
    tails it calls."""
    detector = detector_of(pipeline)
    return [
        Patch(pipeline, "process_batch", "pipeline.waves"),
        Patch(pipeline.table, "lookup", "pipeline.lookup"),
        Patch(pipeline, "_step_kept", "pipeline.step"),
        *[
            Patch(step_module, name, "pipeline.bookkeeping")
            for name in ("remember", "learn_step", "learn_period")
        ],
        Patch(pipeline, "_step_wave", "checks.late_duplicate"),
        Patch(pipeline, "_reset_after_gap", "checks.gap"),
        Patch(pipeline_module, "predict", "error.deviation"),
        Patch(pipeline_module, "judge", "error.observation"),
        Patch(step_module, "_step_model", "model.gather"),
        Patch(session_of(pipeline), "run", "model.run"),
        Patch(detector, "assess", "assess.combine"),
        Patch(detector.scale, "standardised", "assess.scale"),
        *[Patch(c, "read", f"assess.{c.name}") for c in detector.channels],
        Patch(detector.tail, "log_p", "assess.tails"),
        Patch(detector, "learn", "learn.combine"),
        Patch(detector.scale, "learn", "learn.scale"),
        *[Patch(c, "learn", f"learn.{c.name}") for c in detector.channels],
        Patch(detector.tail, "learn", "learn.tails"),
        Patch(detector.tail, "_refit", "learn.refit"),
        Patch(step_module, "advance", "alert.advance"),
        *[
            Patch(step_module, name, "alert.drivers")
            for name in ("held_scores", "drive", "_shares")
        ],
        Patch(step_module, "trust", "alert.trust"),
        Patch(pipeline_module, "emit", "emit.outcomes"),
    ]


def compiled_stages() -> list[Stage]:
    """Every stage of the compiled path, in the order a batch meets them."""
    return [
        Stage("admit.admit", "admit: late, duplicate, gap"),
        Stage("admit.scaling", "scaling: the transform"),
        Stage("engine.prepare", "inputs, state gather/scatter"),
        Stage("engine.time", "time-of-day features"),
        Stage("engine.call", "Engine.run's own"),
        Stage("engine.session", "onnxruntime Session.run"),
        Stage("kernel.run", "kernel.run: every reading"),
        Stage("events.events", "an event per transition"),
        Stage("rest.lookup", "stream ids to slots"),
        Stage("rest.batch", "process_batch's own"),
        Stage("rest.process", "process's own: order, scale, Scored"),
        Stage("rest.outputs", "the kernel's output columns"),
    ]


def compiled_patches(pipeline: Pipeline, path: CompiledPath) -> list[Patch]:
    """The seams each compiled stage is timed at. ``process`` looks ``admit``, ``forward``
    and ``_run_engine`` (and that ``_run_once`` and ``time_features``) up in its module at
    each call, and ``_run``, ``_events`` and ``_outputs`` on its instance, so a wrapper put
    there is the one it calls. The kernel is timed at ``CompiledPath._run``: after its first
    call that calls numba's entry point directly, never ``kernel.run``. ``process``'s own
    lines hold the scaling's arithmetic (the centre and scale gathered, subtracted, divided)
    as well as the batch's order, its ``Scored`` columns and the counters."""
    return [
        Patch(pipeline, "process_batch", "rest.batch"),
        Patch(pipeline.table, "lookup", "rest.lookup"),
        Patch(path, "process", "rest.process"),
        Patch(path_module, "admit", "admit.admit"),
        Patch(path_module, "forward", "admit.scaling"),
        Patch(path_module, "_run_engine", "engine.prepare"),
        Patch(path_module, "_run_once", "engine.prepare"),
        Patch(path_module, "time_features", "engine.time"),
        Patch(pipeline.engine, "run", "engine.call"),
        Patch(session_of(pipeline), "run", "engine.session"),
        Patch(path, "_run", "kernel.run"),
        Patch(path, "_events", "events.events"),
        Patch(path, "_outputs", "rest.outputs"),
    ]


@dataclass
class Clock:
    """Each stage's own time: a wrapped call's time less that of the wrapped calls inside it
    (a stack of their sums), so that the stages add up to the outermost call."""

    stages: Sequence[str]
    spent: dict[str, float] = field(init=False)
    calls: dict[str, int] = field(init=False)
    _inner: list[float] = field(init=False)

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.spent = dict.fromkeys(self.stages, 0.0)
        self.calls = dict.fromkeys(self.stages, 0)
        self._inner = [0.0]

    def timed(self, fn: Callable[..., object], stage: str) -> Callable[..., object]:
        # Locals, not attribute lookups, inside the wrapper: it runs 34 times a wave or more.
        clock, inner = time.perf_counter, self._inner
        spent, calls = self.spent, self.calls

        def run(*args: object, **kwargs: object) -> object:
            inner.append(0.0)
            started = clock()
            try:
                return fn(*args, **kwargs)
            finally:
                elapsed = clock() - started
                nested = inner.pop()
                inner[-1] += elapsed
                spent[stage] += elapsed - nested
                calls[stage] += 1

        return run


@contextmanager
def wrapped(patches: Sequence[Patch], clock: Clock) -> Iterator[None]:
    """The patches' wrappers installed for the block, and the originals put back after it."""
    clock.reset()
    installed: list[tuple[Patch, object, bool]] = []
    try:
        for p in patches:
            original = getattr(p.target, p.name)
            owned = p.name in vars(p.target)  # a module's function, not a class's method
            setattr(p.target, p.name, clock.timed(original, p.stage))
            installed.append((p, original, owned))
        yield
    finally:
        for p, original, owned in reversed(installed):
            if owned:
                setattr(p.target, p.name, original)
            else:  # the instance's own attribute goes, and its class's method shows again
                delattr(p.target, p.name)


def wrapper_cost_ns(calls: int = 20_000, rounds: int = 7) -> float:
    """What a timing wrapper adds to a call: an empty function called plainly and wrapped,
    the best round of each (a microbenchmark: the box's noise only ever adds to it)."""

    def nothing(a: object, b: object, *, c: object, d: object) -> None:
        return None

    timed = Clock(["wrapper"]).timed(nothing, "wrapper")

    def best(call: Callable[..., object]) -> float:
        rounds_s = []
        for _ in range(rounds):
            started = time.perf_counter()
            for _ in range(calls):
                call(1, 2, c=3, d=4)
            rounds_s.append(time.perf_counter() - started)
        return min(rounds_s)

    return (best(timed) - best(nothing)) / calls * 1e9
