"""``sensord cluster-config``: the engine's side of a sensord cluster, from sensord's own
settings: a nats-server configuration with JetStream, the MQTT gateway and the subject
mapping that puts each stream in its partition (docs/cluster.md).

The ports are the settings' where they name one (the client port of ``[cluster] url``'s
first server, the gateway's from ``[mqtt] port``: what the members will connect to), else
nats-server's usual ones; flags override both, so that the printed file can be used as it
is on a box where another NATS or a Mosquitto already holds those ports.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from sensord.errors import ConfigError
from sensord.wire.partition import nats_subject, subject_mapping

if TYPE_CHECKING:
    from sensord.config import Settings

NATS_PORT = 4222  # nats-server's client port where [cluster] url names none
STORE_DIR = Path("/var/lib/nats/jetstream")


@dataclass(frozen=True)
class EngineListen:
    """Where the engine listens and keeps its store."""

    port: int  # NATS clients: the members
    mqtt_port: int  # the MQTT gateway: sensors, and the members' alerts and states
    http_port: int | None  # monitoring (/varz, /jsz, ...); None: off
    store_dir: Path


def port_number(text: str) -> int:
    """An argparse type: a TCP port, 1 to 65535."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"not a port number (1 to 65535): {port}")
    return port


def add_options(parser: argparse.ArgumentParser) -> None:
    """The command's flags, each overriding what the settings give."""
    parser.add_argument(
        "--port",
        type=port_number,
        default=None,
        help=f"client port (default: [cluster] url's, else {NATS_PORT})",
    )
    parser.add_argument(
        "--mqtt-port",
        type=port_number,
        default=None,
        help="MQTT gateway port (default: [mqtt] port)",
    )
    parser.add_argument(
        "--http-port",
        type=port_number,
        default=None,
        help="monitoring port (/varz, /jsz; default: none, no monitoring)",
    )
    parser.add_argument(
        "--store-dir", type=Path, default=None, help=f"JetStream's store (default: {STORE_DIR})"
    )


def engine_listen(settings: Settings, args: argparse.Namespace) -> EngineListen:
    """The ports and store: the flags, else the settings, else nats-server's defaults
    (ConfigError if two ports are the same)."""
    listen = EngineListen(
        port=args.port if args.port is not None else client_port(settings.cluster.url),
        mqtt_port=args.mqtt_port if args.mqtt_port is not None else settings.mqtt.port,
        http_port=args.http_port,
        store_dir=args.store_dir if args.store_dir is not None else STORE_DIR,
    )
    ports = [p for p in (listen.port, listen.mqtt_port, listen.http_port) if p is not None]
    if len(set(ports)) < len(ports):
        raise ConfigError(
            f"cluster-config: the client port ({listen.port}), the MQTT gateway's "
            f"({listen.mqtt_port}) and the monitoring port ({listen.http_port}) must differ: "
            "pass --port, --mqtt-port or --http-port"
        )
    return listen


def client_port(url: str | None) -> int:
    """The port of the first server in ``[cluster] url``, or nats-server's default."""
    if url is None:
        return NATS_PORT
    first = url.split(",")[0].strip()
    try:  # a bare host:port is a NATS url too
        port = urlsplit(first if "://" in first else f"nats://{first}").port
    except ValueError:  # never echo the url: it may hold a password
        raise ConfigError(
            "cluster.url: its first server's port is not a number 0 to 65535: fix it or pass --port"
        ) from None
    return port or NATS_PORT


def engine_config(settings: Settings, where: str, listen: EngineListen) -> str:
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
    monitoring = (
        f'http: "0.0.0.0:{listen.http_port}"   # monitoring, no authentication: firewall it\n'
        if listen.http_port is not None
        else ""
    )
    return (
        f"# nats-server configuration for the sensord cluster {settings.cluster.name!r}\n"
        f"# ({partitions} partitions; nats-server 2.9 or newer). Sensors publish MQTT 3.1.1\n"
        "# to the gateway's port; sensord members connect to both ports.\n"
        'server_name: "sensord-engine-1"   # unique per server; the MQTT gateway needs one\n'
        f'listen: "0.0.0.0:{listen.port}"\n'
        f"{monitoring}"
        f"jetstream {{ store_dir: {json.dumps(str(listen.store_dir))} }}\n"
        f'mqtt {{ listen: "0.0.0.0:{listen.mqtt_port}" }}\n'
        "# Every sensor subject to its partition: part.<n>.<subject>, n from the stream's token.\n"
        f"mappings = {{\n{pairs}\n}}\n"
    )
