"""Home Assistant MQTT discovery: each stream as an anomaly ``binary_sensor``.

Pure functions only; the daemon decides when to publish. What it publishes, all retained so
that a Home Assistant started later still finds them:

- ``<discovery_prefix>/binary_sensor/<node>/<object_id>/config``: :func:`discovery_payload`
  when a stream is first seen (and again at every connect: the same bytes are a no-op for
  Home Assistant), :data:`REMOVAL_PAYLOAD` when the stream is evicted;
- ``<discovery_prefix>/sensor/<node>/<object_id>/config``: :func:`score_payload`, the
  stream's anomaly score beside it, published and removed with it;
- ``<discovery_prefix>/binary_sensor/<node>/bridge/config``: :func:`bridge_payload`, the
  instance itself, at start.

The entity reads what sensord already publishes (see :mod:`sensord.wire.published`): its state
and its attributes come from the retained ``<prefix>/state/<stream>`` JSON, its availability from
``<prefix>/status`` (``online`` / ``offline``, the Last Will saying ``offline``) and the
stream's own ``<prefix>/availability/<stream>`` (``offline`` while it is silent), both
required. Nothing is published for Home Assistant alone, so turning discovery on or off
changes no other topic.

Names follow Home Assistant's rules (``homeassistant/components/mqtt/discovery.py``,
``schemas.py``): topic ids are ``[a-zA-Z0-9_-]``. Each stream is a device named as the stream
with one entity, "Anomaly", reached through the instance's own device (``bridge_payload``);
Home Assistant composes "<stream> Anomaly" and the entity id from those names.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import orjson

from sensord.wire.published import (
    OFFLINE,
    ONLINE,
    availability_topic,
    state_topic,
    status_topic,
)
from sensord.wire.topics import safe_topic_level

DEFAULT_DISCOVERY_PREFIX = "homeassistant"
COMPONENT = "binary_sensor"
# A retained empty config is how Home Assistant is told to remove the entity.
REMOVAL_PAYLOAD: bytes = b""

# What Home Assistant accepts as <node_id> and <object_id> in a discovery topic.
_TOPIC_ID = re.compile(r"[a-zA-Z0-9_-]+")
_NOT_TOPIC_ID = re.compile(r"[^a-zA-Z0-9_-]")
_HASH_CHARS = 8
_PAYLOAD_ON = "ON"
_PAYLOAD_OFF = "OFF"
# Only ``status`` is read, so keys added to the state later (feedback, nodata, ...) change
# nothing; a payload that is not a JSON object (empty, garbage) reads as OFF instead of
# making Home Assistant log a template error.
_VALUE_TEMPLATE = (
    "{{ '" + _PAYLOAD_ON + "' if value_json is mapping"
    " and value_json.get('status') == 'alert' else '" + _PAYLOAD_OFF + "' }}"
)
_DEVICE_MODEL = "anomaly detector"
ENTITY_NAME = "Anomaly"  # the stream's device is named as the stream
SCORE_NAME = "Anomaly score"
SCORE_COMPONENT = "sensor"
_SCORE_TEMPLATE = (
    "{{ value_json.score if value_json is mapping and value_json.score is number else None }}"
)
BRIDGE_OBJECT = "bridge"  # the object id of the instance's own entity


def node_id(client_id: str) -> str:
    """The ``<node_id>`` of the discovery topics of the sensord using ``client_id``.

    The MQTT client id is unique on a broker, so it names one sensord instance.
    """
    return _topic_id(client_id, "client id")


def object_id(stream: str) -> str:
    """The ``<object_id>`` of a stream's discovery topic: ``[a-zA-Z0-9_-]`` only.

    A stream id already made of those characters is kept as it is. Otherwise every other
    character becomes ``_`` and a hash of the original id is appended, so ``a.b`` and
    ``a_b`` (and ``a:b``) get different entities; the hash is stable across runs and
    machines, so the entity survives restarts. (Only a stream named exactly like another's
    hashed id, ``a_b_<that hash>``, could collide with it.) A stream named ``bridge`` is
    hashed too: that object id is the instance's own (:func:`bridge_topic`).
    """
    obj = _topic_id(stream, "stream id")
    return f"{obj}_{_short_hash(stream)}" if obj == BRIDGE_OBJECT else obj


def discovery_topic(discovery_prefix: str, node: str, stream: str) -> str:
    """``<discovery_prefix>/binary_sensor/<node>/<object_id>/config`` for ``stream``."""
    _check_prefix(discovery_prefix, "discovery prefix")
    _check_node(node)
    return f"{discovery_prefix}/{COMPONENT}/{node}/{object_id(stream)}/config"


def discovery_payload(*, prefix: str, node: str, stream: str, sw_version: str) -> bytes:
    """The retained discovery config of ``stream``'s anomaly binary sensor (JSON bytes).

    ``prefix`` is sensord's own topic prefix and ``node`` comes from :func:`node_id`. Each
    stream is a device of its own, named as the stream, reached through the sensord
    instance's device (``via_device``, :func:`bridge_payload`); the entity is that device's
    "Anomaly", so Home Assistant shows "<stream> Anomaly" and makes the entity id
    ``binary_sensor.<stream>_anomaly`` from it, with nothing said twice. No suggested entity
    id is sent (``default_entity_id`` is ignored before 2025.10, and ``object_id`` stopped
    working in 2026.4): the names are the suggestion, ``unique_id`` the identity.
    """
    _check_prefix(prefix, "prefix")
    _check_node(node)
    obj = object_id(stream)
    topic = state_topic(prefix, stream)
    config: dict[str, Any] = {
        "name": ENTITY_NAME,
        # ':' is in neither id's alphabet, so no two (node, stream) pairs share a unique_id
        # ('_' would make node "s", stream "2_x" and node "s_2", stream "x" meet).
        "unique_id": f"sensord:{node}:{obj}",
        "device_class": "problem",
        "state_topic": topic,
        "value_template": _VALUE_TEMPLATE,
        "payload_on": _PAYLOAD_ON,
        "payload_off": _PAYLOAD_OFF,
        "json_attributes_topic": topic,
        # Available while sensord is online and the stream is not silent (nodata).
        "availability": [
            {
                "topic": status_topic(prefix),
                "payload_available": ONLINE.decode(),
                "payload_not_available": OFFLINE.decode(),
            },
            {
                "topic": availability_topic(prefix, stream),
                "payload_available": ONLINE.decode(),
                "payload_not_available": OFFLINE.decode(),
            },
        ],
        "availability_mode": "all",
        "qos": 1,
        "device": {
            "identifiers": [f"sensord_{node}_{obj}"],
            "name": stream,
            "manufacturer": "sensord",
            "model": _DEVICE_MODEL,
            "sw_version": sw_version,
            "via_device": _bridge_id(node),
        },
        "origin": {"name": "sensord", "sw_version": sw_version},
    }
    return orjson.dumps(config)


def score_topic(discovery_prefix: str, node: str, stream: str) -> str:
    """``<discovery_prefix>/sensor/<node>/<object_id>/config``: the stream's score entity."""
    _check_prefix(discovery_prefix, "discovery prefix")
    _check_node(node)
    return f"{discovery_prefix}/{SCORE_COMPONENT}/{node}/{object_id(stream)}/config"


def score_payload(*, prefix: str, node: str, stream: str, sw_version: str) -> bytes:
    """The stream's "Anomaly score" sensor beside its binary sensor, on the same device:
    the state's ``score`` (its latest, as ``[alerts] state_refresh_s`` refreshes it; a
    null renders as "None", which Home Assistant shows as unknown)."""
    config = orjson.loads(
        discovery_payload(prefix=prefix, node=node, stream=stream, sw_version=sw_version)
    )
    for key in ("device_class", "payload_on", "payload_off", "json_attributes_topic"):
        del config[key]
    config.update(
        {
            "name": SCORE_NAME,
            "unique_id": f"{config['unique_id']}:score",
            "value_template": _SCORE_TEMPLATE,
            "state_class": "measurement",
            "suggested_display_precision": 2,
        }
    )
    return orjson.dumps(config)


def bridge_topic(discovery_prefix: str, node: str) -> str:
    """The discovery topic of the sensord instance's own entity (its connection)."""
    _check_prefix(discovery_prefix, "discovery prefix")
    _check_node(node)
    return f"{discovery_prefix}/{COMPONENT}/{node}/{BRIDGE_OBJECT}/config"


def bridge_payload(*, prefix: str, node: str, sw_version: str) -> bytes:
    """The sensord instance as a device (every stream's ``via_device``) with one entity:
    its connection to the broker, from ``<prefix>/status`` (the Last Will says offline)."""
    _check_prefix(prefix, "prefix")
    _check_node(node)
    config: dict[str, Any] = {
        "name": "Connection",
        "unique_id": f"sensord:{node}:{BRIDGE_OBJECT}",
        "device_class": "connectivity",
        "entity_category": "diagnostic",
        "state_topic": status_topic(prefix),
        "payload_on": ONLINE.decode(),
        "payload_off": OFFLINE.decode(),
        "qos": 1,
        "device": {
            "identifiers": [_bridge_id(node)],
            # "sensord" once: a client id that already says it is not prefixed again
            "name": node if "sensord" in node.lower() else f"sensord {node}",
            "manufacturer": "sensord",
            "model": "sensord bridge",
            "sw_version": sw_version,
        },
        "origin": {"name": "sensord", "sw_version": sw_version},
    }
    return orjson.dumps(config)


def _bridge_id(node: str) -> str:
    return f"sensord_{node}"


def _topic_id(text: str, what: str) -> str:
    """``text`` as a discovery topic id, made unique by a hash where it had to change."""
    if not safe_topic_level(text):
        raise ValueError(
            f"{what} {text[:80]!r} must be 1 to 128 letters, digits, _ . : - "
            "(not starting with '$')"
        )
    cleaned = _NOT_TOPIC_ID.sub("_", text)
    return text if cleaned == text else f"{cleaned}_{_short_hash(text)}"


def _short_hash(text: str) -> str:
    # sha256 rather than hash(): Python's str hash changes from run to run.
    return hashlib.sha256(text.encode()).hexdigest()[:_HASH_CHARS]


def _check_prefix(prefix: str, what: str) -> None:
    if not all(safe_topic_level(level) for level in prefix.split("/")):
        raise ValueError(f"{what} {prefix[:80]!r}: each level must be letters, digits, _ . : -")


def _check_node(node: str) -> None:
    if not _TOPIC_ID.fullmatch(node):
        raise ValueError(f"node id {node[:80]!r} must be letters, digits, _ - (see node_id())")
