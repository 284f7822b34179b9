"""Versioned model bundles per route, and the log of what was decided about them.

Layout, under ``<models_dir>/<route>/``::

    versions/<version>/   a bundle directory (bundle.json, model.onnx[, training.csv])
    current               relative symlink to versions/<version>: the bundle in service
    decisions.jsonl       one JSON object per decision (promoted, refused, skipped, manual)
    candidates/<version>/ refused candidates, kept for inspection (retraining's)

The daemon's route setting ``bundle`` points at ``current`` and reloads the route when it
resolves to another directory. Every change is crash-safe: a version is copied under a
temporary name and renamed into place, and ``current`` is replaced by renaming a new
symlink over it, so a reader sees the old target or the new one, never no ``current``.
``Decision`` is what retraining writes to the log (``sensord promote`` writes ``manual``
records with the versions only). This module runs on the daemon's side: no torch, no onnx.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import orjson

from sensord.core.bundle import MANIFEST_FILE, Bundle, Manifest, load_bundle, sha256_hex
from sensord.core.engine import Engine
from sensord.core.timestamps import format_timestamp
from sensord.durable.files import fsync_dir, read_json_lines, write_atomic
from sensord.errors import BundleError, ConfigError, SensordError
from sensord.logs import get_logger

log = get_logger(__name__)
VERSIONS = "versions"
CURRENT = "current"
DECISIONS = "decisions.jsonl"
CANDIDATES = "candidates"
TRAINING_CSV = "training.csv"  # kept beside a retrained bundle: what it learnt from
_LOCK = ".lock"
Outcome = Literal["promoted", "refused", "skipped"]
# A version names a directory: no separators, no "." or "..", nothing hidden.
_SAFE_VERSION = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class Figures:
    """How one model did on the holdout."""

    version: str
    scored: int  # holdout readings the core scored
    mae: float  # mean |value - expected|, raw units, away from alert spans
    mae_rows: int
    alerts: int  # alerts raised on the holdout
    alert_rate: float  # per 1,000 scored readings
    nab: float | None  # normalised NAB score (standard profile); None without labels


@dataclass(frozen=True)
class DataFigures:
    """What the recording held and how it was split."""

    recorded_rows: int = 0
    files: int = 0
    torn: int = 0
    duplicates: int = 0
    skipped_files: int = 0  # recorded with other features (before a model change)
    streams: int = 0
    holdout_start: float | None = None
    holdout_end: float | None = None
    holdout_rows: int = 0
    training_rows: int = 0
    excluded_rows: int = 0
    excluded_alerts: int = 0
    false_positives_relearnt: int = 0
    labelled_windows: int = 0


@dataclass(frozen=True)
class Decision:
    route: str
    decision: Outcome
    reasons: tuple[str, ...]
    live: Figures | None
    candidate: Figures | None
    data: DataFigures
    candidate_dir: Path | None
    time: float
    seconds: float

    def record(self) -> dict[str, Any]:
        """The decision as one JSON object for decisions.jsonl."""
        data = asdict(self.data)
        for key in ("holdout_start", "holdout_end"):
            data[key] = None if data[key] is None else format_timestamp(data[key])
        return {
            "time": format_timestamp(self.time),
            "route": self.route,
            "decision": self.decision,
            "reasons": list(self.reasons),
            "live": None if self.live is None else asdict(self.live),
            "candidate": None if self.candidate is None else asdict(self.candidate),
            **data,
            "candidate_dir": None if self.candidate_dir is None else str(self.candidate_dir),
            "seconds": round(self.seconds, 3),
        }


@dataclass(frozen=True)
class Version:
    """One installed version of a route's model."""

    version: str
    path: Path
    current: bool
    installed: float  # epoch seconds, when it was copied in


def install(route_dir: Path, bundle_dir: Path) -> Path:
    """Copy a verified bundle into ``versions/<its manifest version>``; return that path.

    Installing the same bundle again is a no-op; a different bundle under a version name
    already installed is refused (a version must always mean one graph).
    """
    bundle = load_bundle(bundle_dir)
    Engine(bundle)  # shapes checked now, not when the daemon reloads it
    version = bundle.manifest.version
    _check_version_name(version, bundle_dir)
    target = route_dir / VERSIONS / version
    if target.exists():
        _check_same(target, bundle)
        return target
    _copy_in(bundle, target)
    installed = load_bundle(target)  # the copy, verified as the daemon will read it
    if installed.manifest != bundle.manifest:
        raise BundleError(f"{target}: the installed manifest differs from {bundle_dir}'s")
    log.info("model installed", route_dir=str(route_dir), version=version)
    return target


def switch(route_dir: Path, version: str) -> None:
    """Point ``current`` at ``versions/<version>`` atomically and durably."""
    _check_version_name(version, route_dir)
    target = route_dir / VERSIONS / version
    load_bundle(target)  # never put an unverified bundle into service (rollbacks too)
    link = route_dir / CURRENT
    if link.exists() and not link.is_symlink():
        raise SensordError(f"{link}: is not a symlink; move it away to let sensord manage it")
    temp = route_dir / f".{CURRENT}.{uuid.uuid4().hex}.tmp"
    os.symlink(Path(VERSIONS) / version, temp)
    try:
        os.replace(temp, link)  # rename(2): readers see the old link or the new one
    except OSError as exc:
        temp.unlink(missing_ok=True)
        raise SensordError(f"{link}: cannot switch to {version} ({exc.strerror})") from None
    fsync_dir(route_dir)
    log.info("model switched", route_dir=str(route_dir), version=version)


def current_version(route_dir: Path) -> str | None:
    """The version ``current`` points at; None before the first switch."""
    try:
        target = os.readlink(route_dir / CURRENT)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SensordError(
            f"{route_dir / CURRENT}: cannot read the link ({exc.strerror})"
        ) from None
    return Path(target).name


def versions(route_dir: Path) -> list[Version]:
    """Installed versions, oldest install first."""
    folder = route_dir / VERSIONS
    if not folder.is_dir():
        return []
    live = current_version(route_dir)
    found = [
        Version(p.name, p, p.name == live, (p / MANIFEST_FILE).stat().st_mtime)
        for p in folder.iterdir()
        if p.is_dir() and not p.name.startswith(".") and (p / MANIFEST_FILE).is_file()
    ]
    return sorted(found, key=lambda v: (v.installed, v.version))


def log_decision(route_dir: Path, decision: Mapping[str, Any]) -> None:
    """Append one decision as a JSON line and fsync it (non-finite numbers become null)."""
    route_dir.mkdir(parents=True, exist_ok=True)
    line = orjson.dumps(dict(decision), option=orjson.OPT_SERIALIZE_NUMPY) + b"\n"
    fd = os.open(route_dir / DECISIONS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_decisions(route_dir: Path) -> list[dict[str, Any]]:
    """Every decision logged, oldest first; a torn or foreign line is skipped."""
    return [d for d in read_json_lines(route_dir / DECISIONS) if isinstance(d, dict)]


def managed_route_dir(models_dir: Path, route: str, bundle_setting: Path) -> Path:
    """``<models_dir>/<route>`` if the route's bundle setting is its ``current`` link;
    else ConfigError telling how to put the route under sensord's management."""
    route_dir = models_dir / route
    expected = route_dir / CURRENT
    follows = bundle_setting.name == CURRENT and (
        bundle_setting.parent.resolve() == route_dir.resolve()
    )
    if follows and not bundle_setting.is_symlink():
        raise ConfigError(
            f"route {route}: {str(expected)!r} does not exist yet; install the first model "
            f"with 'sensord promote BUNDLE --route {route}'"
        )
    if not follows:
        raise ConfigError(
            f"route {route}: its bundle {str(bundle_setting)!r} is not {str(expected)!r}; "
            f"run 'sensord promote {bundle_setting} --route {route}' first and set the "
            f"route's bundle to {str(expected)!r}"
        )
    return route_dir


@contextmanager
def route_lock(route_dir: Path) -> Iterator[None]:
    """Hold the route's lock: one retrain or promote at a time per route."""
    route_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(route_dir / _LOCK, os.O_WRONLY | os.O_CREAT, 0o640)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SensordError(
                f"{route_dir}: another retrain or promote is working on this route"
            ) from None
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _check_version_name(version: str, where: Path) -> None:
    if not _SAFE_VERSION.match(version):
        raise BundleError(
            f"{where}: version {version!r} cannot name a directory "
            "(letters, digits, _ . - only, not starting with '.')"
        )


def _check_same(target: Path, bundle: Bundle) -> None:
    try:
        installed = load_bundle(target)
    except BundleError as exc:
        raise BundleError(
            f"{target}: version {bundle.manifest.version} is installed but broken ({exc}); "
            "remove that directory to install it again"
        ) from None
    if installed.manifest != bundle.manifest:
        raise BundleError(
            f"{target}: a different bundle is already installed as version "
            f"{bundle.manifest.version} (graph {installed.manifest.graph.sha256[:12]}…, this "
            f"one {bundle.manifest.graph.sha256[:12]}…); give the new one another version"
        )


def _copy_in(bundle: Bundle, target: Path) -> None:
    """Copy the bundle's files under a temporary name, then rename the directory into
    place: a crash leaves a hidden leftover, never a half-copied version."""
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.parent / f".{target.name}.{uuid.uuid4().hex}.tmp"
    temp.mkdir()
    try:
        names = [MANIFEST_FILE, bundle.manifest.graph.file, TRAINING_CSV]
        for name in names:
            if (bundle.path / name).is_file():
                _copy_synced(bundle.path / name, temp / name)
        fsync_dir(temp)
        os.rename(temp, target)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    fsync_dir(target.parent)


def _copy_synced(source: Path, target: Path) -> None:
    shutil.copyfile(source, target)
    fd = os.open(target, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_bundle(path: Path, manifest: Manifest, graph_bytes: bytes) -> Bundle:
    """Write ``model.onnx`` and ``bundle.json`` atomically; return the bundle as loaded back."""
    if manifest.graph.sha256 != sha256_hex(graph_bytes):
        raise BundleError(f"{path}: manifest graph.sha256 does not match the graph to write")
    path.mkdir(parents=True, exist_ok=True)
    write_atomic(path / manifest.graph.file, graph_bytes)
    # json, not orjson: the manifest's text stays exactly what earlier versions wrote.
    # A bundle without heads leaves the field out: its manifest stays format 1, byte for byte,
    # and a sensord from before heads reads it.
    exclude = None if manifest.heads.any else {"heads"}
    text = json.dumps(manifest.model_dump(mode="json", exclude=exclude), indent=2, sort_keys=True)
    text += "\n"
    write_atomic(path / MANIFEST_FILE, text.encode("utf-8"))
    return load_bundle(path)
