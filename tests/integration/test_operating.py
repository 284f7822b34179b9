"""Operating the daemon: shadow bundles, operator feedback, nodata alarms, the metrics
endpoint and Home Assistant discovery, on a real broker."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from pathlib import Path

import orjson
import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from prometheus_client.parser import text_string_to_metric_families

from sensord.cli.broker import LocalBroker
from sensord.core.bundle import Bundle
from sensord.offline.synthetic import generate
from sensord.ops.feedback import read_feedback, read_verdicts
from tests.integration.conftest import (
    Client,
    mqtt_client,
    running,
    scored,
    settings_for,
    start_broker,
    wait_for,
)
from tests.wire.test_homeassistant import (
    DISCOVERY_SCHEMA,
    SENSOR_DISCOVERY_SCHEMA,
    ha_binary_sensor_state,
)

T0 = 1_700_000_000.0
STEP = 300.0


def feed(client: Client, stream: str, values: list[float], start: int = 0) -> None:
    for k, value in enumerate(values, start=start):
        client.publish_json(f"sensors/{stream}/value", {"value": value, "ts": T0 + k * STEP})


def spiky_series(n: int = 150, spike_at: int = 100) -> list[float]:
    values = [float(v) for v in generate(n, seed=11).values]
    values[spike_at] += 8.0
    return values


def scrape(port: int) -> dict[str, list[tuple[dict[str, str], float]]]:
    """name → [(labels, value)] of every sample on the endpoint."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def test_shadow_is_scored_alike_and_its_figures_appear_beside_the_live_ones(
    broker: LocalBroker, bundle: Bundle, small_bundle: Bundle, tmp_path: Path
) -> None:
    settings = settings_for(
        broker,
        bundle,
        tmp_path,
        routes=[
            {
                "topic": "sensors/+/value",
                "bundle": str(bundle.path),
                "name": "temp",
                "shadow": str(small_bundle.path),
            }
        ],
    )
    with (
        running(settings) as daemon,
        mqtt_client(broker, subscribe="sensord/alerts/#") as client,
    ):
        feed(client, "s1", spiky_series())
        assert wait_for(lambda: scored(daemon) == 150, timeout=60)
        assert wait_for(lambda: len(client.on("sensord/alerts/")) == 2)  # the live model's only

        def shadow_scored() -> int:
            return int(daemon.stats()["routes"]["temp"]["shadow"]["scored"])

        assert wait_for(lambda: shadow_scored() == 149)  # scored after the live one, in turn
        route = daemon.stats()["routes"]["temp"]
        live, shadow = route["live"], route["shadow"]
        assert live["scored"] == shadow["scored"] == 149
        assert live["version"] == bundle.manifest.version
        assert shadow["version"] == small_bundle.manifest.version
        assert live["mean_abs_error"] > 0 and shadow["mean_abs_error"] > 0
        assert live["mean_abs_error"] != shadow["mean_abs_error"]
        assert shadow["raised"] >= 1  # the spike: counted for the shadow, never published
        assert daemon.metrics is not None
        samples = scrape(daemon.metrics.port)
    roles = {
        labels["role"]: value for labels, value in samples["sensord_model_readings_scored_total"]
    }
    assert roles == {"live": 149.0, "shadow": 149.0}
    errors = {labels["role"]: value for labels, value in samples["sensord_model_mean_abs_error"]}
    assert (
        errors["shadow"] == shadow["mean_abs_error"]
        or abs(errors["shadow"] - shadow["mean_abs_error"]) < 1e-5
    )
    # The shadow's state was snapshotted under its own name.
    assert (tmp_path / "temp@shadow.npz").exists() and (tmp_path / "temp.npz").exists()


def _feedback(client: Client, stream: str, body: object, correlation: bytes, response: str) -> None:
    properties = Properties(PacketTypes.PUBLISH)
    properties.ResponseTopic = response
    properties.CorrelationData = correlation
    payload = body if isinstance(body, bytes) else orjson.dumps(body)
    client.client.publish(f"sensord/feedback/{stream}", payload, qos=1, properties=properties)


def _answers(client: Client, topic: str) -> list[dict[str, object]]:
    return client.json_on(topic)


def test_feedback_round_trip_is_validated_stored_answered_and_shown_on_the_state(
    broker: LocalBroker, bundle: Bundle, tmp_path: Path
) -> None:
    values = spiky_series(n=104)  # ends while the alert is still active
    with (
        running(settings_for(broker, bundle, tmp_path)) as daemon,
        mqtt_client(broker, subscribe="sensord/#") as client,
    ):
        client.client.subscribe("ops/answers", qos=1)
        time.sleep(0.2)
        feed(client, "s1", values)
        assert wait_for(lambda: len(client.on("sensord/alerts/s1")) == 1)
        alert = client.json_on("sensord/alerts/s1")[0]
        alert_id = str(alert["alert_id"])
        _feedback(
            client,
            "s1",
            {"alert_id": alert_id, "verdict": "false_positive", "by": "ana", "note": "valve test"},
            b"req-1",
            "ops/answers",
        )
        _feedback(
            client, "s1", {"alert_id": "nope", "verdict": "confirmed"}, b"req-2", "ops/answers"
        )
        _feedback(client, "s1", b"{not json", b"req-3", "ops/answers")
        # No response topic: the answer goes to <prefix>/feedback/<stream>/response.
        client.publish_json("sensord/feedback/s1", {"alert_id": alert_id, "verdict": "maybe"})
        # A response topic posing as one of sensord's own alerts is not used.
        _feedback(
            client,
            "s1",
            {"alert_id": alert_id, "verdict": "acknowledged"},
            b"r",
            "sensord/alerts/s1",
        )
        assert wait_for(lambda: len(client.on("ops/answers")) == 3)
        assert wait_for(lambda: len(client.on("sensord/feedback/s1/response")) == 2)
        answers = client.json_on("ops/answers")
        assert [a["accepted"] for a in answers] == [True, False, False]
        assert answers[0]["alert_id"] == alert_id and answers[0]["verdict"] == "false_positive"
        assert "no alert nope" in str(answers[1]["reason"])
        assert "not JSON" in str(answers[2]["reason"])
        fallback = client.json_on("sensord/feedback/s1/response")
        assert [a["accepted"] for a in fallback] == [False, True]
        assert "verdict must be one of" in str(fallback[0]["reason"])
        assert len(client.on("sensord/alerts/s1")) == 1  # nothing spoofed onto the alert topic
        # The active alert's retained state now carries the verdict.
        assert wait_for(lambda: any(s.get("feedback") for s in client.json_on("sensord/state/s1")))
        state = next(s for s in client.json_on("sensord/state/s1") if s.get("feedback"))
        assert state["alert_id"] == alert_id and state["status"] == "alert"
        assert state["feedback"]["verdict"] in ("false_positive", "acknowledged")
        stats = daemon.stats()
        assert stats["feedback_accepted"] == 2
        assert stats["feedback_refused"] == {"unknown_alert": 1, "malformed": 2}
    taken = read_feedback(tmp_path / "feedback.jsonl")
    assert [(f.alert_id, f.verdict, f.by) for f in taken] == [
        (alert_id, "false_positive", "ana"),
        (alert_id, "acknowledged", None),
    ]
    assert read_verdicts(tmp_path / "feedback.jsonl") == {alert_id: "false_positive"}


def test_correlation_data_comes_back_with_the_answer(
    broker: LocalBroker, bundle: Bundle, tmp_path: Path
) -> None:
    got: list[bytes] = []

    def on_message(client: paho.Client, userdata: object, message: paho.MQTTMessage) -> None:
        got.append(bytes(message.properties.CorrelationData))

    with running(settings_for(broker, bundle, tmp_path)), mqtt_client(broker) as client:
        client.client.on_message = on_message
        client.client.subscribe("ops/corr", qos=1)
        time.sleep(0.2)
        _feedback(client, "s9", {"alert_id": "x", "verdict": "confirmed"}, b"abc-123", "ops/corr")
        assert wait_for(lambda: got == [b"abc-123"])


def test_nodata_raises_when_a_stream_falls_silent_and_clears_when_it_returns(
    broker: LocalBroker, bundle: Bundle, tmp_path: Path
) -> None:
    settings = settings_for(
        broker,
        bundle,
        tmp_path,
        nodata={"multiple": 5.0, "min_silence_s": 1.0, "min_intervals": 5},
    )
    values = [float(v) for v in generate(60, seed=5).values]
    with (
        running(settings) as daemon,
        mqtt_client(broker, subscribe="sensord/nodata/#") as client,
    ):
        client.client.subscribe("sensord/availability/quiet", qos=1)
        for k in range(20):  # every 50 ms: a usual period of about 0.05 s
            feed(client, "quiet", values[k : k + 1], start=k)
            feed(client, "chatty", values[k : k + 1], start=k)
            time.sleep(0.05)
        for k in range(20, 50):  # "chatty" keeps going, "quiet" has stopped
            feed(client, "chatty", values[k : k + 1], start=k)
            time.sleep(0.05)
        assert wait_for(lambda: len(client.on("sensord/nodata/")) >= 1, timeout=5)
        raised = client.json_on("sensord/nodata/")
        assert [(e["event"], e["stream"]) for e in raised] == [("raised", "quiet")]
        assert raised[0]["kind"] == "nodata" and 0.02 < raised[0]["usual_period_s"] < 0.5
        assert float(raised[0]["silent_s"]) >= 1.0
        assert daemon.stats()["nodata_active"] == 1
        feed(client, "quiet", values[50:51], start=50)

        def quiet_events() -> list[str]:
            return [e["event"] for e in client.json_on("sensord/nodata/") if e["stream"] == "quiet"]

        # The returning reading comes after a gap in its stream's time: it may wait up to the
        # reorder window for older ones, so "chatty", silent by then too, may come first.
        assert wait_for(lambda: quiet_events()[:2] == ["raised", "cleared"]), quiet_events()
        assert daemon.stats()["nodata_cleared"] == 1
        cleared = next(
            e
            for e in client.json_on("sensord/nodata/")
            if e["stream"] == "quiet" and e["event"] == "cleared"
        )
        # measured from the last reading before the silence, not from the returning one
        assert float(cleared["silent_s"]) >= float(raised[0]["silent_s"]), cleared
        assert cleared["last_reading_at"] == raised[0]["last_reading_at"], cleared

        def availability() -> list[str]:
            return [m.payload.decode() for m in client.on("sensord/availability/quiet")]

        # online when first seen, offline while silent, online again (Home Assistant's view)
        assert wait_for(lambda: availability() == ["online", "offline", "online"]), availability()


def test_metrics_endpoint_scraped_and_parsed(
    broker: LocalBroker, bundle: Bundle, tmp_path: Path
) -> None:
    settings = settings_for(
        broker,
        bundle,
        tmp_path,
        routes=[{"topic": "sensors/+/value", "bundle": str(bundle.path), "name": "temp"}],
    )
    with running(settings) as daemon, mqtt_client(broker) as client:
        feed(client, "a", spiky_series())
        feed(client, "b", [20.0 + k for k in range(10)])
        client.publish("sensors/c/value", b"not a number")
        assert wait_for(lambda: scored(daemon) == 160, timeout=60)
        # The lag is observed last in a batch, once it is acknowledged: wait for that too.
        assert wait_for(lambda: daemon.timings.lag_s.count == 160)
        assert daemon.metrics is not None
        samples = scrape(daemon.metrics.port)

    def one(name: str, **labels: str) -> float:
        found = [v for lab, v in samples[name] if all(lab.get(k) == x for k, x in labels.items())]
        assert len(found) == 1, (name, labels, samples.get(name))
        return found[0]

    # The malformed reading never reached a route: rejected by reason instead.
    assert one("sensord_route_readings_received_total", route="temp") == 160
    assert one("sensord_route_readings_scored_total", route="temp") == 158
    assert one("sensord_route_streams", route="temp") == 2
    assert one("sensord_route_alerts_raised_total", route="temp") >= 1
    assert one("sensord_readings_rejected_total", reason="malformed") == 1
    assert one("sensord_inbox_readings") == 0
    assert one("sensord_mqtt_reconnects_total") == 0
    assert one("sensord_model_readings_scored_total", route="temp", role="live") == 158
    # Histograms: every routed reading's lag, every engine step, every wave's size.
    assert one("sensord_lag_seconds_count") == 160
    assert one("sensord_lag_seconds_bucket", le="+Inf") == 160
    assert one("sensord_step_seconds_count") >= 1
    assert one("sensord_wave_size_sum") == 160  # readings stepped, one wave slot each
    assert one("sensord_reading_age_seconds_count") == 160
    lag_buckets = [v for lab, v in samples["sensord_lag_seconds_bucket"]]
    assert lag_buckets == sorted(lag_buckets)  # cumulative


def test_home_assistant_discovery_for_each_stream(
    broker: LocalBroker, bundle: Bundle, tmp_path: Path
) -> None:
    settings = settings_for(broker, bundle, tmp_path, homeassistant={"enabled": True})
    with (
        running(settings) as daemon,
        mqtt_client(broker, subscribe="homeassistant/#") as client,
    ):
        client.client.subscribe("sensord/state/#", qos=1)
        time.sleep(0.2)
        feed(client, "boiler.t1", spiky_series(n=104))
        feed(client, "pump", [20.0 + k * 0.01 for k in range(20)])
        assert wait_for(lambda: scored(daemon) == 124, timeout=60)
        # per stream an anomaly and a score entity, and the bridge
        assert wait_for(lambda: len(client.on("homeassistant/")) == 5)

        def last_status(stream: str) -> object:
            states = client.json_on(f"sensord/state/{stream}")
            return states[-1]["status"] if states else None

        assert wait_for(lambda: last_status("boiler.t1") == "alert")
        assert wait_for(lambda: last_status("pump") == "normal")
        configs = {m.topic: m for m in client.on("homeassistant/")}
    node = settings.mqtt.client_id.replace(".", "_")
    bridge = DISCOVERY_SCHEMA(
        orjson.loads(configs.pop(f"homeassistant/binary_sensor/{node}/bridge/config").payload)
    )
    assert bridge["device_class"] == "connectivity" and bridge["state_topic"] == "sensord/status"
    scores = {t: m for t, m in configs.items() if t.startswith("homeassistant/sensor/")}
    for topic in scores:
        configs.pop(topic)
    assert len(scores) == 2
    for message in scores.values():
        assert SENSOR_DISCOVERY_SCHEMA(orjson.loads(message.payload))["name"] == "Anomaly score"
    with mqtt_client(broker, subscribe="sensord/availability/#") as late:  # retained for it
        mine = ("sensord/availability/boiler.t1", "sensord/availability/pump")
        assert wait_for(lambda: {m.topic for m in late.on("sensord/availability/")} >= set(mine))
        availability = {m.topic: m for m in late.on("sensord/availability/")}
    for topic, message in configs.items():
        assert topic.startswith(f"homeassistant/binary_sensor/{node}/") and topic.endswith(
            "/config"
        )
        config = DISCOVERY_SCHEMA(orjson.loads(message.payload))
        assert config["device"]["via_device"] == bridge["device"]["identifiers"][0]
        sensord_up, stream_up = config["availability"]
        assert sensord_up["topic"] == "sensord/status" and config["availability_mode"] == "all"
        # the stream's own availability is published, retained, and says online
        published = availability[stream_up["topic"]]
        assert published.retain and published.payload.decode() == stream_up["payload_available"]
    by_state = {
        orjson.loads(m.payload)["state_topic"]: DISCOVERY_SCHEMA(orjson.loads(m.payload))
        for m in configs.values()
    }
    boiler = by_state["sensord/state/boiler.t1"]
    states = client.on("sensord/state/boiler.t1")
    assert ha_binary_sensor_state(boiler, states[-1].payload) is True  # in alert
    pump = by_state["sensord/state/pump"]
    assert ha_binary_sensor_state(pump, client.on("sensord/state/pump")[-1].payload) is False


def test_feedback_on_an_older_alert_is_taken_after_a_restart_when_recorded(
    broker: LocalBroker, bundle: Bundle, tmp_path: Path
) -> None:
    values = spiky_series(n=150)
    values[130] -= 8.0  # a second alert (a new low) on the same stream, after the first
    settings = settings_for(broker, bundle, tmp_path, record={"enabled": True})
    with (
        running(settings) as daemon,
        mqtt_client(broker, subscribe="sensord/alerts/#") as client,
    ):
        feed(client, "s1", values)
        assert wait_for(lambda: scored(daemon) == 150, timeout=60)
        assert wait_for(lambda: len(client.on("sensord/alerts/")) >= 3)
        raised = [a for a in client.json_on("sensord/alerts/") if a["event"] == "raised"]
    assert len(raised) == 2
    first = str(raised[0]["alert_id"])  # no longer the stream's latest alert
    with (
        running(settings) as daemon,
        mqtt_client(broker, subscribe="sensord/feedback/#") as client,
    ):
        client.publish_json("sensord/feedback/s1", {"alert_id": first, "verdict": "confirmed"})
        assert wait_for(lambda: len(client.on("sensord/feedback/s1/response")) == 1)
        (answer,) = client.json_on("sensord/feedback/s1/response")
        assert answer["accepted"] is True, answer
    assert read_verdicts(tmp_path / "feedback.jsonl") == {first: "confirmed"}


def health_of(port: int) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
            return r.status, orjson.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read())


def test_healthz_follows_the_broker_connection(bundle: Bundle, tmp_path: Path) -> None:
    own = start_broker()  # this test stops its broker
    try:
        with running(settings_for(own, bundle, tmp_path)) as daemon:
            assert daemon.metrics is not None
            port = daemon.metrics.port
            assert wait_for(lambda: health_of(port)[0] == 200), health_of(port)
            own.stop()
            assert wait_for(lambda: health_of(port)[0] == 503, 15), health_of(port)
            _, body = health_of(port)
            assert body["reasons"] == ["not connected to the MQTT broker"], body
    finally:
        own.stop()


def test_bridge_info_is_retained_for_late_subscribers(
    broker: LocalBroker, bundle: Bundle, tmp_path: Path
) -> None:
    with (
        running(settings_for(broker, bundle, tmp_path)),
        mqtt_client(broker, subscribe="sensord/bridge/info") as client,  # after the start
    ):
        assert wait_for(lambda: bool(client.on("sensord/bridge/info"))), "no bridge/info"
        (info,) = client.json_on("sensord/bridge/info")
        assert client.on("sensord/bridge/info")[0].retain
        assert info["routes"][0]["model_version"] == bundle.manifest.version
        assert info["features"]["metrics"] is True
