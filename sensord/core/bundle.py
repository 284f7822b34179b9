"""Model bundles: the one thing that crosses from training to the daemon.

A bundle is a directory with ``model.onnx`` and ``bundle.json``, the manifest below. The
graph (``graph.kind``) is a ``sequence``: inputs ``x[T,B,F]``, ``h[L,B,H]``, ``c[L,B,H]``;
outputs ``y[T,B,F]`` (the prediction after each step), ``h_out``, ``c_out`` (the state after
the last); T and B dynamic. Bundles from before that field hold ONE ``step``: ``x[B,F]`` and
``y[B,F]``, the same state. The net is an LSTM or a GRU (``cell``); a GRU has no cell state
and passes ``c`` through unchanged, so the signature, and the daemon's state per stream, are
the same for both. Loading checks the format version, every field, and the graph's
sha256; the graph's shapes are checked against the manifest when the engine opens it
(engine.py). This module imports neither torch nor onnx.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from sensord.core.graphcheck import uses_external_data
from sensord.errors import BundleError, MalformedGraphError

FORMAT_VERSION = 2  # written when a bundle has a head a format-1 reader would not know
FORMAT_VERSIONS = (1, 2)  # what this sensord reads: 1 is a bundle without heads
MANIFEST_FILE = "bundle.json"
GRAPH_FILE = "model.onnx"
INPUT_NAMES = ("x", "h", "c")
OUTPUT_NAMES = ("y", "h_out", "c_out")
SPREAD_OUTPUT = "s"  # a graph with the spread head has it after OUTPUT_NAMES
AHEAD_OUTPUT = "a"  # and one with the horizon head this, last

Cell = Literal["lstm", "gru"]
GraphKind = Literal["step", "sequence"]
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Scaling(_Strict):
    """Per-feature affine scaling: ``scaled = (value - center) / scale``."""

    center: list[FiniteFloat] = Field(description="Subtracted from each feature.")
    scale: list[PositiveFloat] = Field(description="Divides each centred feature.")
    low: list[FiniteFloat] | None = Field(None, description="Lowest value seen in training.")
    high: list[FiniteFloat] | None = Field(None, description="Highest value seen in training.")

    @model_validator(mode="after")
    def _same_length(self) -> Scaling:
        for name, values in (("scale", self.scale), ("low", self.low), ("high", self.high)):
            if values is not None and len(values) != len(self.center):
                raise ValueError(f"center has {len(self.center)} values, {name} {len(values)}")
        return self


class Graph(_Strict):
    """Where the ONNX graph is, what it must hash to, and which kind of graph it is."""

    file: str = Field(default=GRAPH_FILE, description="Graph file name inside the bundle.")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="sha256 of the graph file.")
    opset: int = Field(ge=7, description="ONNX opset the graph was exported with.")
    kind: GraphKind = Field(
        "step",
        description="sequence: x[T,B,F] in, a prediction after each of the T steps out; "
        "step: one step, x[B,F] (bundles from before this field are step).",
    )


class Calibration(_Strict):
    """The detector's calibration, from prediction errors on the validation split.

    Errors are the RMS over features of ``scaled value - scaled prediction``; the detector
    smooths them (EWMA with ``smoothing``), floors them at ``error_floor`` and models the log
    of the result as normal with ``log_error_mean`` and ``log_error_std``. ``threshold_error``
    is the smoothed error whose tail probability under that fit equals the default score
    threshold: the fixed fallback threshold in error units.
    """

    smoothing: float = Field(gt=0, le=1, description="EWMA weight of the newest error.")
    error_floor: PositiveFloat = Field(description="Errors below this count as this.")
    log_error_mean: FiniteFloat = Field(description="Mean of log smoothed error.")
    log_error_std: PositiveFloat = Field(description="Std of log smoothed error.")
    threshold_error: PositiveFloat = Field(description="Fixed threshold, smoothed-error units.")
    samples: int = Field(ge=1, description="Validation errors the fit used.")
    quantiles: dict[str, FiniteFloat] = Field(
        default_factory=dict, description="Quantiles of the smoothed validation error."
    )


class Training(_Strict):
    """What the model was trained on and how well it did."""

    source: str = Field(description="Name of the training file.")
    rows: int = Field(ge=0)
    train_rows: int = Field(ge=0)
    validation_rows: int = Field(ge=0)
    skipped_rows: int = Field(ge=0)
    streams: int = Field(ge=1)
    data_start: str = Field(description="First timestamp, ISO 8601 UTC.")
    data_end: str = Field(description="Last timestamp, ISO 8601 UTC.")
    median_interval_s: float = Field(ge=0, description="Median time between samples.")
    epochs_run: int = Field(ge=0)
    best_epoch: int = Field(ge=0)
    interrupted: bool = Field(default=False, description="Stopped early by Ctrl-C.")
    train_loss: FiniteFloat
    validation_loss: FiniteFloat = Field(description="MSE of next-sample prediction, scaled.")
    validation_mae: FiniteFloat
    persistence_mae: FiniteFloat = Field(
        description="MAE of 'repeat the last value' on the same validation steps."
    )
    seed: int
    hyperparameters: dict[str, float | int | str] = Field(default_factory=dict)


class NormalTails(_Strict):
    """What the detector's calibrated tails learnt from the training rows, for streams to
    start from: the training data is the stream's normal, before it has shown its own
    (detect/tail.py). Pooled over the training streams."""

    layout: str = Field(
        min_length=1,
        max_length=512,
        description="The detector statistics these are for (kind, channels, their widths and "
        "spans); a route whose detector differs starts its streams without them.",
    )
    values: list[Annotated[float, Field(ge=0, allow_inf_nan=False)]] = Field(
        description="Per statistic, the values its counts were made from."
    )
    threshold: list[FiniteFloat] = Field(description="Each statistic's 95th percentile.")
    counts: list[list[FiniteFloat]] = Field(
        description="Per statistic, the clusters past each of the tails' edges."
    )

    @model_validator(mode="after")
    def _consistent(self) -> NormalTails:
        if not len(self.counts) == len(self.threshold) == len(self.values):
            raise ValueError("counts, threshold, values: one entry per statistic each")
        if len({len(row) for row in self.counts}) > 1:
            raise ValueError("counts: rows of different lengths")
        return self


class Cross(_Strict):
    """The virtual-sensor head (``sensord train --cross``): each feature's error explained by
    the other features' errors at the same instant, fitted on the training rows by ridge
    regression. ``conditional_f = gain_f * (e_f - sum_g weights[f][g] * e_g)`` (the diagonal
    is zero: a feature never explains itself), ``gain`` putting it on ``e_f``'s own scale;
    the detector sees whichever of ``e_f`` and ``conditional_f`` is larger in size. A
    relation that breaks while each sensor stays in its range shows here."""

    weights: list[list[FiniteFloat]] = Field(description="F x F, zero diagonal.")
    gain: list[PositiveFloat] = Field(description="Per feature: std of e over std of the rest.")

    @model_validator(mode="after")
    def _square(self) -> Cross:
        n = len(self.gain)
        if len(self.weights) != n or any(len(row) != n for row in self.weights):
            raise ValueError(f"weights must be {n} x {n} (one row and column per feature)")
        if any(self.weights[f][f] != 0.0 for f in range(n)):
            raise ValueError("weights: the diagonal must be zero")
        return self


class Heads(_Strict):
    """What the model gives beyond its prediction of the next sample (format_version 2)."""

    spread: bool = Field(
        False,
        description="The graph has a fourth output s[T,B,F]: the spread it expects of the "
        "next sample's error, relative to its usual (1 = a typical step); the detector "
        "divides each error by it (trained by Gaussian negative log-likelihood).",
    )
    cross: Cross | None = Field(None, description="The virtual-sensor head, if trained.")
    horizon: int = Field(
        0,
        ge=0,
        le=1000,
        description="0, or K: the graph's last output a[T,B,F] predicts the sample K steps "
        "ahead, and the detector also sees each reading against the prediction made K steps "
        "before it, times horizon_gain.",
    )
    horizon_gain: list[PositiveFloat] = Field(
        default_factory=list,
        description="Per feature (with a horizon): the training rows' next-step error spread "
        "over their K-step error spread, putting the K-step error on the next-step scale.",
    )

    @property
    def any(self) -> bool:
        return self.spread or self.cross is not None or self.horizon > 0

    @model_validator(mode="after")
    def _horizon(self) -> Heads:
        if self.horizon == 1:
            raise ValueError("horizon: 1 is the next step itself; 0 (off) or at least 2")
        if (self.horizon > 0) != bool(self.horizon_gain):
            raise ValueError("horizon and horizon_gain: both or neither")
        return self


class Manifest(_Strict):
    """bundle.json."""

    format_version: int = Field(
        description="Bundle format; this sensord reads 1 (no heads) and 2 (heads)."
    )
    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.-]+$")
    version: str = Field(min_length=1, max_length=64, description="Model version.")
    sensord_version: str = Field(description="Version of sensord that wrote the bundle.")
    features: list[str] = Field(min_length=1, description="Feature names, in graph order.")
    transform: Literal["none", "asinh"] = Field(
        "none",
        description="Applied after scaling: the model sees and predicts asinh(scaled), which "
        "is linear near 0 and logarithmic for large values.",
    )
    time_features: list[Literal["tod_sin", "tod_cos"]] = Field(
        default_factory=list,
        description="Inputs made from the timestamp, after the features in x (x is [B, F+T]).",
    )
    cell: Cell = Field(
        "lstm",
        description="Recurrent cell. A gru step passes c through unchanged (it stays zero); "
        "bundles from before this field are lstm.",
    )
    layers: int = Field(ge=1, le=8, description="Recurrent layers (L).")
    hidden: int = Field(ge=1, le=4096, description="Recurrent hidden size (H).")
    scaling: Scaling = Field(description="Scaling for streams training did not see.")
    stream_scaling: dict[str, Scaling] = Field(
        default_factory=dict, description="Scaling per stream seen in training."
    )
    graph: Graph
    calibration: Calibration
    training: Training
    normal: NormalTails | None = Field(
        None,
        description="The tails the detector learnt on the training rows (bundles from before "
        "this field have none: their streams start from the generic prior).",
    )
    heads: Heads = Field(default_factory=Heads, description="The model's heads beyond y.")

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        n = len(self.features)
        if len(set(self.features)) != n:
            raise ValueError("features: names repeat")
        for where, scaling in [
            ("scaling", self.scaling),
            *((f"stream_scaling.{s}", sc) for s, sc in self.stream_scaling.items()),
        ]:
            if len(scaling.center) != n:
                raise ValueError(f"{where}: {len(scaling.center)} values for {n} features")
        if self.heads.cross is not None and len(self.heads.cross.gain) != n:
            raise ValueError(f"heads.cross: {len(self.heads.cross.gain)} features, not {n}")
        if self.heads.horizon and len(self.heads.horizon_gain) != n:
            raise ValueError(f"heads.horizon_gain: {len(self.heads.horizon_gain)} values, not {n}")
        if self.heads.any and self.format_version < 2:
            raise ValueError("heads need format_version 2")
        return self


@dataclass(frozen=True)
class Bundle:
    """A loaded, hash-verified bundle: its manifest, its directory and the graph bytes."""

    path: Path
    manifest: Manifest
    graph_bytes: bytes

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def features(self) -> tuple[str, ...]:
        return tuple(self.manifest.features)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def load_bundle(path: Path) -> Bundle:
    """Read a bundle directory and verify its manifest and graph hash.

    Raises BundleError naming the file and field at fault.
    """
    manifest_path = path / MANIFEST_FILE
    if not path.is_dir():
        raise BundleError(f"{path}: not a bundle directory (no such directory)")
    raw = _read_manifest_json(manifest_path)
    manifest = _validate_manifest(manifest_path, raw)
    graph_path = path / manifest.graph.file
    try:
        graph_bytes = graph_path.read_bytes()
    except OSError as exc:
        raise BundleError(f"{graph_path}: cannot read the graph ({exc.strerror})") from None
    digest = sha256_hex(graph_bytes)
    if digest != manifest.graph.sha256:
        raise BundleError(
            f"{graph_path}: sha256 {digest[:16]}… does not match graph.sha256 "
            f"{manifest.graph.sha256[:16]}… in {manifest_path} (changed or corrupted)"
        )
    try:
        external = uses_external_data(graph_bytes)
    except MalformedGraphError as exc:
        raise BundleError(f"{graph_path}: not an ONNX graph ({exc})") from None
    if external:
        raise BundleError(
            f"{graph_path}: a tensor keeps its data in another file (ONNX external data); "
            "a bundle's graph must be self-contained"
        )
    return Bundle(path=path, manifest=manifest, graph_bytes=graph_bytes)


def _read_manifest_json(manifest_path: Path) -> dict[str, Any]:
    try:
        text = manifest_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BundleError(f"{manifest_path}: no such file (not a sensord bundle)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BundleError(f"{manifest_path}: cannot read ({exc})") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BundleError(
            f"{manifest_path} line {exc.lineno}: not valid JSON ({exc.msg})"
        ) from None
    if not isinstance(raw, dict):
        raise BundleError(f"{manifest_path}: the manifest must be a JSON object")
    return raw


def _validate_manifest(manifest_path: Path, raw: dict[str, Any]) -> Manifest:
    version = raw.get("format_version")
    if version not in FORMAT_VERSIONS:
        readable = " and ".join(str(v) for v in FORMAT_VERSIONS)
        raise BundleError(
            f"{manifest_path}: format_version {version!r} is not supported "
            f"(this sensord reads format_version {readable})"
        )
    try:
        return Manifest.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(manifest)"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise BundleError(f"{manifest_path}: field {where}: {first['msg']}{more}") from None
