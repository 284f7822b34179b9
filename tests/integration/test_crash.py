"""Nothing lost: the daemon and the broker killed -9 and the network cut while numbered
readings with known anomalies stream in (short runs of tests/soak/crash.py's scenario)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest

from sensord.cli.broker import mosquitto_binary
from sensord.core.bundle import Bundle
from tests.soak.crash import Outcome, Scenario, run

pytestmark = pytest.mark.skipif(
    mosquitto_binary() is None, reason="kills and restarts a Mosquitto of its own"
)


def check(outcome: Outcome) -> None:
    summary = asdict(outcome)
    assert outcome.acknowledged_by_broker, summary
    assert outcome.missing == 0, summary  # every (stream, seq) stepped at least once
    assert outcome.alerts_expected > 0, summary
    assert outcome.alerts_expected_received == outcome.alerts_expected, summary
    assert outcome.final_exit == 0, summary
    assert outcome.snapshots_set_aside == 0, summary
    assert outcome.state_max_prediction_diff < 0.05, summary  # as a run that never crashed


def test_daemon_killed_repeatedly_loses_nothing(bundle: Bundle) -> None:
    outcome = run(Scenario(streams=10, steps=400, rate=400, daemon_kills=3), bundle)
    assert outcome.daemon_kills == 3
    check(outcome)


def test_broker_restarted_with_persistence_loses_nothing(bundle: Bundle, tmp_path: Path) -> None:
    outcome = run(
        Scenario(
            streams=10, steps=400, rate=400, daemon_kills=1, broker_kills=1, broker_graceful=True
        ),
        bundle,
        keep=tmp_path,  # its logs, trace and broker data, to read if it fails
    )
    assert outcome.broker_restarts == 1
    check(outcome)


def test_broker_killed_loses_only_its_own_unsaved_window(bundle: Bundle, tmp_path: Path) -> None:
    """Mosquitto saves its database now and then; a kill -9 loses what it accepted since
    (tests/soak/crash.py). Everything else must arrive, be stepped and alert."""
    outcome = run(
        Scenario(streams=10, steps=400, rate=400, broker_kills=1, seed=2), bundle, keep=tmp_path
    )
    assert outcome.broker_kills == 1
    assert outcome.missing == outcome.missing_near_broker_kill, asdict(outcome)
    assert outcome.final_exit == 0 and outcome.snapshots_set_aside == 0, asdict(outcome)


def test_alerts_raised_during_a_network_outage_arrive_after_it(bundle: Bundle) -> None:
    outcome = run(Scenario(streams=10, steps=400, rate=400, daemon_kills=0, outage_s=4), bundle)
    check(outcome)
