"""Shared fixtures: generated series and bundles trained once per test session."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import structlog

from sensord.core.bundle import Bundle
from sensord.offline.synthetic import generate, standard_anomalies, write_csv

if TYPE_CHECKING:
    from sensord.training.train import TrainReport

HISTORY_ROWS = 1200
LIVE_ROWS = 800

# Where a test runs decides its kind: tests/cluster start a nats-server, tests/integration
# a Mosquitto or the daemon as a child process. `slow` (a second or more each: a model
# trained, a benchmark run end to end) is marked by the tests themselves, and here for a test
# that asks for a trained bundle. The rest is `unit`, the fast subset (`pytest -m unit`,
# docs/development.md).
KIND_BY_FOLDER = {"cluster": "cluster", "integration": "integration"}
KINDS = ("cluster", "integration", "slow")
# The fixtures that train with torch on first use. A test's fixture names include what its
# fixtures ask for in turn, so a test of a trained bundle (`bundle`, `small_bundle`) names
# one of these, and a test of tests/core's in-memory bundles of the same names does not.
TRAINING_FIXTURES = {"trained", "train_small"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = item.path.relative_to(Path(__file__).parent).parts
        kind = KIND_BY_FOLDER.get(parts[0]) if len(parts) > 1 else None
        if kind is not None:
            item.add_marker(kind)
        if TRAINING_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker("slow")
        if not any(item.get_closest_marker(k) for k in KINDS):
            item.add_marker("unit")


@pytest.fixture(autouse=True)
def _fresh_logging() -> Iterator[None]:
    """A test that configures logging binds pytest's capture stream, which closes after it;
    later tests must not log into it."""
    yield
    structlog.reset_defaults()


@pytest.fixture(scope="session")
def history_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "history.csv"
    write_csv(path, generate(HISTORY_ROWS, seed=1))
    return path


def live_start() -> float:
    return float(generate(HISTORY_ROWS, seed=1).timestamps[-1]) + 300.0


@pytest.fixture(scope="session")
def anomalous_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "anomalous.csv"
    write_csv(
        path,
        generate(LIVE_ROWS, seed=2, start=live_start(), anomalies=standard_anomalies(LIVE_ROWS)),
    )
    return path


@pytest.fixture(scope="session")
def clean_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "clean.csv"
    write_csv(path, generate(LIVE_ROWS, seed=3, start=live_start()))
    return path


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory, history_csv: Path) -> TrainReport:
    """A bundle with the default network (2x64), as a user would train it."""
    # The training fixtures import torch when first used, not at collection: the core's
    # unit tests (tests/core) run on a numpy engine and need no torch (test_imports checks).
    from sensord.training.options import TrainOptions
    from sensord.training.train import train_bundle

    out = tmp_path_factory.mktemp("bundles") / "default"
    return train_bundle(history_csv, out, TrainOptions(name="synthetic"))


@pytest.fixture(scope="session")
def bundle(trained: TrainReport) -> Bundle:
    return trained.bundle


@pytest.fixture(scope="session")
def train_small(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Path, str], TrainReport]:
    """Train a tiny bundle fast: for tests of the format, not of detection."""

    from sensord.training.options import TrainOptions
    from sensord.training.train import train_bundle
    from tests.trained import SMALL

    def run(data: Path, name: str = "small") -> TrainReport:
        out = tmp_path_factory.mktemp("small") / name
        return train_bundle(data, out, TrainOptions(name=name, fit=SMALL))

    return run


@pytest.fixture(scope="session")
def small_bundle(train_small: Callable[[Path, str], TrainReport], history_csv: Path) -> Bundle:
    return train_small(history_csv, "small").bundle
