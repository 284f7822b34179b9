"""Logging: structlog, JSON lines when not on a terminal (systemd, CI), a console otherwise.

Configured once by the command that runs (never at import time), on stderr so that a
command's own output on stdout stays clean. ``RateLimitedLog`` is for what outsiders can
make happen at any rate (bad readings, bad verdicts): a warning per reason per interval.
"""

from __future__ import annotations

import logging
import sys
import time
from collections import Counter
from typing import Literal

import structlog

LogFormat = Literal["auto", "console", "json"]
LEVELS = ("debug", "info", "warning", "error")


def configure(level: str = "info", fmt: LogFormat = "auto") -> None:
    """Set the level and renderer for every sensord logger."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(name)
    return logger


class RateLimitedLog:
    """At most one warning per reason per interval, saying how many were not logged."""

    def __init__(self, interval_s: float, event: str = "reading rejected") -> None:
        self.interval_s = interval_s
        self.event = event
        self._last: dict[str, float] = {}
        self._suppressed: Counter[str] = Counter()
        self._log = get_logger(__name__)

    def warn(self, reason: str, topic: str, detail: str) -> None:
        now = time.monotonic()
        if now - self._last.get(reason, -float("inf")) < self.interval_s:
            self._suppressed[reason] += 1
            return
        self._last[reason] = now
        suppressed = self._suppressed.pop(reason, 0)
        self._log.warning(
            self.event,
            reason=reason,
            topic=topic[:200],
            detail=detail[:200],
            suppressed_since_last=suppressed,
        )
