"""The web page's board (daemon/web/board.py) with a real route and core, no network: what
the loop writes and the page reads, and that it stays bounded."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from sensord.config import RouteSettings, WebSettings
from sensord.core.bundle import Bundle
from sensord.core.pipeline import PipelineSettings
from sensord.core.sample import Scored
from sensord.daemon.ingest import Routed
from sensord.daemon.publisher import PUBLISHED_COLUMNS, STATUS_CODES
from sensord.daemon.routes import Route, open_route
from sensord.daemon.web.board import Board, Ring
from sensord.daemon.web.listing import StreamList, list_rows
from sensord.offline.synthetic import generate

T0, STEP = 1_700_000_000.0, 60.0


def make_route(bundle: Bundle) -> Route:
    settings = RouteSettings(topic="sensors/+/value", bundle=Path(bundle.path))
    route = open_route(0, settings, PipelineSettings())
    route.pipeline.register(PUBLISHED_COLUMNS)  # as the daemon's publisher does: listed
    return route


def step(board: Board, route: Route, readings: list[tuple[str, int, float]]) -> Scored:
    """Score (stream, index, value) readings as one batch and show them to the board."""
    part = Routed(len(route.features))
    for stream, k, value in readings:
        part.add(stream, f"sensors/{stream}/value", T0 + k * STEP, [value], T0 + k * STEP)
    ts, values, received = part.arrays()
    scored = route.score(part.streams, ts, values, received)
    board.scored(route, part, scored, values)
    return scored


def series(n: int, spike_at: int | None = None) -> list[float]:
    values = [float(v) for v in generate(n, seed=3).values]
    if spike_at is not None:
        values[spike_at] += 8.0
    return values


def test_ring_keeps_the_last_points_oldest_first_and_never_goes_back() -> None:
    ring = Ring(points=4, features=1)
    for k in range(7):
        ring.add(float(k), k / 10, k == 5, np.array([k * 1.0]), np.array([k + 0.5]))
    ring.add(3.0, 0.0, False, np.array([0.0]), np.array([0.0]))  # older: not taken
    ordered = ring.ordered()
    assert ordered["ts"].tolist() == [3.0, 4.0, 5.0, 6.0]
    assert ordered["alert"].tolist() == [False, False, True, False]
    assert ordered["values"][0].tolist() == [3.0, 4.0, 5.0, 6.0]
    assert ordered["expected"][0].tolist() == [3.5, 4.5, 5.5, 6.5]


def test_a_stream_asked_for_is_charted_from_its_recent_readings(bundle: Bundle) -> None:
    route = make_route(bundle)
    board = Board(WebSettings(port=0, points=50), "sensord")
    values = series(40)
    for k in range(30):
        step(board, route, [("a", k, values[k])])
    assert board.chart(route.name, "a", wait_s=0) is None  # asked: the loop starts it
    board.turn([route], 0.0)  # the loop's next turn
    chart = board.chart(route.name, "a", wait_s=0)
    assert chart is not None
    assert chart["ts"].tolist() == [T0 + k * STEP for k in range(14, 30)]
    for k in range(30, 40):
        step(board, route, [("a", k, values[k])])
    chart = board.chart(route.name, "a", 0)
    assert chart is not None and len(chart["ts"]) == 26
    assert np.isfinite(chart["score"][-10:]).all() and np.isnan(chart["score"][:16]).all()


def test_an_alert_charts_its_stream_with_the_alerting_reading_scored(bundle: Bundle) -> None:
    route = make_route(bundle)
    board = Board(WebSettings(port=0), "sensord")
    values = series(110, spike_at=102)
    for k in range(0, 110, 5):  # batches of five readings: the raise is mid-batch
        step(board, route, [("a", j, values[j]) for j in range(k, k + 5)])
    raised = board.alerts()[-1]  # the oldest
    assert raised["event"] == "raised" and raised["channel"] and raised["message"]
    assert raised["ts"] == T0 + 102 * STEP
    chart = board.chart(route.name, "a", 0)
    assert chart is not None
    assert chart["ts"][0] < T0 + 100 * STEP  # from before the batch that raised it
    at = chart["ts"].tolist().index(T0 + 102 * STEP)
    assert chart["alert"][at] and np.isfinite(chart["score"][at])
    assert np.isfinite(chart["expected"][0][at])


def test_charts_are_bounded_least_recently_used_out(bundle: Bundle) -> None:
    route = make_route(bundle)
    board = Board(WebSettings(port=0, streams=2), "sensord")
    values = series(20)
    names = ["a", "b", "c"]
    for k in range(20):
        step(board, route, [(n, k, values[k]) for n in names])
    for name in names:
        board.chart(route.name, name, wait_s=0)
        board.turn([route], 0.0)
    assert board.chart(route.name, "a", 0) is None  # let go for c
    assert board.chart(route.name, "b", 0) is not None
    assert board.chart(route.name, "c", 0) is not None


def test_the_streams_list_is_made_only_while_someone_looks(bundle: Bundle) -> None:
    route = make_route(bundle)
    board = Board(WebSettings(port=0), "sensord")
    values = series(110, spike_at=105)  # on "a" only, once its tails speak (100 values)
    other = series(110)
    for k in range(108):
        last = step(board, route, [("a", k, values[k]), ("b", k, other[k])])
    board.turn([route], time.monotonic())
    assert board.stream_lists(wait_s=0)[0] is None  # nobody looked: nothing was copied
    board.turn([route], time.monotonic())  # someone looks now: copied on the next turn
    lists, _ = board.stream_lists(wait_s=0)
    assert lists is not None
    listed, total = list_rows(lists, board.alerts())
    assert total == 2 and [r["stream"] for r in listed] == ["a", "b"]  # alerting first
    rows = {r["stream"]: r for r in listed}
    assert rows["a"]["status"] == "alert" and rows["a"]["alert"] is True
    assert rows["a"]["raised_ts"] == T0 + 105 * STEP and rows["a"]["channel"]
    assert rows["a"]["score"] == pytest.approx(float(last.score[0]))
    assert rows["b"]["status"] == "normal" and rows["b"]["raised_ts"] is None
    assert rows["a"]["last_ts"] == T0 + 107 * STEP


def test_verdicts_wait_for_the_desk_answer(bundle: Bundle) -> None:
    board = Board(WebSettings(port=0), "sensord")
    answers: list[bytes | None] = []
    thread = threading.Thread(target=lambda: answers.append(board.submit_verdict("a", b"{}", 10.0)))
    thread.start()
    taken = []
    while not taken:
        taken = board.take_requests()
        thread.join(0.01)
    (request,) = taken
    assert request.topic == "sensord/feedback/a" and request.qos == 0
    assert request.correlation is not None
    assert not board.answer(b"someone-else", b"x")  # an MQTT client's: not the page's
    assert board.answer(request.correlation, b'{"accepted": true}')
    thread.join(10)
    assert answers == [b'{"accepted": true}']
    assert board.submit_verdict("a", b"{}", 0.01) is None  # the loop never answered


def listed(route: str, streams: list[str | None], **columns: list[float]) -> StreamList:
    n = len(streams)
    base: dict[str, npt.NDArray[Any]] = {
        "published_status": np.zeros(n, dtype=np.int8),
        "status_since": np.full(n, np.nan),
        "last_ts": np.full(n, np.nan),
        "last_received": np.full(n, np.nan),
        "alert_active": np.zeros(n, dtype=bool),
        "raised_ts": np.full(n, np.nan),
        "nodata": np.zeros(n, dtype=bool),
        "score": np.full(n, np.nan),
        "status": np.full(n, np.nan),
    }
    for name, values in columns.items():
        base[name] = np.asarray(values, dtype=base[name].dtype)
    return StreamList(route, streams, base)


def test_the_list_filters_sorts_and_limits_over_every_route() -> None:
    alert, normal, warming = (float(STATUS_CODES[s]) for s in ("alert", "normal", "warming_up"))
    lists = [
        listed(
            "r1",
            ["pump", None, "boiler.t1", "fan"],
            score=[0.2, np.nan, 0.9, np.nan],
            status=[normal, np.nan, alert, np.nan],
            alert_active=[0, 0, 1, 0],
        ),
        listed(
            "r2",
            ["pump2", "valve"],
            score=[0.7, 0.1],
            status=[normal, warming],
            published_status=[0, 0],
        ),
    ]
    rows, total = list_rows(lists, [])
    assert total == 5  # the free slot is not a stream
    assert [r["stream"] for r in rows] == ["boiler.t1", "pump2", "pump", "valve", "fan"]
    assert [r["status"] for r in rows] == ["alert", "normal", "normal", "warming_up", "new"]
    rows, total = list_rows(lists, [], text="pump", limit=1)
    assert total == 2 and [r["stream"] for r in rows] == ["pump2"]
    rows, total = list_rows(lists, [], text="r2")  # a route's name matches its streams
    assert total == 2
    rows, total = list_rows(lists, [], status="warming_up")
    assert [(r["route"], r["stream"]) for r in rows] == [("r2", "valve")]
    assert list_rows(lists, [], text="nothing") == ([], 0)


def test_a_stream_not_seen_since_a_restart_shows_what_its_state_says() -> None:
    lists = [
        listed(
            "r",
            ["up", "was_normal", "never"],
            alert_active=[1, 0, 0],
            published_status=[STATUS_CODES["alert"], STATUS_CODES["normal"], 0],
        )
    ]
    rows, _ = list_rows(lists, [])
    assert {r["stream"]: r["status"] for r in rows} == {
        "up": "alert",
        "was_normal": "normal",
        "never": "new",
    }
