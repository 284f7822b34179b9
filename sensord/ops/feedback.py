"""Operators' verdicts on alerts: parsed, stored, and read back by retraining.

An operator (or a dashboard button) publishes to ``<prefix>/feedback/<stream>``::

    {"alert_id": "…", "verdict": "false_positive", "by": "ana", "note": "valve test"}

``verdict`` is ``false_positive`` (retraining may learn from the alert's span),
``confirmed`` (a real anomaly: retraining leaves it out, and judges candidates on it),
``new_normal`` (the plant changed for good: on the stream's active alert, the alert clears
with reason ``accepted`` and the detector learns the stream's normal again from here; the
alert's span stays out of retraining, what follows it is normal) or ``acknowledged`` (seen,
no verdict). The daemon checks the message (size before decoding,
JSON, fields, the alert is one this daemon raised on that stream), appends it to
``<state.dir>/feedback.jsonl`` (one JSON object per line, ``fdatasync``ed before the answer
goes out), and answers on the request's MQTT 5 Response Topic, else on
``<prefix>/feedback/<stream>/response``. The newest ``false_positive`` or ``confirmed`` of an
alert is its verdict; an ``acknowledged`` never undoes one.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, get_args

import orjson

from sensord.durable.files import read_json_lines
from sensord.errors import FeedbackError
from sensord.logs import get_logger

log = get_logger(__name__)
Verdict = Literal["false_positive", "confirmed", "new_normal", "acknowledged"]
VERDICTS: tuple[str, ...] = get_args(Verdict)
JUDGEMENTS = ("false_positive", "confirmed")  # the verdicts retraining acts on
MAX_TEXT = 200  # ``by`` and ``note``: names and short reasons, not documents


@dataclass(frozen=True)
class Feedback:
    """One operator verdict on one alert."""

    alert_id: str
    stream: str
    verdict: str
    at: float
    by: str | None = None
    note: str | None = None


def parse_feedback(stream: str, payload: bytes, max_bytes: int, at: float) -> Feedback:
    """The feedback in ``payload`` for ``stream``; FeedbackError with the reason if unfit."""
    if len(payload) > max_bytes:
        raise FeedbackError(f"payload of {len(payload)} bytes is over {max_bytes}")
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise FeedbackError("payload is not JSON") from None
    if not isinstance(data, dict):
        raise FeedbackError("payload must be a JSON object")
    unknown = sorted(set(data) - {"alert_id", "verdict", "by", "note"})
    if unknown:
        raise FeedbackError(f"unknown field {unknown[0]!r}")
    alert_id, verdict = data.get("alert_id"), data.get("verdict")
    if not isinstance(alert_id, str) or not alert_id or len(alert_id) > 64:
        raise FeedbackError("alert_id must be the alert's id (a string)")
    if verdict not in VERDICTS:
        raise FeedbackError(f"verdict must be one of {', '.join(VERDICTS)}")
    return Feedback(
        alert_id=alert_id,
        stream=stream,
        verdict=str(verdict),
        at=at,
        by=_text(data, "by"),
        note=_text(data, "note"),
    )


def _text(data: dict[str, object], key: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise FeedbackError(f"{key} must be a string of at most {MAX_TEXT} characters")
    return value


class FeedbackStore:
    """``feedback.jsonl``: every verdict taken, appended and synced before it is answered."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._latest: dict[str, Feedback] = {}
        for feedback in read_feedback(path):
            self._remember(feedback)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)

    def add(self, feedback: Feedback) -> None:
        """Append and sync; OSError if the disk refuses (the caller answers accordingly)."""
        os.write(self._fd, orjson.dumps(asdict(feedback)) + b"\n")
        os.fdatasync(self._fd)
        self._remember(feedback)

    def latest(self, alert_id: str) -> Feedback | None:
        """The newest feedback taken on this alert (any verdict)."""
        return self._latest.get(alert_id)

    def _remember(self, feedback: Feedback) -> None:
        self._latest[feedback.alert_id] = feedback

    def close(self) -> None:
        os.close(self._fd)


def read_feedback(path: Path) -> list[Feedback]:
    """Every feedback in the file, oldest first; a torn or foreign line is skipped."""
    taken = []
    for data in read_json_lines(path):
        try:
            if not isinstance(data, dict):
                raise TypeError("not an object")
            taken.append(Feedback(**data))
        except TypeError:
            log.warning("feedback line skipped: not a feedback", file=str(path))
    return taken


def read_verdicts(path: Path) -> dict[str, str]:
    """alert id → its verdict (``false_positive`` or ``confirmed``), the newest one winning."""
    verdicts: dict[str, str] = {}
    for feedback in read_feedback(path):
        if feedback.verdict in JUDGEMENTS:
            verdicts[feedback.alert_id] = feedback.verdict
    return verdicts
