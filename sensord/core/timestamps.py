"""Timestamps as epoch seconds (float, UTC): parsing ISO 8601 and epoch numbers.

Everything inside sensord keeps time as float epoch seconds; text is parsed once, here.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

# Epoch numbers above this are taken as milliseconds: 1e11 s is the year 5138, 1e11 ms is 1973.
_MILLIS_ABOVE = 1e11


def epoch_from_number(value: float) -> float:
    """Epoch seconds from an epoch number in seconds or milliseconds (told apart by size)."""
    return value / 1000.0 if abs(value) >= _MILLIS_ABOVE else value


def parse_timestamp(text: str) -> float:
    """Epoch seconds from ISO 8601 text or an epoch number (s or ms).

    ISO text without a zone is taken as UTC. Raises ValueError with the reason.
    """
    text = text.strip()
    if not text:
        raise ValueError("empty timestamp")
    try:
        number = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(number):
            raise ValueError(f"timestamp {text!r} is not a finite number")
        return epoch_from_number(number)
    iso = text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        raise ValueError(f"timestamp {text!r} is neither ISO 8601 nor epoch seconds") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def format_timestamp(epoch: float) -> str:
    """ISO 8601 UTC text with millisecond precision, e.g. ``2024-01-01T00:00:00.000Z``."""
    moment = datetime.fromtimestamp(epoch, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
