"""A real nats-server with JetStream, started by the tests on free ports (never the system
one on 4222). With CI=true a missing nats-server fails the run instead of skipping."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from sensord.cli.broker import answers, free_port, terminate


@dataclass
class NatsServer:
    port: int
    store: Path
    config: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
        log = (self.store.parent / "nats.log").open("ab")
        self.process = subprocess.Popen([binary, "-c", str(self.config)], stdout=log, stderr=log)
        deadline = time.monotonic() + 15
        while not answers("127.0.0.1", self.port):
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"nats-server did not listen on {self.port}; see {log.name}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            terminate(self.process)
            self.process = None


def nats_binary() -> str | None:
    return shutil.which("nats-server") or (
        "/usr/sbin/nats-server" if os.path.exists("/usr/sbin/nats-server") else None
    )


def start_nats(extra_config: str = "") -> NatsServer:
    if nats_binary() is None:
        missing = "nats-server (apt-get install nats-server)"
        if os.environ.get("CI"):
            pytest.fail(f"CI requires {missing}")
        pytest.skip(f"needs {missing}")
    folder = Path(tempfile.mkdtemp(prefix="sensord-nats-"))
    port = free_port()
    config = folder / "nats.conf"
    config.write_text(
        f'server_name: "sensord-test-{port}"\nlisten: "127.0.0.1:{port}"\n'
        f'jetstream {{ store_dir: "{folder / "js"}" }}\n{extra_config}'
    )
    server = NatsServer(port, folder / "js", config)
    server.start()
    return server


@pytest.fixture
def nats_server() -> Iterator[NatsServer]:
    server = start_nats()
    yield server
    server.stop()
    shutil.rmtree(server.store.parent, ignore_errors=True)
