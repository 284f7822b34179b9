"""The ``[cluster]`` section: cluster mode on NATS JetStream (docs/cluster.md), off while
``url`` is unset. The checks that tie it to other sections are settings.py's."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr

from sensord.config.base import Section

# All that nats-server's MQTT gateway speaks (it refuses MQTT 5: "unacceptable protocol
# version of 5", 2.9.10): a member's MQTT side in cluster mode, so its protocol unless given.
GATEWAY_PROTOCOL = "3.1.1"


class ClusterSettings(Section):
    url: str | None = Field(
        None,
        min_length=1,
        description="NATS server(s) with JetStream, e.g. nats://engine:4222 (several: comma "
        "separated); unset: single-node mode, no cluster.",
    )
    member: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="This member's name, unique in the cluster; default: the host name.",
    )
    user: str | None = Field(None, min_length=1, description="NATS user name.")
    password: SecretStr | None = Field(None, description="NATS password (for user).")
    credentials: Path | None = Field(
        None, description="NATS credentials file (.creds: JWT and NKey seed), instead of user."
    )
    name: str = Field(
        "sensord",
        min_length=1,
        max_length=32,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="The cluster's name: its buckets are <name>_members, <name>_leases, "
        "<name>_state and <name>_alerts. Every member of one cluster uses the same.",
    )
    partitions: int = Field(
        12,
        ge=1,
        le=1024,
        description="Partitions the streams are hashed into; must equal the engine's subject "
        "mapping partition(N,1) (sensord cluster-config prints it). At least the members.",
    )
    lease_s: float = Field(
        6.0,
        ge=1.0,
        le=300.0,
        description="A partition's lease time: a dead member's partitions are owned again "
        "within five thirds of it plus their restore (docs/cluster.md). Every member uses "
        "the same.",
    )
    checkpoint_s: float = Field(
        5.0,
        ge=0.5,
        le=3600.0,
        description="How often each owned partition's state is saved to the engine: what a "
        "member taking over replays at most.",
    )
    log_stream: str = Field(
        "SENSORD_READINGS",
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="The JetStream stream that journals the partitioned readings (part.>).",
    )
    log_max_age_s: float = Field(
        86_400.0,
        ge=60.0,
        le=366 * 86_400,
        description="How long the readings log keeps readings (must outlast checkpoint_s "
        "by far) and the alert ledger its entries.",
    )
    prefetch: int = Field(
        1024,
        ge=16,
        le=100_000,
        description="Readings fetched ahead of scoring, all partitions together; each owned "
        "partition fetches at least one batch of 256 ahead, so a member owning many holds "
        "more (12 partitions: about 3,000).",
    )
