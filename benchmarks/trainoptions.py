"""The detection benchmarks' ``--train KEY=VALUE[,KEY=VALUE]``: options for the bundles they
train (nab.py, skab.py; runner.py's ``Training``), over the trainer's defaults.

Each key is a field of ``sensord.training.options.FitOptions`` or ``TrainOptions``, found in
the dataclasses themselves, so a field added there is an option here with no code; its value
is parsed by the field's declared type: ``bool`` (1/0, true/false, yes/no), ``int``,
``float``, ``str``, a ``Literal``'s values, ``X | None`` (``none``), a sequence (names joined
by ``+``). The benchmark sets five itself: ``name`` (each file's), ``seed`` (``--seeds``),
``out_of_order`` (``drop``: the daemon's rule), ``threads`` (one: a file a core) and ``fit``.

A value equal to the default is left out, so ``--train epochs=150`` is the default run and
reuses its bundles; any other set of options has a folder of its own (``tag``).

    --train epochs=40,hidden=32
    --train time_of_day=off,transform=asinh
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from sensord.training.options import FitOptions, TimeOfDay, TrainOptions

# What the benchmark decides, and why it is not an option.
OWNED = {
    "name": "each file's bundle is named after the file",
    "seed": "--seeds gives the seeds",
    "out_of_order": "a row not after its stream's last is dropped, as the daemon drops it",
    "threads": "one torch thread: the benchmark runs one file a core (--jobs)",
    "fit": "give FitOptions' fields themselves",
}
TRUE, FALSE = ("1", "true", "yes"), ("0", "false", "no")
Given = Mapping[str, object]  # key -> value, defaults left out


def keys() -> dict[str, type]:
    """Every option: a field's name -> the dataclass that has it (FitOptions first)."""
    found: dict[str, type] = {}
    for kind in (FitOptions, TrainOptions):
        for f in dataclasses.fields(kind):
            if f.name not in OWNED:
                found.setdefault(f.name, kind)
    return found


def parse_train(text: str | None) -> dict[str, object]:
    """The options of ``--train``'s text (None or empty: the defaults); ValueError with the
    reason, in one line."""
    given: dict[str, object] = {}
    known = keys()
    for item in filter(None, (text or "").split(",")):
        key, equals, raw = (part.strip() for part in item.partition("="))
        if not equals or not key:
            raise ValueError(f"--train: {item!r} is not key=value")
        if key in OWNED:
            raise ValueError(f"--train: {key} is not an option here ({OWNED[key]})")
        kind = known.get(key)
        if kind is None:
            raise ValueError(
                f"--train: {key!r} is not an option of FitOptions or TrainOptions "
                f"(options: {', '.join(sorted(known))})"
            )
        hint = typing.get_type_hints(kind)[key]
        try:
            value = parse_value(hint, raw)
        except ValueError as exc:
            raise ValueError(f"--train: {key}={raw}: {exc}") from None
        if value != getattr(kind(), key):
            given[key] = value
    return dict(sorted(given.items()))


def parse_value(hint: Any, raw: str) -> object:
    """``raw`` as a value of the type ``hint``; ValueError if it is not one."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        for choice in args:
            if str(choice) == raw:
                return choice
        raise ValueError(f"not one of {', '.join(map(str, args))}")
    if origin in (typing.Union, types.UnionType):
        if raw == "none" and type(None) in args:
            return None
        (inner,) = (a for a in args if a is not type(None))
        return parse_value(inner, raw)
    if origin in (Sequence, list, tuple):
        return tuple(raw.split("+"))
    return _plain(hint, raw)


def _plain(hint: Any, raw: str) -> object:
    """``raw`` as a bool, a number or text."""
    if hint is bool:
        if raw.lower() not in TRUE + FALSE:
            raise ValueError(f"not a yes or no ({'/'.join(TRUE)} or {'/'.join(FALSE)})")
        return raw.lower() in TRUE
    if hint is str:
        return raw
    if hint not in (int, float):
        raise ValueError(f"a {hint} cannot be given on the command line")
    try:
        return hint(raw)
    except ValueError:
        raise ValueError(f"not a number of type {hint.__name__}") from None


def train_options(
    given: Given, *, model: str, seed: int, time_of_day: TimeOfDay | None = None
) -> TrainOptions:
    """The trainer's options for the bundle ``model`` at ``seed``: the defaults, ``given``
    over them, and what the benchmark decides (``OWNED``); ``time_of_day``, if given, over
    all (a retrain keeps the time features of the bundle it replaces)."""
    known = keys()
    # (Any: each value was parsed by its field's own type, which mypy cannot follow.)
    fit: dict[str, Any] = {k: v for k, v in given.items() if known[k] is FitOptions}
    rest: dict[str, Any] = {k: v for k, v in given.items() if known[k] is TrainOptions}
    fitted = dataclasses.replace(FitOptions(), **fit, seed=seed)
    chosen = TrainOptions(name=model, out_of_order="drop", fit=fitted, threads=1)
    chosen = dataclasses.replace(chosen, **rest)
    return chosen if time_of_day is None else dataclasses.replace(chosen, time_of_day=time_of_day)


def describe(given: Given) -> str:
    """``given`` as it is written on the command line, or "defaults"."""
    shown = ",".join(f"{k}={_text(v)}" for k, v in given.items())
    return shown or "defaults"


def tag(given: Given) -> str:
    """A folder name for the bundles trained with ``given`` ("" for the defaults): readable,
    with a hash of the options when some character had to be replaced or it is long."""
    if not given:
        return ""
    text = describe(given)
    safe = re.sub(r"[^A-Za-z0-9._=,+-]", "_", text)
    if safe != text or len(safe) > 100:
        digest = hashlib.sha256(text.encode()).hexdigest()[:10]
        safe = f"{safe[:80]}-{digest}"
    return safe


def _text(value: object) -> str:
    if value is None:
        return "none"
    if isinstance(value, tuple):
        return "+".join(map(str, value))
    return str(value)
