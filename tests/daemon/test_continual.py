"""Continual retraining in the daemon (sensord/daemon/continual.py): the schedule's decisions,
the settings, what makes the daemon refuse to start with it, and the retrain child itself
(a real ``sensord retrain`` process: niced, CPU-limited, reaped with its CPU time, its
outcome read from the decision log, ended by its pid when the daemon stops).

tests/integration/test_continual.py runs the whole loop on a real broker.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
import pytest
from pydantic import ValidationError

from sensord.cli.main import main
from sensord.config import Settings, load_settings
from sensord.core.bundle import Bundle
from sensord.daemon.continual import Attempt, Continual, Schedule, decide, schedules
from sensord.daemon.loop import Daemon
from sensord.daemon.retrainchild import CHILD_LOG
from sensord.daemon.transport import Message
from sensord.errors import ConfigError
from sensord.offline.synthetic import generate
from sensord.ops.models import read_decisions
from tests.fakes import MemoryTransport

T0 = 1_700_000_000.0
STEP = 300.0
ROUTE = "temp"


# the schedule's decisions


def test_a_route_is_due_after_every_rows_per_stream_on_average() -> None:
    schedule = Schedule(every_rows=100, min_interval_s=0.0)
    assert decide(schedule, new_rows=299, streams=3, since_s=None) == "rows"
    assert decide(schedule, new_rows=300, streams=3, since_s=None) == "due"
    # one busy stream and two quiet ones: the average counts, not each stream
    assert decide(schedule, new_rows=10_000, streams=3, since_s=None) == "due"


def test_a_route_without_streams_is_never_due() -> None:
    schedule = Schedule(every_rows=10, min_interval_s=0.0)
    assert decide(schedule, new_rows=10_000, streams=0, since_s=None) == "no_streams"


def test_the_interval_counts_from_the_last_attempts_end() -> None:
    schedule = Schedule(every_rows=10, min_interval_s=3600.0)
    assert decide(schedule, new_rows=100, streams=1, since_s=3599.0) == "interval"
    assert decide(schedule, new_rows=100, streams=1, since_s=3600.0) == "due"
    assert decide(schedule, new_rows=100, streams=1, since_s=None) == "due"  # never tried
    # rows first: a route short of rows says so, whatever the interval
    assert decide(schedule, new_rows=5, streams=1, since_s=10.0) == "rows"


def settings_with(retrain: dict[str, object], routes: tuple[str, ...] = ("a", "b")) -> Settings:
    return Settings.model_validate(
        {
            "routes": [{"topic": f"{r}/+/v", "bundle": "/nowhere", "name": r} for r in routes],
            "retrain": retrain,
        }
    )


def test_schedules_take_each_routes_own_settings_over_retrains() -> None:
    assert schedules(settings_with({}), ["a", "b"]) == {}  # off unless asked for
    every = settings_with({"continual": True, "every_rows": 50, "min_interval_s": 60})
    assert schedules(every, ["a", "b"]) == {"a": Schedule(50, 60.0), "b": Schedule(50, 60.0)}
    own = settings_with(
        {
            "continual": True,
            "every_rows": 50,
            "routes": {"a": {"every_rows": 500}, "b": {"continual": False}},
        }
    )
    assert schedules(own, ["a", "b"]) == {"a": Schedule(500, 86_400.0)}
    only = settings_with({"routes": {"b": {"continual": True, "min_interval_s": 0}}})
    assert schedules(only, ["a", "b"]) == {"b": Schedule(2000, 0.0)}


def test_a_schedule_for_no_route_is_a_config_error() -> None:
    settings = settings_with({"routes": {"c": {"continual": True}}})
    with pytest.raises(ConfigError, match=r"retrain.routes: 'c': no such route \(routes: a, b\)"):
        schedules(settings, ["a", "b"])


@pytest.mark.parametrize(
    ("retrain", "key"),
    [
        ({"nice": 20}, "nice"),
        ({"every_rows": 5}, "every_rows"),
        ({"max_cpu_s": 0}, "max_cpu_s"),
        ({"threads": 0}, "threads"),
        ({"routes": {"a": {"every_rows": 1}}}, "every_rows"),
        ({"routes": {"a": {"evry_rows": 100}}}, "evry_rows"),  # extra=forbid
    ],
)
def test_the_settings_are_bounded(retrain: dict[str, object], key: str) -> None:
    with pytest.raises(ValidationError, match=key):
        settings_with(retrain)


def test_the_per_route_table_reads_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "sensord.toml"
    path.write_text(
        '[[routes]]\ntopic = "a/+/v"\nbundle = "/nowhere"\nname = "a"\n'
        "[retrain]\ncontinual = false\n[retrain.routes.a]\ncontinual = true\nevery_rows = 40\n"
    )
    settings = load_settings(path)
    assert schedules(settings, ["a"]) == {"a": Schedule(40, 86_400.0)}


# the daemon with it: what it refuses, and the child


def config_file(tmp_path: Path, retrain: str, record: str = "enabled = true") -> Path:
    """A configuration whose route is managed (its bundle is its current link)."""
    state = tmp_path / "state"
    current = state / "models" / ROUTE / "current"
    path = tmp_path / "sensord.toml"
    path.write_text(
        f'[state]\ndir = "{state}"\nsnapshot = false\n'
        f'[[routes]]\ntopic = "sensors/+/value"\nname = "{ROUTE}"\nbundle = "{current}"\n'
        f"[record]\n{record}\n"
        f"[retrain]\ncontinual = true\nmin_rows = 100\nmin_interval_s = 0\n{retrain}\n"
        "[nodata]\nenabled = false\n[feedback]\nenabled = false\n"
    )
    return path


@contextmanager
def daemon_with(bundle: Bundle, config: Path) -> Iterator[Daemon]:
    """A daemon on an in-memory transport, its route's first model promoted."""
    assert main(["promote", str(bundle.path), "--route", ROUTE, "--config", str(config)]) == 0
    daemon = Daemon(load_settings(config), transport=MemoryTransport, config=config)
    try:
        yield daemon
    finally:
        if daemon.continual is not None:
            daemon.continual.stop()
        daemon.durable.close()
        if daemon.recorder is not None:
            daemon.recorder.close()


def feed(daemon: Daemon, streams: int, readings: int, first: int = 0) -> None:
    """Readings ``first ..`` of ``streams`` streams, scored (and recorded) as the loop
    would."""
    values = generate(first + readings, seed=3).values
    for k in range(first, first + readings):
        batch = [
            Message(
                f"sensors/s{i}/value",
                orjson.dumps({"value": float(values[k]) + i, "ts": T0 + k * STEP}),
                time.time(),
                1,
                k * streams + i + 1,
                -1,  # not the session's: acknowledgements go nowhere
            )
            for i in range(streams)
        ]
        daemon.process(batch)


def polled(continual: Continual, until: str, timeout: float = 60.0) -> None:
    """Poll as the loop does, each turn, until the child ``started`` or ``ended``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        continual.poll()
        if (continual.running is not None) if until == "started" else bool(continual.history):
            return
        time.sleep(0.02)
    log = next(iter(continual.watched.values())).route_dir / CHILD_LOG
    output = log.read_text() if log.exists() else "(no output)"
    pytest.fail(f"no retrain {until} within {timeout} s; the child's output:\n{output}")


def test_the_daemon_refuses_continual_retraining_of_a_route_it_does_not_record(
    small_bundle: Bundle, tmp_path: Path
) -> None:
    config = config_file(tmp_path, "", record="enabled = false")
    with pytest.raises(ConfigError, match="route 'temp' is not recorded"):
        daemon_with(small_bundle, config).__enter__()


def test_the_daemon_needs_the_file_its_settings_came_from(
    small_bundle: Bundle, tmp_path: Path
) -> None:
    config = config_file(tmp_path, "")
    assert main(["promote", str(small_bundle.path), "--route", ROUTE, "--config", str(config)]) == 0
    with pytest.raises(ConfigError, match="reads the daemon's configuration file"):
        Daemon(load_settings(config), transport=MemoryTransport)


def test_a_due_route_gets_one_child_whose_decision_is_read_from_the_log(
    small_bundle: Bundle, tmp_path: Path
) -> None:
    config = config_file(tmp_path, "every_rows = 20")
    with daemon_with(small_bundle, config) as daemon:
        continual = daemon.continual
        assert continual is not None
        feed(daemon, streams=2, readings=19)
        continual.poll()
        assert continual.running is None, "due before every_rows per stream"
        feed(daemon, streams=2, readings=1, first=19)
        polled(continual, "started", timeout=5)  # (the schedules are looked at once a second)
        assert continual.running == ROUTE
        polled(continual, "ended")
        (attempt,) = continual.history
    # 100 rows per stream needed, fewer recorded: the child says so in the decision log
    assert attempt.outcome == "skipped", attempt
    assert "too little data" in attempt.ended.reasons[0]
    assert attempt.ended.exit_code == 0 and attempt.ended.cpu_s > 0.1, attempt
    assert attempt.rows == 2 * 20
    (decision,) = read_decisions(continual.watched[ROUTE].route_dir)[-1:]
    assert decision["decision"] == "skipped"
    figures = continual.figures()[ROUTE]
    assert figures["skipped"] == 1 and figures["running"] == 0
    assert figures["cpu_s"] == pytest.approx(attempt.ended.cpu_s)


def nice_of(pid: int) -> int | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return None
    return int(fields[16])  # field 19 of stat(5), counted after the command's name


def running_child(continual: Continual) -> int:
    assert continual.child is not None
    return continual.child[1].pid


def test_the_child_runs_niced_and_is_ended_at_its_cpu_limit(
    small_bundle: Bundle, tmp_path: Path
) -> None:
    # Enough recording to train on for many epochs: far more than one CPU second.
    config = config_file(tmp_path, "every_rows = 100\nmax_cpu_s = 1\nepochs = 500")
    with daemon_with(small_bundle, config) as daemon:
        continual = daemon.continual
        assert continual is not None
        feed(daemon, streams=2, readings=300)
        polled(continual, "started")
        pid = running_child(continual)
        deadline = time.monotonic() + 10
        while nice_of(pid) not in (19, None) and time.monotonic() < deadline:
            time.sleep(0.01)  # the child sets it first thing, after the interpreter starts
        assert nice_of(pid) == 19, "the retrain child does not run at nice 19"
        polled(continual, "ended")
        (attempt,) = continual.history
    assert attempt.outcome == "failed", attempt
    assert "SIGXCPU" in attempt.ended.reasons[0], attempt.ended.reasons
    assert 1.0 <= attempt.ended.cpu_s < 3.0, attempt  # stopped at its limit, not after
    assert continual.figures()[ROUTE]["failed"] == 1


def test_stopping_ends_a_running_child_by_its_pid(small_bundle: Bundle, tmp_path: Path) -> None:
    config = config_file(tmp_path, "every_rows = 10")
    with daemon_with(small_bundle, config) as daemon:
        continual = daemon.continual
        assert continual is not None
        feed(daemon, streams=1, readings=20)
        polled(continual, "started")
        pid = running_child(continual)
        started = time.monotonic()
        continual.stop()
        assert time.monotonic() - started < 5, "SIGTERM did not end the child at once"
        assert continual.running is None
        (attempt,) = continual.history
        assert attempt.outcome == "stopped" and attempt.pid == pid
        assert not Path(f"/proc/{pid}").exists(), "the child is still there (or a zombie)"
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reaped already
        assert continual.figures()[ROUTE]["running"] == 0


def test_a_child_that_fails_says_why_from_its_output(small_bundle: Bundle, tmp_path: Path) -> None:
    config = config_file(tmp_path, "every_rows = 10")
    with daemon_with(small_bundle, config) as daemon:
        continual = daemon.continual
        assert continual is not None
        # The file changes under the running daemon: its route is gone from it.
        config.write_text(config.read_text().replace(f'name = "{ROUTE}"', 'name = "other"'))
        feed(daemon, streams=1, readings=20)
        polled(continual, "ended")
        (attempt,) = continual.history
    assert isinstance(attempt, Attempt) and attempt.outcome == "failed"
    assert attempt.ended.exit_code not in (0, None)
    assert "no route named 'temp'" in attempt.ended.reasons[0], attempt.ended.reasons
