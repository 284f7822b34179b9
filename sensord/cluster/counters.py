"""A cluster member's figures (apart from member.py: the daemon exports them in every mode,
and only cluster mode needs nats-py)."""

from __future__ import annotations

from dataclasses import dataclass

from sensord.figures import counter, gauge


@dataclass
class ClusterCounters:
    owned: int = gauge("sensord_cluster_partitions_owned", "Partitions this member owns now.")
    claimed: int = counter(
        "sensord_cluster_partitions_claimed", "Partitions this member took (state restored)."
    )
    released: int = counter(
        "sensord_cluster_partitions_released", "Partitions this member let go (state saved)."
    )
    lost: int = counter(
        "sensord_cluster_partitions_lost",
        "Partitions whose lease this member lost without a release (stuck, or cut off).",
    )
    checkpoints: int = counter(
        "sensord_cluster_checkpoints", "Partition states saved to the engine on the way."
    )
    checkpoints_deferred: int = counter(
        "sensord_cluster_checkpoints_deferred",
        "Partition checkpoints put off: an alert the broker had not confirmed yet.",
    )
    restore_failures: int = counter(
        "sensord_cluster_restore_failures",
        "Partition states that could not be restored (their streams started afresh).",
    )
    fetched: int = counter(
        "sensord_cluster_readings_fetched", "Readings read from the engine's readings log."
    )
    engine_errors: int = counter(
        "sensord_cluster_engine_errors",
        "Requests to the engine that failed (each retried; logged at most every 10 s).",
    )
    lease_turns_failed: int = counter(
        "sensord_cluster_lease_turns_failed",
        "Lease turns that failed (the engine away or slow) or were skipped (the loop stuck).",
    )
    handover_s: float = gauge(
        "sensord_cluster_last_takeover_seconds",
        "Time the last partition this member took took to restore and start reading.",
        default=0.0,
    )
