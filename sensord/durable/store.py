"""What makes a crash cost nothing: state snapshots, the readings journal, the alert outbox.

All three live in the state directory. At start the snapshots are restored and the journal
replayed onto them (the state is then what it was at the crash), and the outbox's alerts are
published again by delivery.py. While running, each micro-batch's readings are journaled
before they are acknowledged, and a snapshot is taken when due (periodically, or when the
journal grows large), after which the journal starts empty.

A state directory that cannot be written never stops the daemon: it says so once, loudly,
counts it, and runs with what it has (alerts still go out; a crash would cost state).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sensord.config import StateSettings
from sensord.core.sample import FIRST
from sensord.durable.journal import Entry, Journal
from sensord.durable.outbox import Outbox
from sensord.durable.snapshots import NamedPipeline, Snapshots
from sensord.errors import JournalError, OutboxError
from sensord.figures import counter
from sensord.logs import get_logger

log = get_logger(__name__)
SHADOW = "@shadow"  # a shadow pipeline's name: its route's, then this (never a route name)


@dataclass
class JournalCounters:
    journal_errors: int = counter(
        "sensord_journal_errors", "Batches the readings journal could not write."
    )


class DurableState:
    """The state directory's three files, for one daemon."""

    def __init__(self, settings: StateSettings) -> None:
        self.settings = settings
        self.snapshots = Snapshots(settings.dir, settings.snapshot_interval_s, settings.snapshot)
        self.journal = self._open_journal()
        self.outbox = self._open_outbox()
        self.counters = JournalCounters()

    def _open_journal(self) -> Journal | None:
        if not self.settings.snapshot:
            return None  # nothing to replay onto
        try:
            return Journal(self.settings.dir / "journal.log", self.settings.journal_sync)
        except OSError as exc:
            log.error(
                "journal unavailable; a crash sends state back to the snapshot", error=str(exc)
            )
            return None

    def _open_outbox(self) -> Outbox | None:
        if not self.settings.outbox:
            return None
        try:
            return Outbox(self.settings.dir / "outbox.log")
        except (OutboxError, OSError) as exc:
            log.error("outbox unavailable; alerts are not crash-safe", error=str(exc))
            return None

    def restore(self, routes: Sequence[NamedPipeline]) -> None:
        """Snapshots in, then the journal since them replayed, publishing nothing."""
        self.snapshots.restore_all(routes)
        journal = self.journal
        if journal is None or journal.size == 0:
            return
        by_name = {route.name: route for route in routes}
        replayed = stepped = skipped = 0
        try:
            for entry in journal.entries():
                route = by_name.get(entry.route)
                if route is None or entry.values.shape[1] != route.pipeline.engine.features:
                    skipped += len(entry.streams)  # its route is gone or changed shape
                    continue
                out = route.pipeline.process_batch(
                    entry.streams, entry.ts, entry.values, entry.received
                )
                shadow = by_name.get(entry.route + SHADOW)  # a shadow gets what its route got
                if shadow is not None:
                    shadow.pipeline.process_batch(
                        entry.streams, entry.ts, entry.values, entry.received
                    )
                replayed += len(entry.streams)
                # Readings the snapshot already holds come back as duplicates: not stepped.
                stepped += int(np.count_nonzero(out.status <= FIRST))
        except JournalError as exc:
            log.error("journal unreadable; state is the snapshot's", error=str(exc))
        log.info(
            "journal replayed",
            readings=replayed,
            stepped=stepped,
            skipped=skipped,
            torn_bytes=journal.torn,
        )
        self.save(routes)

    def record(self, entries: list[Entry]) -> None:
        """Journal one micro-batch's readings (before they are acknowledged)."""
        if self.journal is None or not entries:
            return
        try:
            self.journal.append(entries)
        except JournalError as exc:
            self.counters.journal_errors += 1
            errors = self.counters.journal_errors
            if errors == 1 or errors % 1000 == 0:
                log.error("journal failing; a crash would cost state", error=str(exc))

    def due(self, now: float) -> bool:
        journal = self.journal
        full = journal is not None and journal.size > self.settings.journal_max_bytes
        return full or self.snapshots.due(now)

    def save(self, routes: Sequence[NamedPipeline]) -> None:
        """Snapshot every route; once all are saved, the journal starts again empty."""
        if self.snapshots.save_all(routes) and self.journal is not None:
            try:
                self.journal.reset()
            except JournalError as exc:
                log.error("journal not emptied; it is replayed onto a newer state", error=str(exc))

    def close(self) -> None:
        for file in (self.journal, self.outbox):
            if file is not None:
                file.close()
