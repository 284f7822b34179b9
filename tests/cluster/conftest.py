"""A real nats-server with JetStream, started by the tests on free ports (never the system
one on 4222). With CI=true a missing nats-server fails the run instead of skipping."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from sensord.cli.engine import LocalEngine, nats_binary, start_engine


def need_engine() -> None:
    """Skip without nats-server; fail instead with CI=true."""
    if nats_binary() is None:
        missing = "nats-server (apt-get install nats-server)"
        if os.environ.get("CI"):
            pytest.fail(f"CI requires {missing}")
        pytest.skip(f"needs {missing}")


def engine_for_test(mappings: dict[str, str] | None = None, mqtt: bool = False) -> LocalEngine:
    need_engine()
    return start_engine(mappings, mqtt)


@pytest.fixture
def engine() -> Iterator[LocalEngine]:
    started = engine_for_test()
    yield started
    started.remove()
