"""The core's unit tests run on a numpy engine over a bundle made in memory (tests/fakes.py):
no torch, no training, no files. These fixtures shadow the trained ones of tests/conftest.py."""

from __future__ import annotations

import pytest

from sensord.core.bundle import Bundle
from tests.fakes import fake_bundle


@pytest.fixture(scope="session")
def small_bundle() -> Bundle:
    return fake_bundle(name="small")
