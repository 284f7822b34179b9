"""The one way between a member's engine thread and the scoring loop's thread.

The scoring loop's thread owns the pipelines, so whatever touches them (restore, save,
drop a partition's streams) is a job the engine thread posts here and the loop runs between
two batches (``run_jobs``, called from the loop's transport). A pipe wakes the loop's
select when jobs or readings wait. The loop's calls to ``run_jobs`` are also its heartbeat:
the lease keeper renews only while they come (``alive``), so a loop that hangs loses its
partitions to the other members.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import queue
import time
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class LoopSide(Protocol):
    """What the member asks of the scoring loop (run in the loop's thread)."""

    def restore(self, partition: int, generation: int, data: bytes | None) -> int:
        """Take the partition's saved state (None: none yet); the log position it includes."""
        ...

    def save(self, partition: int, generation: int, position: int, release: bool) -> bytes | None:
        """The partition's state, which includes every reading up to ``position`` (the last
        one the loop acknowledged); its streams forgotten with ``release``. None if it
        cannot be saved now (alerts the broker has not confirmed), or the generation is
        not the partition's here any more."""
        ...

    def drop(self, partition: int, generation: int) -> None:
        """Forget the partition's streams and readings unsaved (its lease was lost)."""
        ...


class LoopBridge:
    """Jobs for the loop's thread, the pipe that wakes it, and its heartbeat."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], concurrent.futures.Future[Any]]]
        self._jobs = queue.SimpleQueue()
        self._beat = time.monotonic()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._woken = False

    @property
    def wake_fd(self) -> int:
        """Readable when readings or jobs wait (the loop's select watches it)."""
        return self._wake_r

    # the loop's thread

    def run_jobs(self, wait_s: float = 0.0) -> int:
        """Run what the engine side asked of the loop (between two batches)."""
        self._beat = time.monotonic()
        done = 0
        while True:
            try:
                job, future = self._jobs.get(timeout=wait_s) if wait_s else self._jobs.get_nowait()
            except queue.Empty:
                return done
            wait_s = 0.0
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(job())
                except Exception as exc:
                    future.set_exception(exc)
            done += 1

    def clear_wake(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.read(self._wake_r, 4096)
        self._woken = False

    def close(self) -> None:
        os.close(self._wake_r)
        os.close(self._wake_w)

    # the engine's thread

    async def in_loop(self, job: Callable[[], T]) -> T:
        """Run ``job`` in the scoring loop's thread, between two batches."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._jobs.put((job, future))
        self.wake()
        return await asyncio.wrap_future(future)

    def wake(self) -> None:
        # One byte per wake-up, not per reading: the loop drains the pipe and clears the flag.
        if not self._woken:
            self._woken = True
            with contextlib.suppress(BlockingIOError, OSError):
                os.write(self._wake_w, b"x")

    def alive(self, within_s: float) -> bool:
        """Whether the loop ran its jobs within the last ``within_s``."""
        return time.monotonic() - self._beat < within_s
