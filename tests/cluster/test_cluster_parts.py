"""The parts of cluster mode that need no engine: the alert ledger's keys and the
delivery's use of a ledger, the cluster settings' checks, the engine's configuration that
``sensord cluster-config`` prints, and the subject mapping."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from sensord.cli.main import EXIT_BAD_CONFIG, main
from sensord.cluster.ledger import key_of
from sensord.core.bundle import Bundle
from sensord.daemon.delivery import AlertDelivery
from sensord.daemon.health import Health
from sensord.wire.partition import nats_subject, subject_mapping

ALERT_ID = "2b95d8c0-9d2c-5b41-a60e-67ff252bccf6"


def alert(event: str = "raised", alert_id: str = ALERT_ID) -> bytes:
    return orjson.dumps({"schema": 2, "event": event, "alert_id": alert_id, "stream": "s1"})


def test_ledger_keys_name_the_alert_and_its_event() -> None:
    assert key_of(alert()) == f"{ALERT_ID}.raised"
    assert key_of(alert("cleared")) == f"{ALERT_ID}.cleared"
    assert key_of(b"not json") is None
    assert key_of(orjson.dumps({"event": "nodata", "stream": "s1"})) is None  # no id
    assert key_of(alert(alert_id="a.b>c")) is None  # not a safe KV key: not ledgered
    assert key_of(b"[1, 2]") is None


class Ledger:
    """An in-memory ledger: the seam AlertDelivery takes (cluster/ledger.py in the engine)."""

    def __init__(self, known: set[bytes]) -> None:
        self.known = known
        self.confirmed_payloads: list[bytes] = []

    def seen(self, payload: bytes) -> bool:
        return payload in self.known

    def confirmed(self, payload: bytes) -> None:
        self.confirmed_payloads.append(payload)
        self.known.add(payload)


def test_delivery_withholds_what_the_ledger_has_and_records_what_the_broker_confirms() -> None:
    published: list[bytes] = []

    def publish(topic: str, payload: bytes) -> int:
        published.append(payload)
        return len(published)

    ledger = Ledger({alert("raised")})
    delivery = AlertDelivery(publish, None, ledger=ledger)
    delivery.send(
        [("a/s1", alert("raised")), ("a/s1", alert("cleared")), ("a/s2", alert("raised", "x"))]
    )
    assert published == [alert("cleared"), alert("raised", "x")]
    assert delivery.counters.alerts_repeats == 1 and delivery.in_flight == 2
    delivery.published(1, accepted=True)
    delivery.published(2, accepted=False)  # refused: not recorded as delivered
    assert ledger.confirmed_payloads == [alert("cleared")]
    assert delivery.in_flight == 0
    assert delivery.counters.alerts_delivered == 1 and delivery.counters.alerts_refused == 1
    delivery.send([("a/s1", alert("cleared"))])  # the broker has it now
    assert len(published) == 2 and delivery.counters.alerts_repeats == 2


def test_subject_mapping_follows_the_routes_topic() -> None:
    assert subject_mapping(12, nats_subject("sensors/+/value")) == {
        "sensors.*.value": "part.{{partition(12,1)}}.sensors.{{wildcard(1)}}.value"
    }
    assert subject_mapping(7, "plant.*.*.temp")["plant.*.*.temp"] == (
        "part.{{partition(7,1)}}.plant.{{wildcard(1)}}.{{wildcard(2)}}.temp"
    )
    with pytest.raises(ValueError, match="cannot be mapped"):
        subject_mapping(12, nats_subject("plant/#"))
    with pytest.raises(ValueError, match="needs a"):
        subject_mapping(12, "plant.boiler")


def config(tmp_path: Path, bundle: Bundle, extra: str = "", topic: str = "sensors/+/value") -> Path:
    path = tmp_path / "sensord.toml"
    path.write_text(
        f'[cluster]\nurl = "nats://127.0.0.1:4222"\n{extra}\n'
        f'[[routes]]\ntopic = "{topic}"\nbundle = "{bundle.path}"\n'
    )
    return path


def test_cluster_config_prints_the_engines_configuration(
    tmp_path: Path, bundle: Bundle, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["cluster-config", str(config(tmp_path, bundle, "partitions = 7"))]) == 0
    out = capsys.readouterr().out
    assert "jetstream {" in out and "mqtt {" in out
    assert '"sensors.*.value": "part.{{partition(7,1)}}.sensors.{{wildcard(1)}}.value"' in out


def test_cluster_settings_are_checked(
    tmp_path: Path, bundle: Bundle, capsys: pytest.CaptureFixture[str]
) -> None:
    cases = [
        ("", "plant/#", "routes[0].topic: 'plant/#': in cluster mode"),
        ("[feedback]\nenabled = true", "sensors/+/value", "feedback.enabled: true: not available"),
        ('password = "hunter2-hunter2"', "sensors/+/value", "cluster.password: needs cluster.user"),
        ('member = "a b"', "sensors/+/value", "cluster.member"),
        (
            "[homeassistant]\nenabled = true",
            "sensors/+/value",
            "homeassistant.enabled: true: not available in cluster mode",
        ),
    ]
    for extra, topic, message in cases:
        # [feedback] is a section of its own: put it after [cluster]'s keys
        path = config(tmp_path, bundle, extra, topic)
        assert main(["check-config", str(path)]) == EXIT_BAD_CONFIG, message
        err = capsys.readouterr().err
        assert message in err, err
        assert "hunter2" not in err  # the password is masked
    # feedback is on by default: in cluster mode it is switched off, not an error
    assert main(["check-config", str(config(tmp_path, bundle))]) == 0


def test_health_says_when_a_member_has_lost_its_engine() -> None:
    engine_up = False
    health = Health(lambda: True, lambda now: True, engine_connected=lambda: engine_up)
    ok, body = health.check()
    assert not ok and body["reasons"] == ["not connected to the cluster's engine (NATS)"]
    engine_up = True
    assert health.check()[0]
    assert Health(lambda: True, lambda now: True).check()[0]  # a single daemon: no engine
