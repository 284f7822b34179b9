"""The metrics edge on its own: what it serves, and a clear error for a taken port."""

import urllib.request

import pytest

from sensord.daemon.metrics import MetricsServer
from sensord.daemon.stats import declared_figures
from sensord.errors import ConfigError


def test_serves_the_counters_it_is_given() -> None:
    stats = {"received": 3, "scored": 2, "rejected": {"too_large": 1}, "streams": 1, "inbox": 0}
    server = MetricsServer(lambda: stats, "127.0.0.1", 0, figures=declared_figures())
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as r:
            lines = set(r.read().decode().splitlines())
        assert "sensord_readings_received_total 3.0" in lines
        assert 'sensord_readings_rejected_total{reason="too_large"} 1.0' in lines
        stats["received"] = 4  # read at scrape time, not copied at start
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as r:
            assert "sensord_readings_received_total 4.0" in r.read().decode()
    finally:
        server.stop()


def test_a_taken_port_is_a_clear_error() -> None:
    first = MetricsServer(dict, "127.0.0.1", 0)
    try:
        with pytest.raises(ConfigError, match=rf"metrics: cannot listen on 127.0.0.1:{first.port}"):
            MetricsServer(dict, "127.0.0.1", first.port)
    finally:
        first.stop()
