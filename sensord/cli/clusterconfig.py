"""``sensord cluster-config``: the engine's side of a sensord cluster, from sensord's own
settings: a nats-server configuration with JetStream, the MQTT gateway and the subject
mapping that puts each stream in its partition (docs/cluster.md)."""

from __future__ import annotations

from sensord.config import Settings
from sensord.errors import ConfigError
from sensord.wire.partition import nats_subject, subject_mapping


def engine_config(settings: Settings, where: str) -> str:
    """The nats-server configuration for this cluster (ConfigError if a route's topic
    cannot be partitioned)."""
    partitions = settings.cluster.partitions
    mappings: dict[str, str] = {}
    for i, route in enumerate(settings.routes):
        try:
            mappings.update(subject_mapping(partitions, nats_subject(route.topic)))
        except ValueError as exc:
            raise ConfigError(f"{where}: routes[{i}].topic: {exc}") from None
    if not mappings:
        raise ConfigError(f"{where}: no routes: nothing to partition")
    pairs = ",\n".join(f'  "{source}": "{target}"' for source, target in mappings.items())
    return (
        f"# nats-server configuration for the sensord cluster {settings.cluster.name!r}\n"
        f"# ({partitions} partitions; nats-server 2.9 or newer). Sensors publish MQTT 3.1.1\n"
        "# to the gateway's port; sensord members connect to both ports.\n"
        'server_name: "sensord-engine-1"   # unique per server; the MQTT gateway needs one\n'
        'listen: "0.0.0.0:4222"\n'
        'jetstream { store_dir: "/var/lib/nats/jetstream" }\n'
        'mqtt { listen: "0.0.0.0:1883" }\n'
        "# Every sensor subject to its partition: part.<n>.<subject>, n from the stream's token.\n"
        f"mappings = {{\n{pairs}\n}}\n"
    )
