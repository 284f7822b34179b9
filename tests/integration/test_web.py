"""The web page's HTTP side against a real daemon and a real Mosquitto: the streams list,
a stream's chart and alerts, verdicts through the feedback desk, read-only otherwise."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest

from sensord.cli.broker import LocalBroker
from sensord.config import WebSettings
from sensord.core.bundle import Bundle
from sensord.daemon.loop import Daemon
from sensord.daemon.web.app import WebApp, _host_name
from sensord.daemon.web.board import Board
from sensord.ops.feedback import read_verdicts
from tests.integration.conftest import mqtt_client, running, scored, settings_for, wait_for
from tests.integration.test_operating import STEP, T0, feed, spiky_series

TOKEN = "a-token-of-16-chars-or-more"
ROUTE = "route0-synthetic"  # the test bundle's route, named after its model


def http(
    daemon: Daemon,
    path: str,
    *,
    method: str = "GET",
    body: object | None = None,
    token: str | None = None,
    host: str | None = None,
) -> tuple[int, dict[str, str], bytes]:
    assert daemon.web is not None, "the web page is not served"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if host is not None:
        headers["Host"] = host
    request = urllib.request.Request(
        f"http://127.0.0.1:{daemon.web.port}{path}",
        method=method,
        data=orjson.dumps(body) if body is not None else None,
        headers=headers,
    )
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def api(daemon: Daemon, path: str, **kwargs: Any) -> tuple[int, Any]:
    status, _, body = http(daemon, path, **kwargs)
    return status, orjson.loads(body)


def web_settings(broker: LocalBroker, bundle: Bundle, tmp_path: Path, **web: object) -> Any:
    return settings_for(broker, bundle, tmp_path, web={"port": 0, **web})


def test_page_lists_streams_and_charts_one_with_its_alert(
    broker: LocalBroker, bundle: Bundle, tmp_path: Path
) -> None:
    values = spiky_series(n=150, spike_at=105)  # once its tails speak (100 values)
    with (
        running(web_settings(broker, bundle, tmp_path)) as daemon,
        mqtt_client(broker) as client,
    ):
        feed(client, "s1", values[:108])  # the spike at 105 raised an alert, still up
        feed(client, "quiet", values[:40])
        assert wait_for(lambda: scored(daemon) == 148, timeout=60), daemon.stats()
        status, listed = api(daemon, "/api/streams")
        assert status == 200, listed
        rows = {row["stream"]: row for row in listed["streams"]}
        assert set(rows) == {"s1", "quiet"} and listed["total"] == 2
        assert rows["s1"]["status"] == "alert" and rows["s1"]["channel"] is not None
        assert listed["streams"][0]["stream"] == "s1", "alerting streams come first"
        assert rows["s1"]["score"] is not None
        _, filtered = api(daemon, "/api/streams?q=qui")
        assert [r["stream"] for r in filtered["streams"]] == ["quiet"]
        _, alerting = api(daemon, "/api/streams?status=alert")
        assert [r["stream"] for r in alerting["streams"]] == ["s1"]

        # s1 raised an alert, so its chart was started then, from the readings its state
        # keeps: it holds the spike, the model's expectation and the score
        status, s1 = api(daemon, f"/api/stream?route={ROUTE}&stream=s1")
        assert status == 200, s1
        chart = s1["chart"]
        spike_ts = T0 + 105 * STEP
        assert spike_ts in chart["ts"] and chart["ts"][-1] == T0 + 107 * STEP
        at = chart["ts"].index(spike_ts)
        assert chart["values"][0][at] == pytest.approx(values[105])
        assert chart["expected"][0][at] is not None and chart["score"][at] is not None
        assert chart["alert"][at] is True
        (raised,) = s1["alerts"]
        assert raised["event"] == "raised" and raised["ts"] == spike_ts
        assert raised["channel"] and raised["message"] and raised["severity"]

        # a stream nobody charted yet: asked for, started from its recent readings, then
        # grows as readings arrive
        status, quiet = api(daemon, f"/api/stream?route={ROUTE}&stream=quiet")
        assert status == 200, quiet
        seeded = len(quiet["chart"]["ts"])
        assert 1 <= seeded <= 16 and quiet["chart"]["ts"][-1] == T0 + 39 * STEP
        feed(client, "quiet", values[40:50], start=40)
        assert wait_for(lambda: scored(daemon) == 158, timeout=30)
        _, quiet = api(daemon, f"/api/stream?route={ROUTE}&stream=quiet")
        assert len(quiet["chart"]["ts"]) == seeded + 10
        assert quiet["chart"]["ts"][-1] == T0 + 49 * STEP

        # what is not there is said, not served empty
        assert api(daemon, f"/api/stream?route={ROUTE}&stream=nobody")[0] == 404
        assert api(daemon, "/api/stream?route=other&stream=s1")[0] == 404
        assert api(daemon, f"/api/stream?route={ROUTE}&stream=a%2Fb")[0] == 400
        _, alerts = api(daemon, "/api/alerts")
        assert [a["stream"] for a in alerts["alerts"]] == ["s1"]
        _, info = api(daemon, "/api/info")
        assert info["routes"][0]["features"] == list(bundle.features)
        assert info["verdicts"] is False


def test_page_is_read_only_by_default_and_serves_its_files(
    broker: LocalBroker, bundle: Bundle, tmp_path: Path
) -> None:
    with running(web_settings(broker, bundle, tmp_path)) as daemon:
        status, headers, page = http(daemon, "/")
        assert status == 200 and b"<title>sensord</title>" in page
        assert headers["Content-Type"].startswith("text/html")
        assert "default-src 'self'" in headers["Content-Security-Policy"]
        for name in ("uPlot.iife.min.js", "uPlot.min.css", "page.js", "page.css"):
            status, _, content = http(daemon, f"/static/{name}")
            assert status == 200 and content, name
        assert http(daemon, "/static/../board.py")[0] == 404
        assert http(daemon, "/metrics")[0] == 404  # metrics stay on their own port
        status, health = api(daemon, "/healthz")  # on the web port as on the metrics port
        assert status == 200 and health["status"] == "ok", health
        body = {"stream": "s1", "alert_id": "x", "verdict": "confirmed"}
        status, refused = api(daemon, "/api/feedback", method="POST", body=body, token=TOKEN)
        assert status == 405 and "read-only" in refused["error"]
        assert http(daemon, "/", method="POST", body={})[0] == 405
        # DNS rebinding: a site whose name points at 127.0.0.1 gets nothing from a page that
        # listens on loopback; loopback names do
        port = daemon.web.port if daemon.web is not None else 0
        status, _, refused_host = http(daemon, "/api/info", host=f"evil.example:{port}")
        assert status == 400 and b"allowed_hosts" in refused_host
        assert http(daemon, "/api/info", host=f"localhost:{port}")[0] == 200
        assert http(daemon, "/healthz", host=f"[::1]:{port}")[0] == 200


def test_verdict_from_the_page_goes_through_the_feedback_desk(
    broker: LocalBroker, bundle: Bundle, tmp_path: Path
) -> None:
    values = spiky_series(n=103, spike_at=100)  # the alert is still up at the end
    settings = web_settings(broker, bundle, tmp_path, verdicts=True, token=TOKEN)
    with (
        running(settings) as daemon,
        mqtt_client(broker, subscribe="sensord/#") as client,
    ):
        feed(client, "s1", values)
        assert wait_for(lambda: scored(daemon) == 103, timeout=60)
        _, s1 = api(daemon, f"/api/stream?route={ROUTE}&stream=s1")
        alert_id = s1["alerts"][0]["alert_id"]
        verdict = {"stream": "s1", "alert_id": alert_id, "verdict": "confirmed", "by": "ana"}
        # no token, a wrong one, an oversized body, an unknown alert: refused, with reasons
        assert api(daemon, "/api/feedback", method="POST", body=verdict)[0] == 401
        assert api(daemon, "/api/feedback", method="POST", body=verdict, token="x" * 20)[0] == 401
        huge = {**verdict, "note": "n" * 5000}
        assert api(daemon, "/api/feedback", method="POST", body=huge, token=TOKEN)[0] == 413
        unknown = {**verdict, "alert_id": "not-an-alert"}
        status, answer = api(daemon, "/api/feedback", method="POST", body=unknown, token=TOKEN)
        assert status == 422 and answer["accepted"] is False and answer["reason"]
        status, answer = api(daemon, "/api/feedback", method="POST", body=verdict, token=TOKEN)
        assert status == 200 and answer["accepted"] is True, answer
        # stored like MQTT feedback, shown on the page and on the stream's retained state
        assert read_verdicts(settings.feedback_file) == {alert_id: "confirmed"}
        _, s1 = api(daemon, f"/api/stream?route={ROUTE}&stream=s1")
        assert s1["alerts"][0]["feedback"]["verdict"] == "confirmed"
        assert s1["alerts"][0]["feedback"]["by"] == "ana"
        assert wait_for(
            lambda: any(
                (orjson.loads(m.payload).get("feedback") or {}).get("verdict") == "confirmed"
                for m in client.on("sensord/state/s1")
            )
        ), "the state did not show the verdict"
        # the answer went back to the page, not to the MQTT response topic
        assert not client.on("sensord/feedback/s1/response")


@pytest.mark.parametrize(
    ("header", "host"),
    [
        ("127.0.0.1:8080", "127.0.0.1"),
        ("localhost", "localhost"),
        ("[::1]:8080", "::1"),
        ("::1", "::1"),
        ("box.example:80", "box.example"),
        ("", ""),
    ],
)
def test_the_host_header_is_read_without_its_port(header: str, host: str) -> None:
    assert _host_name(header) == host


def test_allowed_hosts_widen_a_loopback_page_and_narrow_any_other() -> None:
    def allowed(name: str, **web: object) -> bool:
        settings = WebSettings.model_validate({"port": 0, **web})
        return WebApp(
            Board(settings, "sensord"), settings, health=None, shown=None, max_feedback_bytes=64
        )._host_allowed(name)

    assert allowed("localhost") and not allowed("evil.example")
    assert allowed("box.example", allowed_hosts=["box.example"])
    assert allowed("anything", host="0.0.0.0")
    assert not allowed("anything", host="0.0.0.0", allowed_hosts=["box.example"])
