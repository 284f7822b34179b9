"""The commands that manage each route's model versions.

``sensord retrain`` fits a candidate per route on what the daemon recorded and promotes it
only if it is not worse than the model in service; ``sensord promote`` installs a bundle
(or an installed version: a rollback) and puts it in service; ``sensord models`` lists the
versions, which one is current, and the latest decisions. Heavy imports stay inside the
commands, so ``sensord --help`` stays fast and the daemon's side never loads torch.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sensord import logs
from sensord.cli.arguments import SubParsers, positive_int
from sensord.errors import BundleError, ConfigError, SensordError, missing_train_extra

if TYPE_CHECKING:
    from sensord.config import Settings

SHOWN_DECISIONS = 5


def add_commands(commands: SubParsers) -> None:
    """Register retrain, promote and models with the ``sensord`` parser."""
    _add_retrain(commands)
    _add_promote(commands)
    _add_models(commands)


def _add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config", type=Path, default=None, help="TOML settings (default: $SENSORD_CONFIG)"
    )


def _add_retrain(commands: SubParsers) -> None:
    p = commands.add_parser(
        "retrain", help="retrain routes on their recordings; promote only what is not worse"
    )
    _add_config(p)
    p.add_argument(
        "--route",
        dest="routes",
        action="append",
        metavar="NAME",
        help="route to retrain (repeatable; default: every route)",
    )
    p.add_argument(
        "--epochs", type=positive_int, default=None, help="most epochs (default: the config's)"
    )
    p.set_defaults(command=_retrain)


def _add_promote(commands: SubParsers) -> None:
    p = commands.add_parser(
        "promote", help="install a bundle for a route and put it in service (or roll back)"
    )
    p.add_argument("bundle", help="bundle directory, or a version installed for the route")
    p.add_argument("--route", required=True, metavar="NAME", help="route name")
    _add_config(p)
    p.set_defaults(command=_promote)


def _add_models(commands: SubParsers) -> None:
    p = commands.add_parser("models", help="list each route's model versions and decisions")
    _add_config(p)
    p.add_argument("--route", dest="routes", action="append", metavar="NAME", help="route")
    p.set_defaults(command=_models)


@dataclass(frozen=True)
class _Route:
    index: int
    name: str | None  # None: unnamed and its bundle unreadable
    error: SensordError | None = None


def _settings(args: argparse.Namespace) -> Settings:
    from sensord.config import config_path, load_settings

    settings = load_settings(config_path(args.config))
    logs.configure(
        args.log_level or settings.logging.level, args.log_format or settings.logging.format
    )
    return settings


def _routes(settings: Settings, fallback_model: str | None = None) -> list[_Route]:
    """Every route's name; an unnamed route is named after its bundle's model (or
    ``fallback_model`` when that bundle cannot be read yet: a first promotion)."""
    from sensord.config import route_name
    from sensord.core.bundle import load_bundle

    found = []
    for i, route in enumerate(settings.routes):
        try:
            model = route.name or load_bundle(route.bundle).manifest.name
        except BundleError as exc:
            if fallback_model is None:
                found.append(_Route(i, None, exc))
                continue
            model = fallback_model
        found.append(_Route(i, route_name(i, route, model)))
    return found


def _select(routes: list[_Route], wanted: Sequence[str] | None) -> list[_Route]:
    if not wanted:
        return routes
    chosen = []
    for name in dict.fromkeys(wanted):
        match = [r for r in routes if r.name == name]
        if not match:
            broken = [r.error for r in routes if r.error is not None]
            if broken:
                raise broken[0]  # that route may be the one asked for
            known = ", ".join(r.name for r in routes if r.name) or "(none)"
            raise ConfigError(f"no route named {name!r} (routes: {known})")
        chosen.extend(match)
    return chosen


def _retrain(args: argparse.Namespace) -> int:
    try:
        from sensord.training.retrain import RetrainOptions, retrain_route
    except ImportError as exc:
        raise missing_train_extra("retrain", exc.name) from None
    settings = _settings(args)
    failures: list[SensordError] = []
    for route in _select(_routes(settings), args.routes):
        try:
            if route.error is not None:
                raise route.error
            decision = retrain_route(settings, route.index, RetrainOptions(epochs=args.epochs))
        except SensordError as exc:
            failures.append(exc)  # the other routes still get their turn
            continue
        print(describe_decision(decision.record()))
    # Every failure as one line; the last one ends the command with its exit code.
    for failure in failures[:-1]:
        print(f"sensord: error: {failure}", file=sys.stderr)
    if failures:
        raise failures[-1]
    return 0


def _promote(args: argparse.Namespace) -> int:
    from sensord.core.bundle import load_bundle
    from sensord.core.timestamps import format_timestamp
    from sensord.ops.models import (
        CURRENT,
        VERSIONS,
        current_version,
        install,
        log_decision,
        route_lock,
        switch,
    )

    settings = _settings(args)
    given = Path(args.bundle)
    fallback = load_bundle(given).manifest.name if given.is_dir() else None
    (route,) = _select(_routes(settings, fallback), [args.route])
    route_dir = settings.models_dir / args.route
    source = given if given.is_dir() else route_dir / VERSIONS / args.bundle
    if not source.is_dir():
        raise BundleError(f"{given}: no such bundle directory, nor a version of {args.route}")
    with route_lock(route_dir):
        previous = current_version(route_dir)
        version = install(route_dir, source).name
        switch(route_dir, version)
        log_decision(
            route_dir,
            {
                "time": format_timestamp(time.time()),
                "route": args.route,
                "decision": "manual",
                "reasons": [f"sensord promote {args.bundle}"],
                "live": None if previous is None else {"version": previous},
                "candidate": {"version": version},
                "source": str(source.resolve()),
            },
        )
    print(f"route {args.route}: version {version} in service (was {previous or 'none'})")
    setting = settings.routes[route.index].bundle
    link = route_dir / CURRENT
    if setting.parent.resolve() != route_dir.resolve() or setting.name != CURRENT:
        print(
            f"note: routes[{route.index}].bundle is {str(setting)!r}; set it to "
            f"{str(link)!r} so the daemon follows promotions",
            file=sys.stderr,
        )
    return 0


def _models(args: argparse.Namespace) -> int:
    from sensord.core.timestamps import format_timestamp
    from sensord.ops.models import read_decisions, versions

    settings = _settings(args)
    for route in _select(_routes(settings), args.routes):
        if route.name is None:
            print(f"routes[{route.index}]: {route.error}")
            continue
        route_dir = settings.models_dir / route.name
        print(f"route {route.name}  ({route_dir})")
        installed = versions(route_dir)
        if not installed:
            print(f"  no versions: sensord promote BUNDLE --route {route.name}")
        for v in installed:
            mark = "*" if v.current else " "
            print(f"  {mark} {v.version:<14} installed {format_timestamp(v.installed)}")
        decisions = read_decisions(route_dir)[-SHOWN_DECISIONS:]
        for record in decisions:
            print("    " + describe_decision_line(record))
    return 0


def _figure(record: Mapping[str, Any] | None, key: str, fmt: str) -> str:
    value = None if record is None else record.get(key)
    return "-" if value is None else format(value, fmt)


def describe_decision_line(record: Mapping[str, Any]) -> str:
    """One decision on one line: when, what, which versions, the key figures."""
    live, candidate = record.get("live"), record.get("candidate")
    text = (
        f"{record.get('time', '?')}  {record.get('decision', '?'):<8}  "
        f"{_figure(live, 'version', '')} -> {_figure(candidate, 'version', '')}"
    )
    if candidate is not None and "mae" in candidate:
        text += (
            f"  MAE {_figure(live, 'mae', '.4g')} -> {_figure(candidate, 'mae', '.4g')}"
            f"  alerts/1000 {_figure(live, 'alert_rate', '.3g')} -> "
            f"{_figure(candidate, 'alert_rate', '.3g')}"
        )
    reasons = record.get("reasons") or []
    return text + (f"  ({'; '.join(reasons)})" if reasons else "")


def describe_decision(record: Mapping[str, Any]) -> str:
    """A decision as a short table: the two models side by side, then the data."""
    live, candidate = record.get("live"), record.get("candidate")
    lines = [f"route {record['route']}: {record['decision']}"]
    if live is not None or candidate is not None:
        lines.append(f"  {'':<10}{'live':<16}candidate")
        for label, key, fmt in (
            ("version", "version", ""),
            ("MAE", "mae", ".5g"),
            ("alerts", "alert_rate", ".3g"),
            ("NAB", "nab", ".1f"),
            ("scored", "scored", "d"),
        ):
            unit = "/1000" if key == "alert_rate" else ""
            left, right = _figure(live, key, fmt), _figure(candidate, key, fmt)
            lines.append(f"  {label:<10}{left + unit:<16}{right + unit}")
    if record.get("holdout_rows"):
        lines.append(
            f"  holdout {record['holdout_start']} .. {record['holdout_end']} "
            f"({record['holdout_rows']} rows); trained on {record['training_rows']} rows; "
            f"left out {record['excluded_rows']} rows around {record['excluded_alerts']} "
            f"alert(s); {record['false_positives_relearnt']} false positive(s) relearnt; "
            f"{record['seconds']:.1f} s"
        )
    lines.extend(f"  reason: {reason}" for reason in record.get("reasons") or [])
    if record.get("candidate_dir"):
        lines.append(f"  candidate kept in {record['candidate_dir']}")
    return "\n".join(lines)
