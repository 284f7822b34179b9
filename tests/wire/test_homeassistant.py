"""Home Assistant discovery (sensord/wire/homeassistant.py), checked against Home Assistant's rules.

Home Assistant is not installed here, so the parts of it that judge a discovery message are
mirrored below from home-assistant/core (the 2026 dev branch, after object_id was removed and
voluptuous was renamed probatio; the API is the same):

- homeassistant/components/mqtt/discovery.py: TOPIC_MATCHER, the topic trimming, the two
  subscriptions per component, an empty payload meaning "remove";
- homeassistant/components/mqtt/binary_sensor.py: PLATFORM_SCHEMA_MODERN / DISCOVERY_SCHEMA;
- homeassistant/components/mqtt/config.py: SCHEMA_BASE, MQTT_RO_SCHEMA;
- homeassistant/components/mqtt/schemas.py: availability, device, origin, MQTT_ENTITY_COMMON;
- homeassistant/components/mqtt/util.py: valid_topic, valid_subscribe_topic, valid_qos_schema;
- homeassistant/helpers/config_validation.py: string, boolean, template, icon, url (the parts
  these keys use); homeassistant/components/binary_sensor: the device classes;
- homeassistant/core.py: VALID_ENTITY_ID; homeassistant/const.py: MAX_LENGTH_STATE_ENTITY_ID;
- homeassistant/helpers/template.py: render_with_possible_json_value (value, value_json).

One deliberate difference: Home Assistant's DISCOVERY_SCHEMA drops unknown keys
(REMOVE_EXTRA), which would hide a misspelt or retired option; here they fail (PREVENT_EXTRA).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

import jinja2
import orjson
import pytest
import voluptuous as vol
from hypothesis import given
from hypothesis import strategies as st
from jinja2.sandbox import ImmutableSandboxedEnvironment

from sensord.wire.homeassistant import (
    DEFAULT_DISCOVERY_PREFIX,
    REMOVAL_PAYLOAD,
    bridge_payload,
    bridge_topic,
    discovery_payload,
    discovery_topic,
    node_id,
    object_id,
    score_payload,
    score_topic,
)
from sensord.wire.published import (
    OFFLINE,
    ONLINE,
    availability_topic,
    state_payload,
    state_topic,
    status_topic,
)
from sensord.wire.topics import TopicFilter

# ---------------------------------------------------------------- mirrored from Home Assistant

# mqtt/discovery.py
TOPIC_MATCHER = re.compile(
    r"(?P<component>\w+)/(?:(?P<node_id>[a-zA-Z0-9_-]+)/)"
    r"?(?P<object_id>[a-zA-Z0-9_-]+)/config"
)

# core.py and const.py
VALID_ENTITY_ID = re.compile(r"^(?!.+__)(?!_)[\da-z_]+(?<!_)\.(?!_)[\da-z_]+(?<!_)$")
MAX_LENGTH_STATE_ENTITY_ID = 255


def ha_entity_id(domain: str, config: dict[str, Any]) -> str:
    """The entity id Home Assistant makes for an MQTT entity with a device and a name
    (has_entity_name: "<device name> <name>", slugified by util/__init__.py slugify)."""
    friendly = f"{config['device']['name']} {config['name']}"
    slug = re.sub(r"[^a-z0-9]+", "_", friendly.lower()).strip("_")
    return f"{domain}.{slug}"[:MAX_LENGTH_STATE_ENTITY_ID]


# components/binary_sensor/__init__.py: BinarySensorDeviceClass
BINARY_SENSOR_DEVICE_CLASSES = [
    "battery", "battery_charging", "carbon_monoxide", "cold", "connectivity", "door",
    "garage_door", "gas", "heat", "light", "lock", "moisture", "motion", "moving",
    "occupancy", "opening", "plug", "power", "presence", "problem", "running", "safety",
    "smoke", "sound", "tamper", "update", "vibration", "window",
]  # fmt: skip

# helpers/template.py renders in a sandbox; StrictUndefined is stricter than Home Assistant
# (which logs and renders ""), so a template touching a missing variable fails here.
HA_JINJA = ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined)


def cv_string(value: Any) -> str:
    if value is None:
        raise vol.Invalid("string value is None")
    if isinstance(value, list | dict):
        raise vol.Invalid("value should be a string")
    return str(value)


def cv_boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.lower().strip()
        if text in ("1", "true", "yes", "on", "enable"):
            return True
        if text in ("0", "false", "no", "off", "disable"):
            return False
    elif isinstance(value, int | float):
        return value != 0
    raise vol.Invalid(f"invalid boolean value {value}")


def cv_ensure_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def cv_template(value: Any) -> str:
    if value is None:
        raise vol.Invalid("template value is None")
    if isinstance(value, list | dict):
        raise vol.Invalid("template value should be a string")
    try:
        HA_JINJA.parse(str(value))
    except jinja2.TemplateSyntaxError as err:
        raise vol.Invalid(f"invalid template ({err})") from err
    return str(value)


def cv_icon(value: Any) -> str:
    text = cv_string(value)
    if ":" in text:
        return text
    raise vol.Invalid('Icons should be specified in the form "prefix:name"')


def cv_url(value: Any) -> str:
    text = cv_string(value)
    parsed = urlparse(text)
    if parsed.scheme in ("http", "https") and parsed.netloc:
        return text
    raise vol.Invalid("invalid url")


def cv_configuration_url(value: Any) -> str:
    text = cv_string(value)
    return text if text.startswith("homeassistant://") else cv_url(text)


cv_positive_int = vol.All(vol.Coerce(int), vol.Range(min=0))


def valid_topic(topic: Any) -> str:
    """mqtt/util.py valid_topic."""
    text = cv_string(topic)
    raw = text.encode("utf-8")
    if not raw:
        raise vol.Invalid("MQTT topic name/filter must not be empty.")
    if len(raw) > 65535:
        raise vol.Invalid("MQTT topic name/filter must not be longer than 65535 encoded bytes.")
    for char in text:
        if char == "\0" or char <= "\u001f" or "\u007f" <= char <= "\u009f":
            raise vol.Invalid("MQTT topic name/filter must not contain control characters.")
        if "\ufdd0" <= char <= "\ufdef" or (ord(char) & 0xFFFF) in (0xFFFE, 0xFFFF):
            raise vol.Invalid("MQTT topic name/filter must not contain non-characters.")
    return text


def valid_subscribe_topic(topic: Any) -> str:
    """mqtt/util.py valid_subscribe_topic."""
    text = valid_topic(topic)
    for i in (i for i, c in enumerate(text) if c == "+"):
        if (i > 0 and text[i - 1] != "/") or (i < len(text) - 1 and text[i + 1] != "/"):
            raise vol.Invalid("Single-level wildcard must occupy an entire level of the filter")
    index = text.find("#")
    if index != -1:
        if index != len(text) - 1:
            raise vol.Invalid("Multi-level wildcard must be the last character in the filter.")
        if len(text) > 1 and text[index - 1] != "/":
            raise vol.Invalid("Multi-level wildcard must be after a topic level separator.")
    return text


valid_qos_schema = vol.All(vol.Coerce(int), vol.In([0, 1, 2]))


def validate_device_has_at_least_one_identifier(value: dict[str, Any]) -> dict[str, Any]:
    if value.get("identifiers") or value.get("connections"):
        return value
    raise vol.Invalid("Device must have at least one identifying value")


# mqtt/config.py
MQTT_RO_SCHEMA = vol.Schema(
    {
        vol.Optional("qos", default=0): valid_qos_schema,
        vol.Optional("encoding", default="utf-8"): cv_string,
        vol.Optional("group"): vol.All(cv_ensure_list, [cv_string]),
        vol.Required("state_topic"): valid_subscribe_topic,
        vol.Optional("value_template"): cv_template,
    }
)

# mqtt/schemas.py
MQTT_AVAILABILITY_SCHEMA = vol.Schema(
    {
        vol.Exclusive("availability_topic", "availability"): valid_subscribe_topic,
        vol.Optional("availability_template"): cv_template,
        vol.Optional("payload_available", default="online"): cv_string,
        vol.Optional("payload_not_available", default="offline"): cv_string,
        vol.Optional("availability_mode", default="latest"): vol.All(
            cv_string, vol.In(["all", "any", "latest"])
        ),
        vol.Exclusive("availability", "availability"): vol.All(
            cv_ensure_list,
            [
                {
                    vol.Required("topic"): valid_subscribe_topic,
                    vol.Optional("payload_available", default="online"): cv_string,
                    vol.Optional("payload_not_available", default="offline"): cv_string,
                    vol.Optional("value_template"): cv_template,
                }
            ],
        ),
    }
)

# (HA first turns the deprecated via_hub into via_device; sensord sends neither.)
MQTT_ENTITY_DEVICE_INFO_SCHEMA = vol.All(
    vol.Schema(
        {
            vol.Optional("identifiers", default=list): vol.All(cv_ensure_list, [cv_string]),
            vol.Optional("connections", default=list): vol.All(
                cv_ensure_list, [vol.All(vol.Length(2), [cv_string])]
            ),
            vol.Optional("manufacturer"): cv_string,
            vol.Optional("model"): cv_string,
            vol.Optional("model_id"): cv_string,
            vol.Optional("name"): cv_string,
            vol.Optional("hw_version"): cv_string,
            vol.Optional("serial_number"): cv_string,
            vol.Optional("sw_version"): cv_string,
            vol.Optional("via_device"): cv_string,
            vol.Optional("suggested_area"): cv_string,
            vol.Optional("configuration_url"): cv_configuration_url,
        }
    ),
    validate_device_has_at_least_one_identifier,
)

MQTT_ORIGIN_INFO_SCHEMA = vol.Schema(
    {
        vol.Required("name"): cv_string,
        vol.Optional("sw_version"): cv_string,
        vol.Optional("support_url"): cv_configuration_url,
    }
)

MQTT_ENTITY_COMMON_SCHEMA = MQTT_AVAILABILITY_SCHEMA.extend(
    {
        vol.Optional("device"): MQTT_ENTITY_DEVICE_INFO_SCHEMA,
        vol.Optional("entity_picture"): cv_url,
        vol.Optional("origin"): MQTT_ORIGIN_INFO_SCHEMA,
        vol.Optional("enabled_by_default", default=True): cv_boolean,
        vol.Optional("entity_category"): vol.In(["config", "diagnostic"]),
        vol.Optional("icon"): cv_icon,
        vol.Optional("json_attributes_topic"): valid_subscribe_topic,
        vol.Optional("json_attributes_template"): cv_template,
        vol.Optional("default_entity_id"): cv_string,
        # HA also takes a time-period dict here; sensord sends none.
        vol.Optional("message_expiry_interval"): cv_positive_int,
        vol.Optional("unique_id"): cv_string,
        vol.Optional("visible_by_default", default=True): cv_boolean,
    }
)

# mqtt/binary_sensor.py
PLATFORM_SCHEMA_MODERN = MQTT_RO_SCHEMA.extend(
    {
        vol.Optional("device_class"): vol.Any(
            vol.All(vol.Lower, vol.In(BINARY_SENSOR_DEVICE_CLASSES)), None
        ),
        vol.Optional("expire_after"): cv_positive_int,
        vol.Optional("force_update", default=False): cv_boolean,
        vol.Optional("name"): vol.Any(cv_string, None),
        vol.Optional("off_delay"): cv_positive_int,
        vol.Optional("payload_off", default="OFF"): cv_string,
        vol.Optional("payload_on", default="ON"): cv_string,
    }
).extend(MQTT_ENTITY_COMMON_SCHEMA.schema)

DISCOVERY_SCHEMA = PLATFORM_SCHEMA_MODERN.extend({}, extra=vol.PREVENT_EXTRA)

# mqtt/sensor.py (_PLATFORM_SCHEMA_BASE; HA removes unknown keys, the mirror refuses them)
SENSOR_STATE_CLASSES = ["measurement", "measurement_angle", "total", "total_increasing"]
SENSOR_DISCOVERY_SCHEMA = (
    MQTT_RO_SCHEMA.extend(
        {
            vol.Optional("device_class"): vol.Any(cv_string, None),
            vol.Optional("expire_after"): cv_positive_int,
            vol.Optional("force_update", default=False): cv_boolean,
            vol.Optional("last_reset_value_template"): cv_template,
            vol.Optional("name"): vol.Any(cv_string, None),
            vol.Optional("options"): cv_ensure_list,
            vol.Optional("suggested_display_precision"): cv_positive_int,
            vol.Optional("state_class"): vol.Any(vol.In(SENSOR_STATE_CLASSES), None),
            vol.Optional("unit_of_measurement"): vol.Any(cv_string, None),
        }
    )
    .extend(MQTT_ENTITY_COMMON_SCHEMA.schema)
    .extend({}, extra=vol.PREVENT_EXTRA)
)


def ha_sensor_state(config: dict[str, Any], payload: bytes) -> str | None:
    """What MqttSensor makes of a state message: the rendered value, None for "None"
    (unknown)."""
    variables: dict[str, Any] = {"value": payload.decode(config["encoding"])}
    with contextlib.suppress(ValueError):
        variables["value_json"] = orjson.loads(payload)
    rendered = HA_JINJA.from_string(config["value_template"]).render(variables).strip()
    return None if rendered == "None" else rendered


def ha_receive_discovery(
    discovery_prefix: str, topic: str, payload: bytes
) -> tuple[tuple[str, str | None, str], dict[str, Any]]:
    """What mqtt/discovery.py makes of a message: (component, node_id, object_id), config."""
    subscriptions = [
        TopicFilter(f"{discovery_prefix}/binary_sensor/+/config"),
        TopicFilter(f"{discovery_prefix}/binary_sensor/+/+/config"),
    ]
    assert any(f.match(topic) is not None for f in subscriptions), "HA is not subscribed"
    match = TOPIC_MATCHER.match(topic.replace(f"{discovery_prefix}/", "", 1))
    assert match is not None, "HA would log 'illegal discovery topic'"
    config = orjson.loads(payload) if payload else {}
    assert isinstance(config, dict), "HA's json_loads_object refuses anything but an object"
    component, node, obj = match.groups()
    return (component, node, obj), config


def ha_binary_sensor_state(config: dict[str, Any], payload: bytes) -> bool | None:
    """What MqttBinarySensor._state_message_received makes of a state message."""
    value = payload.decode(config["encoding"])
    variables: dict[str, Any] = {"value": value}
    with contextlib.suppress(ValueError):
        variables["value_json"] = orjson.loads(value)
    rendered = HA_JINJA.from_string(config["value_template"]).render(variables).strip()
    if rendered == config["payload_on"]:
        return True
    if rendered == config["payload_off"]:
        return False
    raise AssertionError(f"no matching payload: {rendered!r} (HA ignores the message)")


# ---------------------------------------------------------------- what sensord publishes

PREFIX = "sensord"
NODE = node_id("sensord")
STREAM = "boiler.t1"
STATUSES = ("warming_up", "normal", "alert", "evicted")


def payload(
    *, prefix: str = PREFIX, node: str = NODE, stream: str = STREAM, sw: str = "0.1.0"
) -> bytes:
    return discovery_payload(prefix=prefix, node=node, stream=stream, sw_version=sw)


def config(**kwargs: Any) -> dict[str, Any]:
    parsed = orjson.loads(payload(**kwargs))
    assert isinstance(parsed, dict)
    return parsed


def state(status: str, **extra: Any) -> bytes:
    """A state message exactly as sensord.wire.published writes it, plus keys a later change
    may add."""
    raw = state_payload(
        stream=STREAM,
        status=status,
        since=1_795_341_600.0,
        route="temp",
        model="temp",
        model_version="abc",
        alert_id="a1b2" if status == "alert" else None,
    )
    return orjson.dumps({**orjson.loads(raw), **extra})


# ---------------------------------------------------------------- the payload


def test_payload_is_a_valid_binary_sensor_discovery_config() -> None:
    validated = DISCOVERY_SCHEMA(config())
    assert validated["device_class"] == "problem"
    assert validated["qos"] == 1
    assert (validated["payload_on"], validated["payload_off"]) == ("ON", "OFF")
    assert (validated["name"], validated["device"]["name"]) == ("Anomaly", STREAM)


def test_payload_reads_what_sensord_publishes() -> None:
    cfg = config(prefix="site/a")
    assert cfg["state_topic"] == state_topic("site/a", STREAM)
    assert cfg["json_attributes_topic"] == state_topic("site/a", STREAM)
    # available only while sensord is online and the stream is not silent
    assert cfg["availability_mode"] == "all"
    assert [a["topic"] for a in cfg["availability"]] == [
        status_topic("site/a"),
        availability_topic("site/a", STREAM),
    ]
    for entry in cfg["availability"]:
        assert entry["payload_available"].encode() == ONLINE
        assert entry["payload_not_available"].encode() == OFFLINE


def test_each_stream_is_a_device_reached_through_the_instance() -> None:
    devices = [config(stream=s)["device"] for s in ("boiler.t1", "pump:p2", "x")]
    assert len({d["identifiers"][0] for d in devices}) == 3
    assert [d["name"] for d in devices] == ["boiler.t1", "pump:p2", "x"]
    bridge = orjson.loads(bridge_payload(prefix=PREFIX, node=NODE, sw_version="0.1.0"))
    validated = DISCOVERY_SCHEMA(bridge)
    assert validated["device_class"] == "connectivity"
    assert {d["via_device"] for d in devices} == {bridge["device"]["identifiers"][0]}
    assert bridge["state_topic"] == status_topic(PREFIX)
    assert (bridge["payload_on"].encode(), bridge["payload_off"].encode()) == (ONLINE, OFFLINE)
    other = config(node=node_id("plant-b"))["device"]
    assert other["identifiers"] != devices[0]["identifiers"]
    assert config()["origin"] == {"name": "sensord", "sw_version": "0.1.0"}


def test_a_stream_named_bridge_does_not_take_the_instances_topic() -> None:
    assert discovery_topic("homeassistant", NODE, "bridge") != bridge_topic("homeassistant", NODE)
    assert (
        config(stream="bridge")["unique_id"]
        != orjson.loads(bridge_payload(prefix=PREFIX, node=NODE, sw_version="0.1.0"))["unique_id"]
    )


def test_unique_ids_are_stable_and_distinct() -> None:
    assert config()["unique_id"] == config()["unique_id"]
    pairs = [("sensord", "2_x"), ("sensord_2", "x"), ("sensord", "a.b"), ("sensord", "a_b")]
    ids = {config(node=node_id(n), stream=s)["unique_id"] for n, s in pairs}
    assert len(ids) == len(pairs)


@pytest.mark.parametrize(
    ("client", "stream"),
    [("sensord", "boiler.t1"), ("Plant-A", "Hall:T--1"), ("...", "a:::"), ("c" * 128, "s" * 128)],
)
def test_the_entity_id_home_assistant_makes_is_valid(client: str, stream: str) -> None:
    entity_id = ha_entity_id("binary_sensor", config(node=node_id(client), stream=stream))
    assert VALID_ENTITY_ID.match(entity_id), entity_id


def test_names_read_well_with_nothing_said_twice() -> None:
    """What the issue saw: entity binary_sensor.sensord_sensord_eco_sim_0000 shown as
    "sensord sensord-eco sim-0000"."""
    cfg = config(node=node_id("sensord-eco"), stream="sim-0000")
    assert f"{cfg['device']['name']} {cfg['name']}" == "sim-0000 Anomaly"
    assert ha_entity_id("binary_sensor", cfg) == "binary_sensor.sim_0000_anomaly"
    assert "default_entity_id" not in cfg  # ignored before HA 2025.10, misbehaving in 2025.11
    bridge = orjson.loads(bridge_payload(prefix=PREFIX, node="sensord-eco", sw_version="1"))
    assert f"{bridge['device']['name']} {bridge['name']}" == "sensord-eco Connection"
    plain = orjson.loads(bridge_payload(prefix=PREFIX, node="plant-b", sw_version="1"))
    assert plain["device"]["name"] == "sensord plant-b"


def test_payload_is_deterministic() -> None:
    assert payload() == payload()
    assert payload(sw="0.2.0") != payload()


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(
            lambda c: c.update(object_id="boiler_t1"), id="object_id stopped working in 2026.4"
        ),
        pytest.param(lambda c: c.pop("state_topic"), id="state_topic is required"),
        pytest.param(
            lambda c: c.update(device_class="anomaly"), id="not a binary sensor device class"
        ),
        pytest.param(lambda c: c.update(qos=3), id="qos is 0, 1 or 2"),
        pytest.param(
            lambda c: c["availability"][1].update(topic="sensord/#/x"),
            id="not a subscribable topic",
        ),
        pytest.param(lambda c: c.update(availability_topic="a"), id="availability is exclusive"),
        pytest.param(lambda c: c.update(availability_mode="most"), id="all, any or latest"),
        pytest.param(lambda c: c["device"].pop("identifiers"), id="a device needs an identifier"),
        pytest.param(
            lambda c: c["device"].update(mdl="x"), id="abbreviations are expanded before this"
        ),
        pytest.param(lambda c: c["origin"].pop("name"), id="origin needs a name"),
        pytest.param(lambda c: c.update(value_template="{{ 'ON' if }}"), id="template syntax"),
    ],
)
def test_the_mirrored_schema_refuses_what_home_assistant_refuses(
    mutate: Callable[[dict[str, Any]], object],
) -> None:
    cfg = config()
    mutate(cfg)
    with pytest.raises(vol.Invalid):
        DISCOVERY_SCHEMA(cfg)


# ---------------------------------------------------------------- the value template


@pytest.mark.parametrize("status", STATUSES)
def test_value_template_is_on_only_for_alert(status: str) -> None:
    cfg = DISCOVERY_SCHEMA(config())
    assert ha_binary_sensor_state(cfg, state(status)) is (status == "alert")


@pytest.mark.parametrize("status", STATUSES)
def test_value_template_looks_at_status_alone(status: str) -> None:
    cfg = DISCOVERY_SCHEMA(config())
    later = state(status, feedback={"verdict": "alert", "by": "op"}, nodata=True)
    assert ha_binary_sensor_state(cfg, later) is (status == "alert")


@pytest.mark.parametrize(
    "raw", [b"", b"not json", b'"alert"', b'["alert"]', b'{"stream": "x"}', b'{"status": "ALERT"}']
)
def test_value_template_reads_anything_else_as_off(raw: bytes) -> None:
    assert ha_binary_sensor_state(DISCOVERY_SCHEMA(config()), raw) is False


# ---------------------------------------------------------------- topics and ids


@pytest.mark.parametrize("discovery_prefix", [DEFAULT_DISCOVERY_PREFIX, "ha/discovery"])
@pytest.mark.parametrize("stream", ["boiler.t1", "pump_2", "a:b-c"])
def test_topic_is_one_home_assistant_subscribes_to_and_parses(
    discovery_prefix: str, stream: str
) -> None:
    topic = discovery_topic(discovery_prefix, NODE, stream)
    ids, cfg = ha_receive_discovery(discovery_prefix, topic, payload(stream=stream))
    assert ids == ("binary_sensor", NODE, object_id(stream))
    assert topic == f"{discovery_prefix}/binary_sensor/{NODE}/{object_id(stream)}/config"
    DISCOVERY_SCHEMA(cfg)


def test_removal_payload_removes_the_entity() -> None:
    topic = discovery_topic(DEFAULT_DISCOVERY_PREFIX, NODE, STREAM)
    _, cfg = ha_receive_discovery(DEFAULT_DISCOVERY_PREFIX, topic, REMOVAL_PAYLOAD)
    assert cfg == {}  # an empty config is Home Assistant's "remove this entity"


def test_ids_already_safe_are_kept() -> None:
    assert object_id("pump_2-b") == "pump_2-b"
    assert node_id("sensord") == "sensord"


def test_sanitised_ids_are_stable() -> None:
    # Pinned: a change here would orphan every entity already in Home Assistant.
    assert object_id("a.b") == "a_b_2e7336dc"
    assert node_id("plant.a") == "plant_a_33ceeb09"


def test_look_alike_streams_do_not_collide() -> None:
    streams = ["a.b", "a_b", "a:b", "a-b", "a..b", "a._b", "a_.b", "a__b", "a.b.", "a.b_"]
    assert len({object_id(s) for s in streams}) == len(streams)


SAFE_IDS = st.from_regex(r"[A-Za-z0-9_.:-]{1,128}", fullmatch=True)


@given(st.lists(SAFE_IDS, unique=True, max_size=50))
def test_object_ids_are_topic_ids_and_collision_free(streams: list[str]) -> None:
    ids = [object_id(s) for s in streams]
    assert all(re.fullmatch(r"[a-zA-Z0-9_-]+", i) for i in ids)
    assert len(set(ids)) == len(ids)


UNSAFE_IDS = ["", "a/b", "a+b", "#", "$SYS", "a b", "é", "x" * 129, "a\0b"]


@pytest.mark.parametrize("bad", UNSAFE_IDS)
def test_unsafe_ids_raise(bad: str) -> None:
    with pytest.raises(ValueError):
        object_id(bad)
    with pytest.raises(ValueError):
        node_id(bad)
    with pytest.raises(ValueError):
        discovery_topic(DEFAULT_DISCOVERY_PREFIX, NODE, bad)
    with pytest.raises(ValueError):
        payload(stream=bad)


@pytest.mark.parametrize("bad", ["", "/ha", "ha/", "ha//x", "ha/+", "ha/#", "$SYS"])
def test_unsafe_prefixes_raise(bad: str) -> None:
    with pytest.raises(ValueError):
        discovery_topic(bad, NODE, STREAM)
    with pytest.raises(ValueError):
        payload(prefix=bad)


@pytest.mark.parametrize("bad", ["", "plant.a", "a:b", "a/b"])
def test_raw_node_ids_raise(bad: str) -> None:
    with pytest.raises(ValueError):
        discovery_topic(DEFAULT_DISCOVERY_PREFIX, bad, STREAM)
    with pytest.raises(ValueError):
        payload(node=bad)


def test_the_score_is_a_sensor_beside_the_anomaly_on_the_same_device() -> None:
    score = orjson.loads(score_payload(prefix=PREFIX, node=NODE, stream=STREAM, sw_version="1"))
    validated = SENSOR_DISCOVERY_SCHEMA(score)
    anomaly = config(sw="1")
    assert score["device"] == anomaly["device"] and validated["name"] == "Anomaly score"
    assert validated["unique_id"] != anomaly["unique_id"]
    assert validated["availability"] == anomaly["availability"]
    assert ha_entity_id("sensor", validated) == "sensor.boiler_t1_anomaly_score"
    assert score_topic("homeassistant", NODE, STREAM) == (
        f"homeassistant/sensor/{NODE}/{object_id(STREAM)}/config"
    )
    with_score = state("alert", score=0.9731, value={"value": 30.1})
    assert ha_sensor_state(validated, with_score) == "0.9731"
    assert ha_sensor_state(validated, state("warming_up", score=None)) is None  # unknown
    assert ha_sensor_state(validated, b"garbage") is None
