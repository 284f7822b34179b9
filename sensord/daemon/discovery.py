"""Home Assistant discovery: which retained configs make each stream an anomaly binary
sensor and a score sensor on the sensord device, and which remove them.

The payloads are wire/homeassistant.py's; the publisher puts these through the retained
states (latest wins), each rendered only when it is sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import sensord
from sensord.daemon.delivery import Render
from sensord.wire.homeassistant import (
    bridge_payload,
    bridge_topic,
    discovery_payload,
    discovery_topic,
    score_payload,
    score_topic,
)


@dataclass(frozen=True)
class Discovery:
    """Where Home Assistant discovery goes: its prefix and this sensord's node id."""

    prefix: str
    node: str

    def stream(self, prefix: str, stream: str) -> list[tuple[str, Render]]:
        """The configs of a stream's two entities: the anomaly binary_sensor and the score
        sensor (``prefix``: sensord's own topics, where their states are)."""
        return [
            (
                topic_of(self.prefix, self.node, stream),
                partial(
                    payload_of,
                    prefix=prefix,
                    node=self.node,
                    stream=stream,
                    sw_version=sensord.__version__,
                ),
            )
            for topic_of, payload_of in (
                (discovery_topic, discovery_payload),
                (score_topic, score_payload),
            )
        ]

    def removed(self, stream: str) -> list[str]:
        """The config topics whose empty retained message removes a stream's entities."""
        return [
            discovery_topic(self.prefix, self.node, stream),
            score_topic(self.prefix, self.node, stream),
        ]

    def bridge(self, prefix: str) -> tuple[str, bytes]:
        """The config of the sensord instance itself (the device every stream is via)."""
        payload = bridge_payload(prefix=prefix, node=self.node, sw_version=sensord.__version__)
        return bridge_topic(self.prefix, self.node), payload
