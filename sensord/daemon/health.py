"""Is the daemon healthy? The answer ``/healthz`` gives to systemd, Docker and Kubernetes.

Healthy means doing its job: connected to the broker, the network side moving (paho reads
or writes, or keeps the connection alive), and the scoring loop turning. Each check that
fails is a reason, in words an operator can act on; the HTTP edge answers 200 with none and
503 with them. The loop stamps a heartbeat on every turn (it turns at least every
``IDLE_WAIT_S`` when idle), so a loop stuck in a batch, a save or a deadlock shows here
within ``LOOP_STALL_S``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

LOOP_STALL_S = 10.0  # a loop that has not turned for this long is stuck


@dataclass
class Health:
    """What the daemon's parts report, read by the HTTP edge's thread."""

    connected: Callable[[], bool]
    network_moving: Callable[[float], bool]
    heartbeat: float = field(default_factory=time.monotonic)  # the loop's last turn
    stopping: bool = False
    # Cluster mode: whether the engine (NATS) connection is up; None in a single daemon.
    engine_connected: Callable[[], bool] | None = None

    def beat(self, now: float) -> None:
        self.heartbeat = now

    def check(self, now: float | None = None) -> tuple[bool, dict[str, Any]]:
        """(healthy, the JSON body): the reasons it is not, and what was looked at."""
        now = time.monotonic() if now is None else now
        loop_age = now - self.heartbeat
        reasons = []
        if self.stopping:
            reasons.append("stopping")
        if not self.connected():
            reasons.append("not connected to the MQTT broker")
        elif not self.network_moving(now):
            reasons.append("the MQTT connection has made no progress (reads, writes, pings)")
        if self.engine_connected is not None and not self.engine_connected():
            reasons.append("not connected to the cluster's engine (NATS)")
        if loop_age > LOOP_STALL_S:
            reasons.append(f"the scoring loop has not turned for {loop_age:.0f} s")
        body = {
            "status": "ok" if not reasons else "unhealthy",
            "reasons": reasons,
            "loop_turned_s_ago": round(loop_age, 3),
        }
        return not reasons, body

    def answer(self) -> tuple[str, dict[str, Any]]:
        """The HTTP status line and JSON body of ``/healthz`` (both HTTP edges serve it)."""
        ok, body = self.check()
        return ("200 OK" if ok else "503 Service Unavailable"), body
