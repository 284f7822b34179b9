"""The daemon's HTTP edge: one small server per port, read-only, for machines and people.

``/metrics`` is Prometheus (``prometheus_client``'s own WSGI app over the daemon's
collector), ``/healthz`` the health check (daemon/health.py: 200 or 503 with the reasons, as
JSON), ``/`` a plain index of both. Anything else is 404 and any method but GET and HEAD is
405: nothing served here changes the daemon. The server is wsgiref's, one thread per request
(prometheus_client's ``ThreadingWSGIServer``), in a daemon thread of its own; requests are
not logged (a scrape every few seconds would drown the log).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import orjson
from prometheus_client import make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.registry import CollectorRegistry

from sensord.daemon.health import Health
from sensord.errors import ConfigError

StartResponse = Callable[..., Any]
App = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
INDEX = b"sensord\n  /metrics  Prometheus metrics\n  /healthz  health: 200 or 503 with reasons\n"


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def edge_app(registry: CollectorRegistry, health: Health | None) -> App:
    """The WSGI app: /metrics, /healthz and /, read-only."""
    metrics = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path, method = environ.get("PATH_INFO", "/"), environ.get("REQUEST_METHOD", "GET")
        if method not in ("GET", "HEAD"):
            return _reply(start_response, "405 Method Not Allowed", b"read-only\n", allow=True)
        if path == "/metrics":
            served: Iterable[bytes] = metrics(environ, start_response)
            return served
        if path in ("/healthz", "/health") and health is not None:
            status, report = health.answer()
            return _reply(start_response, status, orjson.dumps(report) + b"\n", json=True)
        if path == "/":
            return _reply(start_response, "200 OK", INDEX)
        return _reply(start_response, "404 Not Found", b"not found: try /metrics or /healthz\n")

    return app


def _reply(
    start_response: StartResponse,
    status: str,
    body: bytes,
    *,
    json: bool = False,
    allow: bool = False,
) -> list[bytes]:
    headers = [
        ("Content-Type", "application/json" if json else "text/plain; charset=utf-8"),
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-store"),
    ]
    if allow:
        headers.append(("Allow", "GET, HEAD"))
    start_response(status, headers)
    return [body]


class HttpEdge:
    """Serve ``app`` on host:port in a thread of its own until ``stop``."""

    def __init__(self, app: App, host: str, port: int, what: str) -> None:
        class Server(ThreadingWSGIServer):
            address_family = _family(host, port)

        try:
            self._server = make_server(host, port, app, Server, handler_class=_QuietHandler)
        except OSError as exc:
            raise ConfigError(f"{what}: cannot listen on {host}:{port} ({exc.strerror})") from None
        self.port: int = self._server.server_port
        self._thread = threading.Thread(
            target=self._server.serve_forever, name=f"sensord-{what}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def _family(host: str, port: int) -> socket.AddressFamily:
    """IPv6 for an IPv6 address (``::``), else IPv4."""
    try:
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except socket.gaierror:
        return socket.AF_INET
