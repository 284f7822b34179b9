"""One live member per name, on a real nats-server: a second member with a taken name is
refused (the first keeps every partition and goes on renewing), a member whose name another
took gives its partitions up and stops, a name free again is taken, and every member's MQTT
client id is its own."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from nats.js.kv import KeyValue

from sensord.cli.engine import LocalEngine
from sensord.cluster.leases import leases_in
from sensord.config.settings import load_settings
from sensord.core.bundle import Bundle
from sensord.daemon.clustered import clustered_settings
from sensord.errors import NameTakenError
from sensord.wire.partition import subject_mapping
from tests.cluster.conftest import engine_for_test
from tests.cluster.test_leases import LEASE_S, PARTITIONS, Member, run, until
from tests.soak.harness import wait_until

REFUSAL = (
    "cluster member name 'm' is already used by a live member (host {host}, pid {pid}): "
    "every member needs its own name; set [cluster] member to a name no other member uses"
)


async def refused(member: Member, timeout: float) -> NameTakenError:
    """The error the member's keeper stopped with, within ``timeout``."""
    with pytest.raises(NameTakenError) as caught:
        await asyncio.wait_for(member.task, timeout)
    await member.nc.close()
    return caught.value


async def revisions(kv: KeyValue) -> dict[int, int]:
    return {p: revision for p, (_, revision) in (await leases_in(kv, PARTITIONS)).items()}


def test_a_second_member_with_a_taken_name_is_refused_and_the_first_keeps_going(
    engine: LocalEngine,
) -> None:
    async def test() -> None:
        first = Member("m", engine, "names1")
        await first.start()
        await until(lambda: len(first.owned()) == PARTITIONS, [first], 10, "the first member")
        second = Member("m", engine, "names1")
        await second.start()
        started = time.monotonic()
        error = await refused(second, 2 * LEASE_S)
        # the first rewrites its name every turn: the second sees it within about one
        assert time.monotonic() - started < LEASE_S, time.monotonic() - started
        assert str(error) == REFUSAL.format(host=socket.gethostname(), pid=os.getpid())
        assert second.claims == [] and second.owned() == frozenset()
        # the first keeps every partition, and renews every lease after the refusal
        leases = first.keeper.leases_kv
        assert leases is not None
        before = await revisions(leases)
        assert len(before) == PARTITIONS
        deadline = time.monotonic() + 2 * LEASE_S
        while any(r <= before[p] for p, r in (await revisions(leases)).items()):
            assert time.monotonic() < deadline, "the first member stopped renewing"
            await asyncio.sleep(0.05)
        assert len(first.owned()) == PARTITIONS and not first.task.done()
        await first.close()

    run(test)


def test_a_member_whose_name_another_took_gives_its_partitions_up_and_stops(
    engine: LocalEngine,
) -> None:
    async def test() -> None:
        first = Member("m", engine, "names2")
        lost: list[int] = []
        await first.start()
        first.keeper.on_lost = lost.append
        await until(lambda: len(first.owned()) == PARTITIONS, [first], 10, "the first member")
        members = first.keeper.members_kv
        assert members is not None
        # as a same-named member that came while the first one's key had lapsed
        await members.purge("m")
        await members.create("m", b'{"host": "elsewhere", "pid": 7}')
        error = await refused(first, 2 * LEASE_S)
        assert "(host elsewhere, pid 7)" in str(error) and "set [cluster] member" in str(error)
        assert first.owned() == frozenset() and sorted(lost) == list(range(PARTITIONS))
        assert first.releases == []  # nothing saved: the name's leases are its holder's now

    run(test)


def test_a_name_free_again_is_taken(engine: LocalEngine) -> None:
    async def test() -> None:
        first = Member("m", engine, "names3")
        await first.start()
        await until(lambda: len(first.owned()) == PARTITIONS, [first], 10, "the first member")
        await first.close()  # a clean stop lets the name go at once
        second = Member("m", engine, "names3")
        await second.start()
        took = await until(lambda: len(second.owned()) == PARTITIONS, [second], 5, "restart")
        assert took < LEASE_S, took
        await second.crash()  # as kill -9: its key stays until it lapses
        third = Member("m", engine, "names3")
        await third.start()
        took = await until(lambda: len(third.owned()) == PARTITIONS, [third], 3 * LEASE_S, "3rd")
        assert took <= 2 * LEASE_S + 0.5, took
        await third.close()

    run(test)


def test_every_member_has_its_own_mqtt_client_id(tmp_path: Path, bundle: Bundle) -> None:
    ids = set()
    for name in ("a", "b"):
        path = tmp_path / f"{name}.toml"
        path.write_text(
            f'[mqtt]\nclient_id = "plant"\n\n[cluster]\nurl = "nats://127.0.0.1:1"\n'
            f'member = "{name}"\n\n[[routes]]\ntopic = "sensors/+/value"\n'
            f'bundle = "{bundle.path}"\n'
        )
        ids.add(clustered_settings(load_settings(path)).mqtt.client_id)
    assert ids == {"plant-a", "plant-b"}


def test_a_second_sensord_run_with_a_taken_name_exits_78_saying_why(
    bundle: Bundle, tmp_path: Path
) -> None:
    """Two ``sensord run`` processes, one member name (as two members on one host with the
    default name would have): the second exits with EX_CONFIG and one line saying why, and
    the first goes on owning every partition."""
    from tests.soak.cluster import ClusterScenario, leases, write_member_config

    engine = engine_for_test(subject_mapping(PARTITIONS), mqtt=True)
    scenario = ClusterScenario(members=1, partitions=PARTITIONS, lease_s=LEASE_S)
    configs = [
        write_member_config(tmp_path / f"twin{i}", engine, scenario, "twin", bundle)
        for i in range(2)
    ]
    command = [sys.executable, "-m", "sensord", "run", "--config"]

    def owned() -> bool:
        return list(leases(engine.url, PARTITIONS).values()) == ["twin"] * PARTITIONS

    first = subprocess.Popen([*command, str(configs[0])], stderr=subprocess.DEVNULL)
    try:
        assert wait_until(owned, 60, 0.2), "the first member never owned every partition"
        second = subprocess.run(
            [*command, str(configs[1])], check=False, capture_output=True, text=True, timeout=120
        )
        assert second.returncode == 78, second.stderr[-2000:]
        assert "cluster member name 'twin' is already used by a live member" in second.stderr
        assert "Traceback" not in second.stderr
        assert first.poll() is None, "the first member stopped"
        assert owned(), "the first member lost partitions to the refused one"
    finally:
        first.terminate()  # (ours, by its pid)
        first.wait(timeout=60)
        engine.stop()
