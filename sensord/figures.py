"""Counters and gauges, each declared once: a dataclass field that carries its metric's name
and help text.

A component keeps its own figures in a dataclass of such fields and counts on it
(``self.counters.scored += n``); the stats line, systemd's STATUS and the Prometheus
endpoint all read them from there, and ``declared`` lists what a class exports, so a new
counter is exported by being declared, with nothing to name again elsewhere.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, Literal

Kind = Literal["counter", "gauge"]
_KEY = "sensord.figure"


@dataclass(frozen=True)
class Declared:
    """One exported figure: its key in ``stats()``, its metric, help text and kind."""

    key: str
    metric: str
    help: str
    kind: Kind


def counter(metric: str, help_text: str) -> Any:
    """A monotonic count, starting at 0."""
    return field(default=0, metadata={_KEY: (metric, help_text, "counter")})


def gauge(metric: str, help_text: str, default: float | None = 0) -> Any:
    """A level that goes up and down."""
    return field(default=default, metadata={_KEY: (metric, help_text, "gauge")})


def declared(cls: type) -> tuple[Declared, ...]:
    """The figures a dataclass declares, in field order."""
    assert is_dataclass(cls), cls
    out = []
    for f in fields(cls):
        spec = f.metadata.get(_KEY)
        if spec is not None:
            metric, help_text, kind = spec
            out.append(Declared(f.name, metric, help_text, kind))
    return tuple(out)


def values(figures: object) -> dict[str, int]:
    """A figures dataclass's values by key (every field, declared or kept internally)."""
    assert is_dataclass(figures) and not isinstance(figures, type), figures
    return {f.name: getattr(figures, f.name) for f in fields(figures)}


def merged(parts: Iterable[object]) -> dict[str, int]:
    """Several components' figures as one mapping; keys are unique across the daemon."""
    out: dict[str, int] = {}
    for part in parts:
        for key, value in values(part).items():
            assert key not in out, f"figure {key} is declared twice"
            out[key] = value
    return out


def every(classes: Iterable[type]) -> Iterator[Declared]:
    for cls in classes:
        yield from declared(cls)
