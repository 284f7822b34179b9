"""The feedback desk: operators' verdicts taken off MQTT, checked, stored and answered.

A verdict is accepted only for an alert this daemon raised on that stream: the stream's
latest alert (its id follows from the model, the stream and when it was raised, alert.py),
one raised since start or in the recordings' alert logs, or one that already has feedback.
It is appended to the feedback file and synced *before* the answer goes out and before the
message is acknowledged, so an operator who saw ``accepted`` can rely on retraining seeing
it too. When the verdict is on the stream's active alert, the stream's retained state is
published again with it, so every dashboard shows that someone has looked; a ``new_normal``
verdict on it clears the alert (reason ``accepted``) and the detector learns the stream's
normal again from there. Refusals are
answered with the reason, counted by reason, and logged at most once per reason per
interval.
"""

from __future__ import annotations

import math
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from sensord.config import Settings
from sensord.core.alert import alert_id
from sensord.core.sample import Scored
from sensord.daemon.publisher import Publisher
from sensord.daemon.routes import Route
from sensord.daemon.transport import Request
from sensord.errors import FeedbackError, UnknownAlertError
from sensord.figures import counter
from sensord.logs import RateLimitedLog, get_logger
from sensord.ops.feedback import Feedback, FeedbackStore, parse_feedback
from sensord.ops.history import load_alert_spans
from sensord.wire.published import feedback_response, feedback_response_topic
from sensord.wire.topics import safe_topic_level

log = get_logger(__name__)


RECENT_ALERTS = 100_000  # alert ids raised since start that feedback may name
Reply = Callable[[str, bytes, bytes | None], None]  # topic, payload, correlation data


@dataclass
class FeedbackCounters:
    feedback_accepted: int = counter(
        "sensord_feedback_accepted", "Operator verdicts taken and stored."
    )


class FeedbackDesk:
    """Takes feedback requests for the routes of one daemon."""

    def __init__(
        self,
        prefix: str,
        store: FeedbackStore | None,
        publisher: Publisher,
        reply: Reply,
        *,
        max_bytes: int,
        log_interval_s: float,
    ) -> None:
        self.prefix = prefix
        self.store = store
        self.publisher = publisher
        self.reply = reply
        self.max_bytes = max_bytes
        self.counters = FeedbackCounters()
        self.refused: Counter[str] = Counter()
        self._limiter = RateLimitedLog(log_interval_s, event="feedback refused")
        # A new_normal verdict changed stream state that no journaled reading carries: the
        # daemon snapshots soon after, so that a crash cannot undo it.
        self.changed_state = False
        self._recent: OrderedDict[str, str] = OrderedDict()  # alert id -> stream

    def scored(self, scored: Scored) -> None:
        """Remember the alerts a batch raised, so feedback may name them."""
        for _, event in scored.events:
            if event.event == "raised":
                self.raised(event.alert_id, event.stream)

    def raised(self, alert: str, stream: str) -> None:
        """Remember an alert raised since start, so feedback may name it."""
        self._recent[alert] = stream
        if len(self._recent) > RECENT_ALERTS:
            self._recent.popitem(last=False)

    def remember_recorded(self, records: Path, routes: Iterable[str]) -> None:
        """The alerts the recordings of these routes hold (raised before this start), so
        that feedback on them is taken after a restart too."""
        for route in routes:
            for span in load_alert_spans(records / route):
                self.raised(span.alert_id, span.stream)

    def take(self, requests: Sequence[Request], routes: Sequence[Route]) -> None:
        for request in requests:
            self._take(request, routes)

    def _take(self, request: Request, routes: Sequence[Route]) -> None:
        stream = request.topic.rsplit("/", 1)[-1]
        now = time.time()
        try:
            if not safe_topic_level(stream):
                raise FeedbackError("the topic's last level is not a valid stream id")
            feedback = parse_feedback(stream, request.payload, self.max_bytes, now)
            route = self._route_of(feedback, routes)
            if self.store is None:
                raise OSError("the feedback file could not be opened at start")
            self.store.add(feedback)
        except UnknownAlertError as exc:
            self._refuse(request, stream, str(exc), now, "unknown_alert")
            return
        except FeedbackError as exc:
            self._refuse(request, stream, str(exc), now, "malformed")
            return
        except OSError as exc:
            reason = "cannot store feedback now; send it again"
            self._refuse(request, stream, reason, now, "store_failed")
            log.error("feedback store failing", error=str(exc))
            return
        self.counters.feedback_accepted += 1
        log.info("feedback", stream=stream, alert_id=feedback.alert_id, verdict=feedback.verdict)
        self._answer(
            request, stream=stream, alert=feedback.alert_id, verdict=feedback.verdict, now=now
        )
        if route is not None and feedback.verdict == "new_normal":
            self._accept(route, feedback)
        elif route is not None:
            self._show_on_state(route, feedback)

    def _accept(self, route: Route, feedback: Feedback) -> None:
        """The operator says the stream's active alert is its new normal."""
        event = route.pipeline.accept(feedback.stream, feedback.at)
        if event is None:
            return  # cleared already; the verdict is stored for retraining all the same
        self.changed_state = True
        log.info("new normal accepted", stream=feedback.stream, alert_id=event.alert_id)
        self.publisher.accepted(route, event)

    def _route_of(self, feedback: Feedback, routes: Sequence[Route]) -> Route | None:
        """The route whose latest alert on the stream this is (None: an older alert), or
        FeedbackError when this daemon never raised it there."""
        for route in routes:
            table = route.pipeline.table
            slot = table.slot_of.get(feedback.stream)
            if slot is None:
                continue
            raised_ts = float(table["raised_ts"][slot])
            model = route.pipeline.bundle.manifest.name
            if math.isfinite(raised_ts) and alert_id(model, feedback.stream, raised_ts) == (
                feedback.alert_id
            ):
                return route
        known = self._recent.get(feedback.alert_id) == feedback.stream
        earlier = self.store.latest(feedback.alert_id) if self.store is not None else None
        if known or (earlier is not None and earlier.stream == feedback.stream):
            return None
        raise UnknownAlertError(f"no alert {feedback.alert_id} on stream {feedback.stream}")

    def _show_on_state(self, route: Route, feedback: Feedback) -> None:
        table = route.pipeline.table
        slot = table.slot_of[feedback.stream]
        if not table["alert_active"][slot]:
            return  # cleared already: its state no longer names the alert
        self.publisher.state(
            route,
            feedback.stream,
            "alert",
            since=float(table["raised_ts"][slot]),
            alert_id=feedback.alert_id,
            feedback=_shown(feedback),
        )

    def shown(self, alert_id: str) -> dict[str, object] | None:
        """The latest verdict on an alert as its state shows it, if any."""
        feedback = self.store.latest(alert_id) if self.store is not None else None
        return _shown(feedback) if feedback is not None else None

    def close(self) -> None:
        if self.store is not None:
            self.store.close()

    def _refuse(self, request: Request, stream: str, reason: str, now: float, code: str) -> None:
        self.refused[code] += 1
        self._limiter.warn(code, request.topic, reason)
        self._answer(request, stream=stream, reason=reason, now=now)

    def _answer(
        self,
        request: Request,
        *,
        stream: str,
        now: float,
        alert: str | None = None,
        verdict: str | None = None,
        reason: str | None = None,
    ) -> None:
        topic = self._response_topic(request, stream)
        if topic is None:
            return  # nowhere safe to answer
        payload = feedback_response(
            stream=stream,
            alert_id=alert,
            verdict=verdict,
            accepted=reason is None,
            reason=reason,
            now=now,
        )
        self.reply(topic, payload, request.correlation)

    def _response_topic(self, request: Request, stream: str) -> str | None:
        """The request's MQTT 5 Response Topic, unless it could pass for one of sensord's
        own messages (anyone who may send feedback could otherwise make sensord "publish"
        an alert); else ``<prefix>/feedback/<stream>/response``."""
        asked = request.response_topic
        if asked and _safe_reply_topic(asked, self.prefix):
            return asked
        return feedback_response_topic(self.prefix, stream) if safe_topic_level(stream) else None


def _safe_reply_topic(topic: str, prefix: str) -> bool:
    if topic.startswith("$") or "+" in topic or "#" in topic or "\x00" in topic:
        return False
    return not topic.startswith(prefix + "/") or topic.startswith(f"{prefix}/feedback/")


def open_desk(settings: Settings, publisher: Publisher, reply: Reply) -> FeedbackDesk | None:
    """The daemon's feedback desk per ``[feedback]`` (None when off). A feedback file that
    cannot be opened does not stop the daemon: feedback is then refused, with the reason."""
    if not settings.feedback.enabled:
        return None
    try:
        store: FeedbackStore | None = FeedbackStore(settings.feedback_file)
    except OSError as exc:
        log.error("feedback store unavailable; feedback is refused", error=str(exc))
        store = None
    return FeedbackDesk(
        settings.alerts.prefix,
        store,
        publisher,
        reply,
        max_bytes=settings.feedback.max_payload_bytes,
        log_interval_s=settings.limits.log_interval_s,
    )


def _shown(feedback: Feedback) -> dict[str, object]:
    shown: dict[str, object] = {
        k: v for k, v in asdict(feedback).items() if k in ("verdict", "by", "note")
    }
    shown["at"] = feedback.at
    return shown
