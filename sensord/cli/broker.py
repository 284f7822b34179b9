"""A local MQTT broker for the demo and the tests: Mosquitto if installed, else amqtt.

Mosquitto is started as a child process on a free loopback port with a config of its own
(never the system broker's). Where no Mosquitto binary exists, an embedded amqtt broker
(pure Python, MQTT 3.1.1 only) runs in a thread instead, so the demo still works.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import logging
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sensord.errors import SensordError

START_TIMEOUT_S = 10.0


@dataclass
class LocalBroker:
    """A broker this process started; ``stop()`` ends it."""

    host: str
    port: int
    protocol: str  # the newest MQTT version it speaks: "5" or "3.1.1"
    kind: str
    _stop: Callable[[], None] = field(repr=False)

    def stop(self) -> None:
        self._stop()


def terminate(process: subprocess.Popen[bytes], timeout_s: float = 10.0) -> None:
    """Stop a child process: SIGTERM, then SIGKILL if it has not exited within timeout_s."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def answers(host: str, port: int, timeout_s: float = 0.5) -> bool:
    """True if something accepts TCP connections at host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def system_binary(name: str) -> str | None:
    """A server binary on PATH, or in the sbin folders Debian installs servers to (often not
    on a non-root PATH)."""
    found = shutil.which(name)
    if found:
        return found
    for folder in ("/usr/sbin", "/usr/local/sbin"):
        if (Path(folder) / name).is_file():
            return str(Path(folder) / name)
    return None


def mosquitto_binary() -> str | None:
    return system_binary("mosquitto")


# Mosquitto drops QoS 1/2 messages for a client once more than max_queued_messages (default
# 1000) wait for it; a broker that is only a demo's or a test's keeps them all instead.
LOCAL_BROKER_CONFIG = "max_queued_messages 0\n"


def start_mosquitto(
    port: int | None = None, extra_config: str = LOCAL_BROKER_CONFIG
) -> LocalBroker:
    """Start Mosquitto on 127.0.0.1:port (default: a free port) with anonymous access."""
    binary = mosquitto_binary()
    if binary is None:
        raise SensordError("mosquitto is not installed (apt-get install mosquitto)")
    port = port or free_port()
    workdir = Path(tempfile.mkdtemp(prefix="sensord-mosquitto-"))
    config = workdir / "mosquitto.conf"
    config.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        # Started as root, Mosquitto would switch to its own user, who cannot write the log
        # in this private temp folder: stay as whoever started it.
        f"user {getpass.getuser()}\n"
        f"log_dest file {workdir / 'mosquitto.log'}\n{extra_config}"
    )
    process = subprocess.Popen(
        [binary, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )

    def stop() -> None:
        terminate(process, timeout_s=5)
        shutil.rmtree(workdir, ignore_errors=True)

    _wait_until_up(
        "127.0.0.1",
        port,
        lambda: process.poll() is not None,
        stop,
        f"mosquitto (see {workdir / 'mosquitto.log'})",
    )
    return LocalBroker("127.0.0.1", port, "5", "mosquitto", stop)


def start_amqtt(port: int | None = None) -> LocalBroker:
    """Start an embedded amqtt broker (MQTT 3.1.1) in a thread on 127.0.0.1:port."""
    try:
        from amqtt.broker import Broker
    except ImportError:
        raise SensordError(
            "no mosquitto and no amqtt: install one (apt-get install "
            "mosquitto, or pip install amqtt)"
        ) from None
    # amqtt logs every probe connection as a failure; only its own crashes matter here.
    logging.getLogger("amqtt").setLevel(logging.CRITICAL)
    port = port or free_port()
    config = {
        "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    }
    loop = asyncio.new_event_loop()
    stopped = threading.Event()
    made: list[Broker] = []

    def serve() -> None:
        asyncio.set_event_loop(loop)
        # Made in its own thread: amqtt makes futures on the calling thread's current loop,
        # and a thread that ran asyncio.run() before (the tests, a caller) has none.
        broker = Broker(config, loop=loop)
        made.append(broker)
        loop.run_until_complete(broker.start())
        loop.run_forever()
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.close()
        stopped.set()

    thread = threading.Thread(target=serve, name="amqtt-broker", daemon=True)
    thread.start()

    def stop() -> None:
        if thread.is_alive():
            if made:
                with contextlib.suppress(Exception):
                    asyncio.run_coroutine_threadsafe(made[0].shutdown(), loop).result(timeout=5)
            loop.call_soon_threadsafe(loop.stop)
        stopped.wait(timeout=5)

    _wait_until_up("127.0.0.1", port, lambda: not thread.is_alive(), stop, "amqtt")
    return LocalBroker("127.0.0.1", port, "3.1.1", "amqtt", stop)


def start_local_broker(port: int | None = None) -> LocalBroker:
    """Mosquitto if installed, else the embedded amqtt broker."""
    return start_mosquitto(port) if mosquitto_binary() else start_amqtt(port)


def _wait_until_up(
    host: str, port: int, died: Callable[[], bool], stop: Callable[[], None], what: str
) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if answers(host, port, 0.2):
            return
        if died():
            break
        time.sleep(0.05)
    with contextlib.suppress(Exception):
        stop()
    raise SensordError(f"{what} did not start listening on {host}:{port}")
