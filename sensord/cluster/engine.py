"""A member's connection to the engine (NATS): made with retries, watched while it lasts,
closed with a bound; and the engine's troubles, counted and logged now and then."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time

import nats
from nats.aio.client import Client
from nats.errors import Error as NatsError

from sensord.cluster.counters import ClusterCounters
from sensord.config.cluster import ClusterSettings
from sensord.logs import get_logger

log = get_logger(__name__)
RETRY_S = 0.5  # between reconnection attempts; a failed first connection waits 4 times that
WARN_EVERY_S = 10.0
CLOSE_S = 5.0  # closing the connection takes at most this long


class Trouble:
    """A failed request to the engine: counted (``engine_errors``) and logged at most every
    ``WARN_EVERY_S``, since each is retried and an engine away fails them all."""

    def __init__(self, member: str, counters: ClusterCounters) -> None:
        self.member = member
        self.counters = counters
        self._warned_at = -float("inf")

    def __call__(self, what: str, exc: BaseException) -> None:
        self.counters.engine_errors += 1
        now = time.monotonic()
        if now - self._warned_at >= WARN_EVERY_S:
            self._warned_at = now
            log.warning(
                what,
                member=self.member,
                error=str(exc) or type(exc).__name__,
                engine_errors=self.counters.engine_errors,
            )


class Connection:
    """The member's one connection to the engine; ``connected`` says whether it holds now
    (the daemon's health check reads it)."""

    def __init__(self, settings: ClusterSettings, member: str, trouble: Trouble) -> None:
        self.settings = settings
        self.member = member
        self.trouble = trouble
        self.connected = threading.Event()

    async def open(self, stop: asyncio.Event) -> Client | None:
        """Connected (nats-py reconnects by itself after that), or None if stopped first."""
        s = self.settings
        assert s.url is not None
        while not stop.is_set():
            try:
                nc = await nats.connect(
                    servers=[u.strip() for u in s.url.split(",")],
                    name=f"sensord-{self.member}",
                    user=s.user,
                    password=s.password.get_secret_value() if s.password else None,
                    user_credentials=str(s.credentials) if s.credentials else None,
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=RETRY_S,
                    connect_timeout=5,
                    error_cb=self._error,
                    disconnected_cb=self._disconnected,
                    reconnected_cb=self._reconnected,
                )
            except (NatsError, OSError) as exc:
                self.trouble("cannot connect to the engine", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), RETRY_S * 4)
            else:
                self.connected.set()
                return nc
        return None

    @staticmethod
    async def close(nc: Client) -> None:
        """What is still buffered sent (drain), or the connection just closed if the
        engine does not answer within ``CLOSE_S``."""
        try:
            await asyncio.wait_for(nc.drain(), CLOSE_S)
        except (NatsError, TimeoutError):
            with contextlib.suppress(NatsError, TimeoutError):
                await nc.close()

    async def _error(self, exc: Exception) -> None:
        self.trouble("engine connection error", exc)

    async def _disconnected(self) -> None:
        self.connected.clear()
        log.warning("engine connection lost; reconnecting", member=self.member)

    async def _reconnected(self) -> None:
        self.connected.set()
        log.info("engine connection back", member=self.member)
