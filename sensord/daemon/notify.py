"""systemd's notification protocol (sd_notify): READY, WATCHDOG, STATUS, RELOADING, STOPPING.

Written here rather than taken from a package: the protocol is one datagram to the socket in
``$NOTIFY_SOCKET``; the ``sdnotify`` package has not been maintained since 2017 and does not
handle abstract sockets, and ``systemd-python`` needs libsystemd headers to build. Without
``NOTIFY_SOCKET`` (not under systemd) every call does nothing.
"""

from __future__ import annotations

import os
import socket
import time


class Notifier:
    """Sends sd_notify messages if systemd asked for them."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        # A leading '@' means an abstract socket: its name starts with a NUL byte.
        self._address = "\0" + address[1:] if address.startswith("@") else address
        watchdog_usec = env.get("WATCHDOG_USEC", "")
        self.watchdog_interval = int(watchdog_usec) / 2e6 if watchdog_usec.isdigit() else None
        self._last_watchdog = 0.0

    @property
    def enabled(self) -> bool:
        return bool(self._address)

    def send(self, *fields: str) -> None:
        """Send ``KEY=value`` lines; errors are ignored (systemd may have gone)."""
        if not self._address:
            return
        message = "\n".join(fields).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(message, self._address)
        except OSError:
            pass

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}")

    def status(self, status: str) -> None:
        self.send(f"STATUS={status}")

    def reloading(self) -> None:
        monotonic_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.send("RELOADING=1", f"MONOTONIC_USEC={monotonic_usec}")

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def watchdog(self, now: float) -> None:
        """Pet the watchdog at half its interval (called from the daemon loop)."""
        if self.watchdog_interval is None or now - self._last_watchdog < self.watchdog_interval:
            return
        self._last_watchdog = now
        self.send("WATCHDOG=1")
