"""A local NATS server with JetStream for cluster mode's tests, benchmarks and demo.

Started as a child process on free loopback ports with a config and a store of its own
(never the system server on 4222); optionally with the partition mapping and the MQTT
gateway. ``stop`` and ``start`` again keep the store: the engine restarts with its streams
and buckets, as a real one does.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from sensord.cli.broker import answers, free_port, system_binary, terminate
from sensord.errors import SensordError

START_TIMEOUT_S = 15.0


def nats_binary() -> str | None:
    return system_binary("nats-server")


@dataclass
class LocalEngine:
    """A nats-server this process started (see the module's docstring)."""

    folder: Path
    port: int
    mqtt_port: int | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def config(self) -> Path:
        return self.folder / "nats.conf"

    def start(self) -> None:
        binary = nats_binary()
        if binary is None:
            raise SensordError("nats-server is not installed (apt-get install nats-server)")
        with (self.folder / "nats.log").open("ab") as log:
            self.process = subprocess.Popen(
                [binary, "-c", str(self.config)], stdout=log, stderr=log
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not answers("127.0.0.1", self.port):
            if time.monotonic() > deadline or self.process.poll() is not None:
                terminate(self.process)
                raise SensordError(
                    f"nats-server did not listen on {self.port}; see {self.folder / 'nats.log'}"
                )
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            terminate(self.process)
            self.process = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


def start_engine(
    mappings: dict[str, str] | None = None, mqtt: bool = False, extra_config: str = ""
) -> LocalEngine:
    """Start a nats-server with JetStream on a free port (and its MQTT gateway on another)."""
    folder = Path(tempfile.mkdtemp(prefix="sensord-nats-"))
    port = free_port()
    engine = LocalEngine(folder, port, free_port() if mqtt else None)
    lines = [
        f'server_name: "sensord-local-{port}"',
        f'listen: "127.0.0.1:{port}"',
        f'jetstream {{ store_dir: "{folder / "js"}" }}',
    ]
    if mappings:
        pairs = ", ".join(f'"{source}": "{target}"' for source, target in mappings.items())
        lines.append(f"mappings = {{ {pairs} }}")
    if engine.mqtt_port is not None:
        lines.append(f'mqtt {{ listen: "127.0.0.1:{engine.mqtt_port}" }}')
    engine.config.write_text("\n".join(lines) + "\n" + extra_config)
    engine.start()
    return engine
