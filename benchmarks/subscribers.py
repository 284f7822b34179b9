"""The two yardsticks sensord is measured against, each a process of its own.

``python -m benchmarks.subscribers KIND --port P --client-id ID --phase subscribe|drain``:

- ``limit``: a paho subscriber that only counts messages: the most any paho-based daemon
  can take off the socket.
- ``naive``: what a tutorial would write: a paho subscriber that steps the torch LSTM once
  per message inside ``on_message``, each stream's ``(h, c)`` and last prediction in a dict,
  and publishes an alert when the error passes a fixed threshold (``torch.no_grad``, one
  torch thread: its best case here). It runs the same trained
  network as sensord's bundle (``--weights``, loaded with ``weights_only=True``).

Both keep a persistent MQTT 5 session with a QoS 1 subscription to the benchmark's topics.
``--phase subscribe`` creates the session and leaves, so the broker keeps what is published
next; ``--phase drain --expect N`` comes back, takes the N queued messages and prints one
JSON line: wall time and this process's CPU time when 5 % and 95 % of them had arrived.

``--phase live`` (limit only) takes live traffic: it prints ``subscribed`` once its
subscription is acknowledged, notes its count at every line it reads on stdin (the
benchmark's window marks; it reads this process's CPU from /proc at the same moments), and
at the end of stdin disconnects and prints ``{"count": N, "marks": [...]}``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from benchmarks.traffic import FILTER

SESSION_EXPIRY_S = 3600
STALL_TIMEOUT_S = 60.0
Handler = Callable[[paho.Client, paho.MQTTMessage], None]


@dataclass
class Progress:
    """Wall and CPU times at the 5 % and 95 % marks of a drain."""

    expect: int
    count: int = 0
    t5: float = math.nan
    cpu5: float = math.nan
    t95: float = math.nan
    cpu95: float = math.nan
    t_done: float = math.nan

    def tick(self) -> bool:
        """Count one message; True when all expected messages have arrived."""
        self.count += 1
        if self.count == max(1, self.expect // 20):
            self.t5, self.cpu5 = time.time(), time.process_time()
        if self.count == self.expect - self.expect // 20:
            self.t95, self.cpu95 = time.time(), time.process_time()
        if self.count >= self.expect:
            self.t_done = time.time()
            return True
        return False


def connect(
    client_id: str, host: str, port: int, on_message: Handler
) -> tuple[paho.Client, threading.Event]:
    client = paho.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=MQTTProtocolVersion.MQTTv5,
    )
    subscribed = threading.Event()
    client.on_subscribe = lambda *_: subscribed.set()
    client.on_message = lambda c, _userdata, message: on_message(c, message)
    properties = Properties(PacketTypes.CONNECT)
    properties.SessionExpiryInterval = SESSION_EXPIRY_S
    client.connect(host, port, clean_start=False, properties=properties)
    client.subscribe(FILTER, qos=1)
    return client, subscribed


def run(kind: str, args: argparse.Namespace) -> Progress:
    progress = Progress(args.expect)
    step = (
        counting
        if kind == "limit" or args.phase == "subscribe"
        else naive_step(args.bundle, args.weights)
    )

    def on_message(client: paho.Client, message: paho.MQTTMessage) -> None:
        step(client, message)
        if progress.tick():
            client.disconnect()

    client, subscribed = connect(args.client_id, args.host, args.port, on_message)
    if args.phase == "subscribe":
        client.loop_start()
        subscribed.wait(timeout=10)
        client.disconnect()
        client.loop_stop()
        return progress
    watchdog = threading.Thread(target=_stall_guard, args=(client, progress), daemon=True)
    watchdog.start()
    client.loop_forever()
    return progress


def live(args: argparse.Namespace) -> dict[str, object]:
    """Count live messages until stdin ends, noting the count at each line read."""
    count = [0]  # (a list: the callback adds to it in place)
    marks: list[int] = []

    def on_message(client: paho.Client, message: paho.MQTTMessage) -> None:
        count[0] += 1

    client, subscribed = connect(args.client_id, args.host, args.port, on_message)

    def follow_stdin() -> None:
        # A thread blocked on stdin costs nothing between the marks; the loop stays the
        # stock loop_forever the drains measure.
        if not subscribed.wait(timeout=10):
            client.disconnect()  # the benchmark reads the report instead, and fails
            return
        sys.stdout.write("subscribed\n")
        sys.stdout.flush()
        for _line in sys.stdin:
            marks.append(count[0])
        client.disconnect()

    threading.Thread(target=follow_stdin, daemon=True).start()
    client.loop_forever()
    return {"count": count[0], "marks": marks}


def counting(client: paho.Client, message: paho.MQTTMessage) -> None:
    """The limit: nothing but the count."""


def naive_step(bundle_dir: Path, weights: Path) -> Handler:
    """The tutorial daemon: one torch LSTM step per message, state in a dict."""
    import torch

    from sensord.core.bundle import load_bundle
    from sensord.training.model import Forecaster

    # One torch thread: measured the same rate as torch's default pool here, at half the
    # CPU (the pool spins a second core for a 2x64 step), so the comparison is fair to it.
    torch.set_num_threads(1)
    manifest = load_bundle(bundle_dir).manifest
    extra = len(manifest.time_features)
    model = Forecaster(len(manifest.features), manifest.hidden, manifest.layers, 0.0, extra)
    model.load_state_dict(torch.load(weights, weights_only=True))
    model.eval()
    center, scale = manifest.scaling.center[0], manifest.scaling.scale[0]
    calibration = manifest.calibration
    limit = math.exp(calibration.log_error_mean + 4 * calibration.log_error_std)
    states: dict[str, tuple[torch.Tensor, torch.Tensor, float]] = {}

    def step(client: paho.Client, message: paho.MQTTMessage) -> None:
        data = json.loads(message.payload)
        stream = message.topic.split("/")[1]
        value = (data["value"] - center) / scale
        phase = 2 * math.pi * (data["ts"] % 86400) / 86400
        inputs = [value, math.sin(phase), math.cos(phase)][: 1 + extra]
        x = torch.tensor([[inputs]], dtype=torch.float32)
        state = states.get(stream)
        with torch.no_grad():
            prediction, (h, c) = model(x, None if state is None else (state[0], state[1]))
        if state is not None and abs(value - state[2]) > limit:
            alert = {"stream": stream, "value": data["value"], "ts": data["ts"]}
            client.publish(f"naive/alerts/{stream}", json.dumps(alert), qos=1)
        states[stream] = (h, c, float(prediction[0, 0, 0]))

    return step


def _stall_guard(client: paho.Client, progress: Progress) -> None:
    """End a drain that stopped making progress (a broken run must not hang the benchmark)."""
    last, last_change = -1, time.monotonic()
    while True:
        time.sleep(1.0)
        if progress.count != last:
            last, last_change = progress.count, time.monotonic()
        elif time.monotonic() - last_change > STALL_TIMEOUT_S:
            client.disconnect()
            return


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=["limit", "naive"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--phase", choices=["subscribe", "drain", "live"], required=True)
    parser.add_argument("--expect", type=int, default=0)
    parser.add_argument("--bundle", type=Path, help="naive: the bundle (scaling, calibration)")
    parser.add_argument("--weights", type=Path, help="naive: the torch state dict")
    args = parser.parse_args(argv)
    if args.kind == "naive" and args.phase == "drain" and (not args.bundle or not args.weights):
        parser.error("naive needs --bundle and --weights")
    if args.phase == "live":
        if args.kind != "limit":
            parser.error("only limit takes live traffic")
        sys.stdout.write(json.dumps(live(args)) + "\n")
        return 0
    progress = run(args.kind, args)
    sys.stdout.write(json.dumps(asdict(progress)) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
