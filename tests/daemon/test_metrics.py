"""The metrics edge on its own: what it serves, and a clear error for a taken port."""

import json
import time
import urllib.error
import urllib.request

import pytest

from sensord.daemon.health import LOOP_STALL_S, Health
from sensord.daemon.metrics import MetricsServer
from sensord.daemon.stats import declared_figures
from sensord.errors import ConfigError


def test_serves_the_counters_it_is_given() -> None:
    stats = {"received": 3, "scored": 2, "rejected": {"too_large": 1}, "streams": 1, "inbox": 0}
    server = MetricsServer(lambda: stats, "127.0.0.1", 0, figures=declared_figures())
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as r:
            lines = set(r.read().decode().splitlines())
        assert "sensord_readings_received_total 3.0" in lines
        assert 'sensord_readings_rejected_total{reason="too_large"} 1.0' in lines
        stats["received"] = 4  # read at scrape time, not copied at start
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as r:
            assert "sensord_readings_received_total 4.0" in r.read().decode()
    finally:
        server.stop()


def test_a_taken_port_is_a_clear_error() -> None:
    first = MetricsServer(dict, "127.0.0.1", 0)
    try:
        with pytest.raises(ConfigError, match=rf"metrics: cannot listen on 127.0.0.1:{first.port}"):
            MetricsServer(dict, "127.0.0.1", first.port)
    finally:
        first.stop()


def get(url: str) -> tuple[int, str, dict[str, str]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode(), dict(r.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(), dict(exc.headers)


def test_healthz_answers_200_only_while_connected_moving_and_turning() -> None:
    connected, moving = [True], [True]
    health = Health(lambda: connected[0], lambda now: moving[0])
    server = MetricsServer(dict, "127.0.0.1", 0, health=health)
    url = f"http://127.0.0.1:{server.port}"
    try:
        code, body, headers = get(f"{url}/healthz")
        assert code == 200 and json.loads(body)["status"] == "ok"
        assert headers["Content-Type"] == "application/json"
        connected[0] = False
        code, body, _ = get(f"{url}/healthz")
        assert code == 503 and json.loads(body)["reasons"] == ["not connected to the MQTT broker"]
        connected[0], moving[0] = True, False
        assert "no progress" in json.loads(get(f"{url}/healthz")[1])["reasons"][0]
        moving[0] = True
        health.heartbeat -= LOOP_STALL_S + 1  # the loop has not turned since
        code, body, _ = get(f"{url}/health")
        assert code == 503 and "scoring loop has not turned" in json.loads(body)["reasons"][0]
        health.beat(time.monotonic())
        assert get(f"{url}/healthz")[0] == 200
        health.stopping = True
        assert json.loads(get(f"{url}/healthz")[1])["reasons"] == ["stopping"]
    finally:
        server.stop()


def test_the_edge_is_read_only_and_serves_only_what_it_lists() -> None:
    server = MetricsServer(dict, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.port}"
    try:
        assert get(f"{url}/")[0] == 200 and "/healthz" in get(f"{url}/")[1]
        assert get(f"{url}/nothing-here")[0] == 404
        request = urllib.request.Request(f"{url}/metrics", data=b"x", method="POST")
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(request, timeout=5)
        assert info.value.code == 405 and info.value.headers["Allow"] == "GET, HEAD"
    finally:
        server.stop()
