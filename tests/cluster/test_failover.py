"""Cluster mode end to end: ``sensord run`` members in child processes, a real nats-server
(its MQTT gateway and partition mapping) started on free ports, sensors and an alert
subscriber on MQTT through the gateway (tests/soak/cluster.py runs the scenarios).

Each test asserts the scenario's whole outcome: every reading stepped, none twice by one
member (save where a lost lease makes a member replay), the final state of every stream
exactly a clean single run's, every expected alert once and no other."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from sensord.core.bundle import Bundle
from tests.cluster.conftest import need_engine
from tests.soak.cluster import ClusterOutcome, ClusterScenario, run

LEASE_S = 3.0
# A dead member's leases lapse one lease time after its last renewal; a survivor claims
# them on its next turn (a third of the lease time) and restores each (tens of ms): the
# bound docs/cluster.md states is the lease time and two turns, plus 2 s for a busy box.
HANDOVER_BOUND_S = LEASE_S * 5 / 3 + 2.0


def checked(outcome: ClusterOutcome) -> ClusterOutcome:
    assert outcome.problems() == [], asdict(outcome)
    assert outcome.alert_repeats == 0, asdict(outcome)
    assert outcome.state_streams > 0, asdict(outcome)
    # nothing missing; after an engine restart, only what the engine's log never held
    # (its own loss at the restart, which problems() keeps to the restart's steps)
    lost_by_engine = outcome.lost_by_engine if outcome.engine_restarted else 0
    assert outcome.missing == lost_by_engine, asdict(outcome)
    return outcome


def test_a_member_killed_mid_stream_loses_nothing(bundle: Bundle, tmp_path: Path) -> None:
    need_engine()
    scenario = ClusterScenario(
        members=3,
        streams=1000,
        steps=200,
        rate=5000,
        kill_at=0.5,
        lease_s=LEASE_S,
        checkpoint_s=10.0,  # the take-over replays up to 10 s of readings, alerts among them
    )
    outcome = checked(run(scenario, bundle, keep=tmp_path))
    assert outcome.published == 200_000
    assert outcome.alerts_expected > 500, asdict(outcome)  # spikes on most streams
    assert outcome.handover_s is not None and outcome.handover_s <= HANDOVER_BOUND_S, asdict(
        outcome
    )
    assert sorted(outcome.partitions_at_end.values()) == [6, 6], asdict(outcome)


def test_a_member_joining_takes_its_share_without_loss(bundle: Bundle, tmp_path: Path) -> None:
    need_engine()
    scenario = ClusterScenario(
        members=2,
        streams=300,
        steps=150,
        rate=3000,
        kill_at=None,
        join_at=0.4,
        lease_s=LEASE_S,
    )
    outcome = checked(run(scenario, bundle, keep=tmp_path))
    assert outcome.partitions_moved_to_joiner == 4, asdict(outcome)
    assert sorted(outcome.partitions_at_end.values()) == [4, 4, 4], asdict(outcome)
    # handed over at a clean release: its exact position, nothing stepped again
    assert outcome.stepped_total == outcome.published, asdict(outcome)


def test_members_resume_after_the_engine_restarts(bundle: Bundle, tmp_path: Path) -> None:
    need_engine()
    scenario = ClusterScenario(
        members=3,
        streams=300,
        steps=150,
        rate=3000,
        kill_at=None,
        restart_at=0.4,
        lease_s=LEASE_S,
    )
    outcome = checked(run(scenario, bundle, keep=tmp_path))
    assert outcome.engine_restarted
    assert sorted(outcome.partitions_at_end.values()) == [4, 4, 4], asdict(outcome)
