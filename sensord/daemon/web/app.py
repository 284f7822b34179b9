"""The web page's HTTP side: the page, its JSON API and ``/healthz``, on ``[web]`` host:port.

Read-only unless ``[web] verdicts`` is on: then, and only with the bearer token, ``POST
/api/feedback`` sends a verdict through the feedback desk (the same checks, storage and
answer as feedback over MQTT). Everything else is GET or HEAD; other methods get 405.
The page and its chart library are files in this package (no CDN: edge boxes are often
offline). Answers are built from copies the scoring loop left on the board (board.py), so a
page open on a busy daemon costs the loop a copy a second, not a request's work.

API (JSON):
    GET  /api/info                      version, routes (features, units, threshold), verdicts
    GET  /api/streams?q=&status=&limit= streams, alerting first, then by score
    GET  /api/stream?route=R&stream=S   one stream's chart and alerts
    GET  /api/alerts?stream=&limit=     recent alert events, newest first, with feedback
    POST /api/feedback                  {"stream", "alert_id", "verdict", "by", "note"}
"""

from __future__ import annotations

import hmac
import ipaddress
import mimetypes
from collections.abc import Callable, Iterable
from importlib import resources
from typing import Any
from urllib.parse import parse_qs

import orjson

from sensord import __version__
from sensord.config import WebSettings
from sensord.daemon.health import Health
from sensord.daemon.http import StartResponse
from sensord.daemon.web.board import Board
from sensord.daemon.web.listing import list_rows
from sensord.wire.topics import safe_topic_level

Shown = Callable[[str], dict[str, object] | None]  # alert id -> its latest verdict
LIST_WAIT_S = 3.0  # a page request waits this long for the loop's next streams list
CHART_WAIT_S = 3.0
VERDICT_WAIT_S = 10.0
MAX_LIMIT = 5000
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})
SECURITY_HEADERS = [
    ("Cache-Control", "no-store"),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    # Only this server's own scripts and styles; uPlot sets styles from script (CSSOM),
    # which style-src does not restrict.
    ("Content-Security-Policy", "default-src 'self'; img-src 'self' data:"),
]


def static_files() -> dict[str, tuple[bytes, str]]:
    """The page's files, read once: name -> (content, content type)."""
    files = {}
    for entry in resources.files("sensord.daemon.web").joinpath("static").iterdir():
        kind = mimetypes.guess_type(entry.name)[0] or "text/plain"
        if kind.startswith("text/") or kind.endswith("javascript"):
            kind += "; charset=utf-8"
        files[entry.name] = (entry.read_bytes(), kind)
    return files


class WebApp:
    """The WSGI app of the page (see the module's docstring)."""

    def __init__(
        self,
        board: Board,
        settings: WebSettings,
        *,
        health: Health | None,
        shown: Shown | None,
        max_feedback_bytes: int,
    ) -> None:
        self.board = board
        self.settings = settings
        self.health = health
        self.shown = shown
        self.max_feedback_bytes = max_feedback_bytes
        self.files = static_files()
        token = settings.token.get_secret_value() if settings.token is not None else None
        self._expected = f"Bearer {token}".encode() if token is not None else None
        self._gets: dict[str, Callable[[dict[str, list[str]]], tuple[str, Any]]] = {
            "/api/info": self._info,
            "/api/streams": self._streams,
            "/api/stream": self._stream,
            "/api/alerts": self._alerts,
        }

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        host = _host_name(environ.get("HTTP_HOST", ""))
        if not self._host_allowed(host):
            reason = f"host {host!r} is not one this page answers to ([web] allowed_hosts)"
            return _reply(start_response, "400 Bad Request", {"error": reason})
        return self._serve(environ, start_response)

    def _serve(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path, method = environ.get("PATH_INFO", "/"), environ.get("REQUEST_METHOD", "GET")
        if path == "/api/feedback" and method == "POST":
            return self._feedback(environ, start_response)
        if method not in ("GET", "HEAD"):
            allow = "GET, HEAD, POST" if path == "/api/feedback" else "GET, HEAD"
            return _reply(start_response, "405 Method Not Allowed", {"error": "read-only"}, allow)
        if path in ("/healthz", "/health") and self.health is not None:
            return _reply(start_response, *self.health.answer())
        query = parse_qs(environ.get("QUERY_STRING", ""))
        handler = self._gets.get(path)
        if handler is not None:
            status, body = handler(query)
            return _reply(start_response, status, body)
        name = "index.html" if path == "/" else path.removeprefix("/static/")
        if path == "/favicon.ico":
            name = "favicon.svg"
        if (path in ("/", "/favicon.ico") or path == f"/static/{name}") and name in self.files:
            content, kind = self.files[name]
            start_response(
                "200 OK",
                [("Content-Type", kind), ("Content-Length", str(len(content))), *SECURITY_HEADERS],
            )
            return [content]
        return _reply(start_response, "404 Not Found", {"error": f"not found: {path}"})

    def _host_allowed(self, host: str) -> bool:
        """Against DNS rebinding: a page on a loopback address answers only to loopback
        names (a web site whose name someone pointed at 127.0.0.1 gets nothing), unless
        ``allowed_hosts`` says otherwise; one listening elsewhere answers to any name."""
        allowed = self.settings.allowed_hosts
        if allowed:
            return host in allowed or host in LOOPBACK_NAMES
        return host in LOOPBACK_NAMES or not _is_loopback(self.settings.host)

    # GET

    def _info(self, query: dict[str, list[str]]) -> tuple[str, Any]:
        del query
        return "200 OK", {
            "version": __version__,
            "routes": self.board.info(),
            "verdicts": self.settings.verdicts,
            "points": self.settings.points,
        }

    def _streams(self, query: dict[str, list[str]]) -> tuple[str, Any]:
        lists, age = self.board.stream_lists(LIST_WAIT_S)
        if lists is None:
            return "503 Service Unavailable", {"error": "the scoring loop has not answered yet"}
        rows, total = list_rows(
            lists,
            self.board.alerts(),
            text=_one(query, "q", "").lower(),
            status=_one(query, "status", ""),
            limit=_limit(query, 200),
        )
        return "200 OK", {"streams": rows, "total": total, "age_s": round(age, 3)}

    def _stream(self, query: dict[str, list[str]]) -> tuple[str, Any]:
        route, stream = _one(query, "route", ""), _one(query, "stream", "")
        if not safe_topic_level(stream):
            return "400 Bad Request", {"error": "stream: not a valid stream id"}
        if route not in {r["name"] for r in self.board.info()}:
            return "404 Not Found", {"error": f"route: no route {route!r}"}
        chart = self.board.chart(route, stream, CHART_WAIT_S)
        if chart is None:
            return "404 Not Found", {"error": f"no stream {stream!r} on route {route!r} yet"}
        alerts = self._with_feedback(self.board.alerts(stream=stream, route=route))
        return "200 OK", {"route": route, "stream": stream, "chart": chart, "alerts": alerts}

    def _alerts(self, query: dict[str, list[str]]) -> tuple[str, Any]:
        stream = _one(query, "stream", "") or None
        events = self.board.alerts(stream=stream)[: _limit(query, 100)]
        return "200 OK", {"alerts": self._with_feedback(events)}

    def _with_feedback(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if self.shown is None:
            return events
        return [{**e, "feedback": self.shown(e["alert_id"])} for e in events]

    # POST

    def _feedback(self, environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        try:
            stream, payload = self._verdict(environ)
        except _RefusedError as refused:
            return _reply(start_response, refused.status, {"error": refused.reason}, refused.allow)
        answer = self.board.submit_verdict(stream, payload, VERDICT_WAIT_S)
        if answer is None:
            body = {"error": "the daemon did not answer in time; send it again"}
            return _reply(start_response, "503 Service Unavailable", body)
        accepted = bool(orjson.loads(answer).get("accepted"))
        return _raw(start_response, "200 OK" if accepted else "422 Unprocessable Content", answer)

    def _verdict(self, environ: dict[str, Any]) -> tuple[str, bytes]:
        """The stream and the feedback message of a verdict from the page, checked: the
        page may send verdicts, the token matches, the body's size (before decoding)."""
        if not self.settings.verdicts or self._expected is None:
            reason = "read-only: verdicts from the page are off ([web] verdicts)"
            raise _RefusedError("405 Method Not Allowed", reason, allow="GET, HEAD")
        given = environ.get("HTTP_AUTHORIZATION", "").encode()
        if not hmac.compare_digest(given, self._expected):
            raise _RefusedError("401 Unauthorized", "a valid token is needed")
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = -1
        if not 0 < length <= self.max_feedback_bytes:
            reason = f"the body must be 1 to {self.max_feedback_bytes} bytes of JSON"
            raise _RefusedError("413 Content Too Large", reason)
        try:
            data = orjson.loads(environ["wsgi.input"].read(length))
            stream = data.pop("stream")
        except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError):
            reason = "the body must be a JSON object with stream, alert_id and verdict"
            raise _RefusedError("400 Bad Request", reason) from None
        if not isinstance(stream, str) or not safe_topic_level(stream):
            raise _RefusedError("400 Bad Request", "stream: not a valid stream id")
        return stream, orjson.dumps(data)


class _RefusedError(Exception):
    """A request the page's edge answers with an error status (never leaves this module)."""

    def __init__(self, status: str, reason: str, allow: str | None = None) -> None:
        super().__init__(reason)
        self.status, self.reason, self.allow = status, reason, allow


def _host_name(header: str) -> str:
    """The host of a Host header, without its port (``[::1]:8080`` → ``::1``)."""
    if header.startswith("["):
        return header[1:].split("]", 1)[0]
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return address == "localhost"


def _one(query: dict[str, list[str]], key: str, default: str) -> str:
    values = query.get(key)
    return values[0] if values else default


def _limit(query: dict[str, list[str]], default: int) -> int:
    try:
        return max(1, min(int(_one(query, "limit", str(default))), MAX_LIMIT))
    except ValueError:
        return default


def _reply(
    start_response: StartResponse, status: str, body: Any, allow: str | None = None
) -> list[bytes]:
    encoded = orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n"
    return _raw(start_response, status, encoded, allow)


def _raw(
    start_response: StartResponse, status: str, body: bytes, allow: str | None = None
) -> list[bytes]:
    headers = [
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(body))),
        *SECURITY_HEADERS,
    ]
    if allow is not None:
        headers.append(("Allow", allow))
    start_response(status, headers)
    return [body]
