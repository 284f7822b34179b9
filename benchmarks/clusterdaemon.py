"""The single daemon a cluster member is measured against (benchmarks/cluster.py), on the
same backlog, in the same round:

- **in-process**: the daemon's own loop (``Daemon.process``) on the backlog's readings in
  the order the engine's log holds them, in batches of ``max_batch``, no network (as
  benchmarks/operating.py measures it): this process's CPU per reading after a warm-up;
- **in-process, outlet live**: the same, its MQTT connection up (to a Mosquitto started
  for it) and each batch followed by what the loop does with it every turn (read the
  broker's PUBACKs, flush retained states, write): a daemon's cost but for reading its
  input, the part a member reads from the engine instead;
- **on Mosquitto**: ``sensord run`` in single-node mode draining the same number of
  readings (``S`` streams x ``R``, QoS 1) from a Mosquitto started for it: the daemon
  process's CPU per reading from 5 % to 95 % of the drain (benchmarks/children.py), paho's
  reads and acknowledgements included, as a member's figure includes nats-py's.

All score with the member's settings but ``[cluster]`` (nodata off), so what differs is
where readings come from and how they are acknowledged (a single daemon also journals).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from benchmarks.children import DaemonProcess, Drain, publish
from benchmarks.traffic import FILTER
from sensord.cli.broker import free_port, start_mosquitto
from sensord.config import Settings
from sensord.config.sections import BatchingSettings
from sensord.daemon.loop import Daemon
from sensord.daemon.transport import Message

T0, STEP = 1_700_000_000.0, 300.0  # the backlog's first timestamp and its step
WARM_BATCHES = 20
BROKER_CONFIG = "max_queued_messages 0\nmax_inflight_messages 512\n"


def payload(stream: int, step: int) -> bytes:
    """A reading as benchmarks/cluster.py publishes it into the engine."""
    return orjson.dumps({"value": float((step * 7 + stream) % 13) / 13.0, "ts": T0 + step * STEP})


def log_order(streams: int, per_stream: int, batch: int) -> Iterator[list[Message]]:
    """The backlog as the engine's log holds it (every stream's step k, then k + 1), in
    batches; acknowledgements go nowhere (a session that is not the current one)."""
    out: list[Message] = []
    now = time.time()
    for step in range(per_stream):
        for stream in range(streams):
            topic = f"sensors/s{stream:05d}/value"
            out.append(Message(topic, payload(stream, step), now, 1, len(out) + 1, -1))
            if len(out) == batch:
                yield out
                out = []
    if out:
        yield out


def inprocess_us(bundle: Path, streams: int, per_stream: int, outlet: bool = False) -> float:
    """The loop's CPU per reading (µs) over the backlog, after WARM_BATCHES batches (half
    of them in a small run); with ``outlet``, its MQTT connection live (see above)."""
    batch = BatchingSettings().max_batch
    warm = min(WARM_BATCHES, -(-streams * per_stream // batch) // 2)
    broker = start_mosquitto(extra_config=BROKER_CONFIG) if outlet else None
    with tempfile.TemporaryDirectory() as state:
        daemon = Daemon(
            Settings(
                mqtt={"host": "127.0.0.1", "port": broker.port if broker else 1},
                routes=[{"topic": "sensors/+/value", "bundle": str(bundle)}],
                state={"dir": state, "snapshot_interval_s": 0},
                nodata={"enabled": False},
            )
        )
        if broker is not None:
            daemon.mqtt.start()
            while not daemon.mqtt.link.connected.is_set():
                daemon.mqtt.poll(0.05)
        cpu, readings = 0.0, 0
        for index, work in enumerate(log_order(streams, per_stream, batch)):
            started = time.process_time()
            daemon.process(work)
            if broker is not None:  # the rest of the loop's turn
                daemon.mqtt.poll(0.0)
                daemon.states.flush()
                daemon.mqtt.write()
            if index >= warm:
                cpu += time.process_time() - started
                readings += len(work)
        daemon.durable.close()
        if broker is not None:
            daemon.mqtt.stop()
            broker.stop()
    return 1e6 * cpu / max(readings, 1)


def mosquitto_drain(bundle: Path, streams: int, per_stream: int, folder: Path) -> Drain:
    """``sensord run`` draining ``streams x per_stream`` readings from Mosquitto."""
    folder.mkdir(parents=True, exist_ok=True)
    readings = streams * per_stream
    broker = start_mosquitto(extra_config=BROKER_CONFIG)
    try:
        port = free_port()
        config = folder / "sensord.toml"
        config.write_text(
            f'[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\nclient_id = "bench-single"\n'
            f'[state]\ndir = "{folder / "state"}"\n'
            f'[metrics]\nhost = "127.0.0.1"\nport = {port}\n'
            "[nodata]\nenabled = false\n"
            f'[[routes]]\ntopic = "{FILTER}"\nbundle = "{bundle}"\n'
        )
        daemon = DaemonProcess(config, port, folder / "daemon.log")
        daemon.start()  # its session and subscription, then away while the backlog queues
        daemon.stop()
        publish(broker.port, streams, readings)
        daemon.start()
        try:
            return daemon.drain(readings)
        finally:
            daemon.stop()
    finally:
        broker.stop()


@dataclass
class Single:
    """A single daemon's CPU per reading (µs) on a round's backlog."""

    round: int
    inprocess_us: float
    outlet_us: float
    mosquitto_us: float | None


def single_daemon(
    round_: int, bundle: Path, streams: int, per_stream: int, *, mosquitto: bool, folder: Path
) -> Single:
    on_mosquitto = None
    if mosquitto:
        drain = mosquitto_drain(bundle, streams, per_stream, folder / f"r{round_}-single")
        on_mosquitto = 1e6 * drain.cpu_s / drain.messages
    return Single(
        round_,
        inprocess_us(bundle, streams, per_stream),
        inprocess_us(bundle, streams, per_stream, outlet=True),
        on_mosquitto,
    )


def versus(member_us: Sequence[tuple[int, float]], singles: dict[int, Single]) -> dict[str, Any]:
    """Members' CPU per reading (round, µs) over a single daemon's, same round (medians)."""
    inprocess = [us / singles[r].inprocess_us for r, us in member_us]
    outlet = [us / singles[r].outlet_us for r, us in member_us]
    mosquitto = [us / m for r, us in member_us if (m := singles[r].mosquitto_us)]
    return {
        "member_cpu_us": round(statistics.median(us for _, us in member_us), 2),
        "vs_single_inprocess": round(statistics.median(inprocess), 3),
        "vs_single_outlet": round(statistics.median(outlet), 3),
        "vs_single_mosquitto": round(statistics.median(mosquitto), 3) if mosquitto else None,
    }


def print_versus(rows: list[dict[str, Any]], singles: dict[int, Single]) -> None:
    inprocess = statistics.median(s.inprocess_us for s in singles.values())
    outlet = statistics.median(s.outlet_us for s in singles.values())
    mosquitto = [s.mosquitto_us for s in singles.values() if s.mosquitto_us is not None]
    on_mosquitto = f", on Mosquitto {statistics.median(mosquitto):.2f}" if mosquitto else ""
    print(
        "\nCPU per reading against a single daemon on the same backlog (same round), µs: "
        f"in-process {inprocess:.2f}, in-process with its outlet live {outlet:.2f}"
        f"{on_mosquitto}\n\n"
        "| members | members' CPU µs/reading | vs in-process | vs outlet live "
        "| vs on Mosquitto |\n|---|---|---|---|---|"
    )
    for r in rows:
        against = "-" if r["vs_single_mosquitto"] is None else f"{r['vs_single_mosquitto']:.2f}"
        print(
            f"| {r['members']} | {r['member_cpu_us']:.2f} | {r['vs_single_inprocess']:.2f} "
            f"| {r['vs_single_outlet']:.2f} | {against} |"
        )
