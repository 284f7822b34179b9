"""What sensord publishes, read as an operator reads it (schema 2)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from sensord.config import Settings
from sensord.core.alert import AlertEvent
from sensord.core.bundle import Bundle
from sensord.daemon.loop import Daemon
from sensord.errors import ConfigError
from sensord.wire.published import SCHEMA_VERSION, alert_payload
from tests.fakes import MemoryTransport

RAISED = AlertEvent(
    event="raised",
    alert_id="a1",
    stream="boiler.t1",
    ts=1_700_000_300.0,
    raised_ts=1_700_000_300.0,
    values=(14.92, 3.0),
    expected=(22.98, 3.1),
    error=3.517,
    score=0.97,
    peak_score=0.97,
    threshold=0.5,
    severity="critical",
    model="boiler",
    model_version="v1",
    channel="point",
    drivers=(("temp", 0.9), ("flow", 0.1)),
)
FEATURES = ("temp", "flow")  # the bundle's order


def payload(event: AlertEvent, units: dict[str, str] | None = None) -> dict[str, object]:
    raw = alert_payload(
        event, topic="t", route="r", features=FEATURES, received=0.0, published=0.0, units=units
    )
    parsed = orjson.loads(raw)
    assert isinstance(parsed, dict)
    return parsed


def test_a_raised_alert_says_what_happened_in_the_sensors_units() -> None:
    got = payload(RAISED, {"temp": "°C"})
    assert got["schema"] == SCHEMA_VERSION == 2
    assert got["message"] == "boiler.t1: anomaly (point): temp 14.92 °C, expected 22.98 °C"
    assert got["error"] == {"temp": pytest.approx(14.92 - 22.98), "flow": pytest.approx(-0.1)}
    assert got["error_scaled"] == 3.517 and got["units"] == {"temp": "°C"}
    assert got["severity"] == "critical" and got["duration_s"] is None


def test_a_clear_has_no_severity_and_says_how_long() -> None:
    cleared = AlertEvent(**{**RAISED.__dict__, "event": "cleared", "ts": RAISED.ts + 600.0})
    got = payload(cleared)
    assert got["severity"] is None and got["duration_s"] == 600.0
    assert got["message"] == "boiler.t1: back to normal after 10 min"
    assert got["units"] is None
    accepted = AlertEvent(**{**cleared.__dict__, "reason": "accepted"})
    assert str(payload(accepted)["message"]).endswith("(accepted as the new normal)")


def test_units_must_name_the_bundles_features(bundle: Bundle, tmp_path: Path) -> None:
    data = {
        "routes": [{"topic": "s/+/v", "bundle": str(bundle.path), "units": {"volts": "V"}}],
        "state": {"dir": str(tmp_path)},
    }
    with pytest.raises(ConfigError, match=r"routes\[0\]\.units: 'volts': not a feature"):
        Daemon(Settings.model_validate(data), transport=MemoryTransport)
