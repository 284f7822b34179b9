"""Cluster mode in the daemon (``[cluster] url``): the source that feeds the scoring loop
from the partitions this member owns, and the loop's side of a partition's hand-over.

The loop is the same as a single daemon's. What changes is where readings come from and what
an acknowledgement means:

- **Readings** come from the engine's readings log, partition by partition (cluster/member.py
  reads them in its own thread), each with its position in the log. Sensors still publish
  MQTT to the engine's gateway, and alerts and states still go out over MQTT: the outlet
  is the ``MqttAdapter`` connected to that gateway (which subscribes to no sensor topic).
- **Acknowledging** a scored reading records its position as its partition's progress: a
  partition's state is saved with the position of its last scored reading, so the member
  that takes it over goes on from the next one.
- **Operators' feedback** is off (not built for a cluster yet: a verdict must reach the
  member that owns its stream).
- **The member's name** is held in the engine (cluster/presence.py). The MQTT connection
  (its client id ends with the name) is made only once the name is held, so two members
  never share a client id; a member refused its name, or whose name another took, raises
  the reason from the loop (``sensord run`` exits EX_CONFIG, 78).
- **State** lives in the engine, not on this machine's disk: the local snapshot, journal
  and outbox are off.
- **The reorder window** works as in one daemon (a sensor's QoS 1 resends after a
  reconnect reach the log out of order: measured, 34 steps of one stream behind a newer
  one after an engine restart). Acknowledgements keep arrival order, so a partition's saved
  position never passes a held reading; a saved state may hold readings past its position
  (scored while an older one was held), and a member that replays them finds them repeats
  (the core does not step a timestamp twice). A partition let go or lost forgets the
  readings it holds unscored: its next owner reads them again from the log.
- **Alerts** go through the ledger (cluster/ledger.py): an event the broker confirmed
  before is not published again when a taken-over partition is replayed. A partition's
  state is saved on the way only while no alert is unconfirmed, so an alert raised by a
  reading before the saved position has reached the broker.
"""

from __future__ import annotations

import select
import time
from collections.abc import Callable, Sequence
from functools import partial
from itertools import repeat

import numpy as np

from sensord.cluster.handover import Restored, forget, pack, restore, unpack
from sensord.cluster.member import Member, member_name
from sensord.config import Settings
from sensord.core.pipeline import Pipeline
from sensord.core.state import Slots
from sensord.daemon.ingest import RouteMatch
from sensord.daemon.transport import Ackable, Link, Message, Request, Transport
from sensord.errors import SnapshotError
from sensord.logs import get_logger

log = get_logger(__name__)
MESSAGE = partial(tuple.__new__, Message)  # a Message of a tuple, as Message._make, in C
CONFIRM_WAIT_S = 5.0  # letting a partition go waits this long for its alerts' PUBACKs
NOT_CONNECTED_WAIT_S = 0.05


def clustered_settings(settings: Settings) -> Settings:
    """What cluster mode changes in the settings (see the module's docstring)."""
    member = member_name(settings.cluster.member)
    state = settings.state.model_copy(update={"snapshot": False, "outbox": False})
    # Every member has its own connection to the gateway: one client id would make them
    # take it from each other.
    mqtt = settings.mqtt.model_copy(update={"client_id": f"{settings.mqtt.client_id}-{member}"})
    cluster = settings.cluster.model_copy(update={"member": member})
    # Operators' feedback is not there yet in cluster mode (a verdict must reach the member
    # that owns its stream); asked for explicitly, it is a configuration error.
    feedback = settings.feedback.model_copy(update={"enabled": False})
    return settings.model_copy(
        update={
            "state": state,
            "mqtt": mqtt,
            "cluster": cluster,
            "feedback": feedback,
        }
    )


Parts = Callable[[], Sequence[tuple[str, int, Pipeline]]]  # (name, route index, pipeline)


class ClusterSource:
    """A readings ``Source`` (transport.py): readings from the member's partitions; the
    connection, operators' requests and acknowledgements of those go to the MQTT one."""

    def __init__(
        self,
        mqtt: Transport,
        member: Member,
        *,
        parts: Parts,
        match: Callable[[str], RouteMatch | None],
        in_flight: Callable[[], int],
        discard_held: Callable[[int], int],
        read_limit: int,
    ) -> None:
        self.mqtt = mqtt  # made with ``wake=member.wake_fd``: its waits end when readings come
        self.link: Link = mqtt.link  # the loop, health and metrics watch the MQTT connection
        self.member = member
        self.parts = parts
        self.match = match
        self.in_flight = in_flight
        self.discard_held = discard_held
        self.read_limit = read_limit
        self.inbox: list[Message] = []
        self.topics: dict[str, int] = {}  # sensor topic -> the partition it came from
        # partition -> pipeline name -> streams restored (not all heard from here yet)
        self.restored: dict[int, dict[str, set[str]]] = {}
        self.current: dict[int, int] = {}  # partition -> its generation here now
        self.connecting = False  # the MQTT connection: started once the name is held

    def start(self) -> None:
        self.member.start(self)

    def stop(self) -> None:
        """Let every partition go (states saved to the engine), then leave the broker."""
        self.member.stop()
        if self.connecting:
            self.mqtt.stop()

    def poll(self, timeout: float) -> None:
        self._between_batches()
        if not self.connecting:  # nothing to read or write until the name is held
            select.select([self.member.wake_fd], [], [], min(timeout, NOT_CONNECTED_WAIT_S))
            self.member.clear_wake()
            return
        if self.inbox or timeout <= 0:
            self.mqtt.poll(0.0)
            return
        if not self.link.connected.is_set():  # paho then sleeps without watching the engine
            timeout = min(timeout, NOT_CONNECTED_WAIT_S)
        self.mqtt.poll(timeout)
        self.member.clear_wake()
        self._between_batches()

    def waiting(self) -> int:
        return len(self.inbox)

    def take(self, limit: int) -> list[Message]:
        self._between_batches()
        taken = self.inbox[:limit]
        del self.inbox[:limit]
        return taken

    def take_requests(self) -> list[Request]:
        return self.mqtt.take_requests()

    def ack(self, messages: Sequence[Ackable]) -> None:
        """A scored reading's position is its partition's progress (the member records
        it); the rest (operators' requests) go to the broker."""
        others = self.member.ack(messages)
        self.link.counters.acked += len(messages) - len(others)  # recorded as progress
        if others:
            self.mqtt.ack(others)

    def _between_batches(self) -> None:
        """The member's jobs first (a partition taken or let go), then readings: an even
        share of every owned partition's (a batch as wide in streams as a single
        daemon's: cluster/partition.py)."""
        if self.member.refused is not None:
            raise self.member.refused
        if not self.connecting and self.member.named.is_set():
            self.connecting = True
            self.mqtt.start()
        self.member.run_jobs()
        room = self.read_limit - len(self.inbox)
        if room <= 0:
            return
        taken = 0
        for generation, readings in self.member.take(room):
            found = self.member.partition_of(generation)
            topics, payloads, positions, received = zip(*readings, strict=True)
            self.topics.update(dict.fromkeys(topics, -1 if found is None else found))
            # column by column: no Python step per reading (a Message of a tuple, in C)
            qos, session = repeat(1, len(readings)), repeat(generation, len(readings))
            columns = zip(topics, payloads, received, qos, positions, session, strict=True)
            self.inbox.extend(map(MESSAGE, columns))
            taken += len(readings)
        self.link.counters.received += taken

    # the loop's side of a hand-over (the member's ``LoopSide``; run between batches)

    def restore(self, partition: int, generation: int, data: bytes | None) -> int:
        what = f"partition {partition}'s state"
        self.current[partition] = generation
        if data is None:
            log.info("partition has no saved state: its streams start afresh", partition=partition)
            return 0
        try:
            restored = restore(self._named(), data, what)
        except SnapshotError as exc:
            self.member.counters.restore_failures += 1
            try:
                sequence = unpack(data, what).sequence
            except SnapshotError:
                sequence = 0
            log.error("partition state refused; its streams start afresh", error=str(exc))
            return sequence
        _log_restored(partition, restored)
        self.restored[partition] = {name: set(s) for name, s in restored.streams.items()}
        return restored.sequence

    def save(self, partition: int, generation: int, position: int, release: bool) -> bytes | None:
        if self.current.get(partition) != generation:
            return None  # dropped meanwhile
        if release:
            self._await_confirmations()
        elif self.in_flight():
            return None  # saved once the broker has them: see the module's docstring
        data = pack(self._slots(partition), partition, position, release)
        if release:
            self._forget_readings(partition, generation)
        return data

    def drop(self, partition: int, generation: int) -> None:
        if self.current.get(partition) != generation:
            self._forget_unscored(generation)
            return  # an older generation: the partition's streams are a newer one's now
        for _, pipeline, slots in self._slots(partition):
            forget(pipeline, slots)
        self._forget_readings(partition, generation)

    def _await_confirmations(self) -> None:
        deadline = time.monotonic() + CONFIRM_WAIT_S
        while self.in_flight() and time.monotonic() < deadline:
            self.mqtt.write()
            self.mqtt.poll(0.01)
        if self.in_flight():
            log.warning(
                "letting a partition go with alerts unconfirmed (they may come twice)",
                unconfirmed=self.in_flight(),
            )

    def _forget_unscored(self, generation: int) -> None:
        """Its readings waiting in the inbox or held for reordering: scored later they
        would step the streams of a newer generation out of order (measured after an
        engine restart: held readings of a lost generation made a restored stream skip
        the replayed ones as late)."""
        self.inbox = [m for m in self.inbox if m.session != generation]
        self.discard_held(generation)

    def _forget_readings(self, partition: int, generation: int) -> None:
        self.current.pop(partition, None)
        self._forget_unscored(generation)
        self.topics = {t: p for t, p in self.topics.items() if p != partition}
        self.restored.pop(partition, None)

    def _named(self) -> list[tuple[str, Pipeline]]:
        return [(name, pipeline) for name, _, pipeline in self.parts()]

    def _slots(self, partition: int) -> list[tuple[str, Pipeline, Slots]]:
        """Each pipeline's streams of ``partition``: those whose readings came from it, and
        those restored with it. (Tracked, not hashed: whatever the engine's mapping and the
        routes' stream templates, a stream is where its readings come from.)"""
        heard: dict[int, set[str]] = {}
        for topic, p in self.topics.items():
            if p != partition:
                continue
            found = self.match(topic)
            if found is not None:
                heard.setdefault(found.route, set()).add(found.stream)
        restored = self.restored.get(partition, {})
        out = []
        for name, route, pipeline in self.parts():
            known = pipeline.table.slot_of
            streams = heard.get(route, set()) | restored.get(name, set())
            slots = [known[s] for s in sorted(streams) if s in known]
            out.append((name, pipeline, np.asarray(slots, dtype=np.intp)))
        return out


def _log_restored(partition: int, restored: Restored) -> None:
    if restored.missing or restored.unknown:
        log.warning(
            "partition state and routes differ",
            partition=partition,
            routes_started_afresh=list(restored.missing),
            parts_ignored=list(restored.unknown),
        )
    log.info(
        "partition state restored",
        partition=partition,
        streams=sum(len(s) for s in restored.streams.values()),
        after=restored.sequence,
    )
