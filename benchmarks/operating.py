"""What running it for months costs the scoring loop: recording, a shadow bundle, Home
Assistant discovery, the web page (kept, and open in a browser), beside a daemon with none of
them; and what the channels detector (the default) costs beside the likelihood detector it
replaced (a baseline now, benchmarks/baselines/).

In-process and without a network (the daemon's ``process`` on prepared batches of JSON
readings, acknowledgements going nowhere), so the figure is the loop's own CPU time per
reading; the configurations take turns, round after round, and each is reported as its
median and as a ratio to the plain daemon measured in the same rounds (these machines are
shared and noisy: only same-run ratios mean something).

    python benchmarks/operating.py [--bundle DIR] [--streams 1000] [--rounds 5] [--json F]
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import orjson

from benchmarks.baselines import BaselineSettings, use_baseline
from sensord import logs
from sensord.config import Settings
from sensord.daemon.loop import Daemon
from sensord.daemon.transport import Message

BATCH = 256
WARM_BATCHES = 20
WATCHED = 64  # streams charted while the page is open ([web] streams' default)
ANSWERS = 50  # page answers timed per request kind
CONFIGS: dict[str, dict[str, Any]] = {
    "plain": {"nodata": {"enabled": False}, "feedback": {"enabled": False}},
    # The reorder stage off (plain otherwise): what looking for gaps costs each batch.
    "-reorder": {
        "nodata": {"enabled": False},
        "feedback": {"enabled": False},
        "batching": {"reorder_window_ms": 0},
    },
    # The retained state's refresh off (plain otherwise): what looking for due refreshes
    # costs each batch (a drain's readings all arrive within one refresh interval).
    "-refresh": {
        "nodata": {"enabled": False},
        "feedback": {"enabled": False},
        "alerts": {"state_refresh_s": 0},
    },
    "defaults": {},  # nodata and feedback on, as shipped
    "+record": {"record": {"enabled": True}},
    "+shadow": {"shadow": True},
    "+homeassistant": {"homeassistant": {"enabled": True}},
    # The web page served, nobody looking: the board's per-batch columns (plain otherwise).
    "+web": {"nodata": {"enabled": False}, "feedback": {"enabled": False}, "web": {"port": 0}},
    # The page open in a browser at its own pace (the streams list every 2 s, a stream's
    # chart every 1 s, health every 5 s) with WATCHED streams charted: the loop's copies and
    # the page's thread, both in this process's CPU time.
    "+web open": {
        "nodata": {"enabled": False},
        "feedback": {"enabled": False},
        "web": {"port": 0},
        "page": True,
    },
    "all": {"record": {"enabled": True}, "shadow": True, "homeassistant": {"enabled": True}},
    # The detector before the channels (plain otherwise): the cost of the detector itself.
    # A baseline now (benchmarks/baselines/), put in each route's core once it is built.
    "likelihood": {
        "nodata": {"enabled": False},
        "feedback": {"enabled": False},
        "baseline": "likelihood",
    },
}


def settings_for(bundle: Path, state: Path, options: dict[str, Any]) -> Settings:
    route: dict[str, Any] = {"topic": "sensors/+/value", "bundle": str(bundle), "name": "bench"}
    if options.get("shadow"):
        route["shadow"] = str(bundle)
    if "detector" in options:
        route["detector"] = options["detector"]
    sections = {
        k: v for k, v in options.items() if k not in ("shadow", "detector", "page", "baseline")
    }
    return Settings(
        mqtt={"host": "127.0.0.1", "port": 1},  # never connected: process() needs no broker
        routes=[route],
        state={"dir": str(state), "snapshot_interval_s": 0},
        **sections,
    )


def batches(streams: int, readings: int, seed: int = 0, t0: float = 1.7e9) -> list[list[Message]]:
    rng = np.random.default_rng(seed)
    values = 20.0 + rng.standard_normal(readings)
    now = time.time()
    made = [
        Message(
            f"sensors/s{i % streams}/value",
            orjson.dumps({"value": float(values[i]), "ts": t0 + i // streams}),
            now,
            1,
            i % 65_535 + 1,
            -1,  # a session that is not the current one: acknowledgements go nowhere
        )
        for i in range(readings)
    ]
    return [made[i : i + BATCH] for i in range(0, readings, BATCH)]


def cpu_per_reading(bundle: Path, options: dict[str, Any], work: list[list[Message]]) -> float:
    """Microseconds of this process's CPU per reading after a warm-up, for one daemon."""
    with tempfile.TemporaryDirectory() as state:
        daemon = Daemon(settings_for(bundle, Path(state), options))
        if "baseline" in options:
            for route in daemon.routes:
                use_baseline(route.pipeline, BaselineSettings(options["baseline"]))
        board = daemon.board
        for batch in work[:WARM_BATCHES]:
            daemon.process(batch)
        page = Page(daemon) if options.get("page") else None
        measured = work[WARM_BATCHES:]
        started = time.process_time()
        for batch in measured:
            daemon.process(batch)
            if board is not None:  # what the loop does on each turn
                board.turn(daemon.routes, time.monotonic())
        seconds = time.process_time() - started
        if page is not None:
            page.close()
        daemon.durable.close()
        if daemon.recorder is not None:
            daemon.recorder.close()
    return seconds / sum(len(b) for b in measured) * 1e6


class Page:
    """The web page open on a daemon: its server started, WATCHED streams charted, and a
    browser stand-in, in a process of its own (its CPU is the browser's, not the daemon's),
    asking what the page's script asks, as often (``browse``)."""

    def __init__(self, daemon: Daemon) -> None:
        board = daemon.board
        assert board is not None
        daemon.start_web()
        assert daemon.web is not None
        self.daemon = daemon
        route = daemon.routes[0].name
        for i in range(WATCHED):
            board.chart(route, f"s{i}", wait_s=0)  # asks for it; the turn below starts it
        board.turn(daemon.routes, time.monotonic())
        base = f"http://127.0.0.1:{daemon.web.port}"
        self._browser = subprocess.Popen(
            [sys.executable, __file__, "--browse", base, route], stdout=subprocess.PIPE, text=True
        )
        opened = time.monotonic()
        while board.viewed_at < opened:  # the page is open once it asked for the list
            board.turn(daemon.routes, time.monotonic())
            if self._browser.poll() is not None or time.monotonic() > opened + 60:
                raise RuntimeError("the browser stand-in did not ask for the streams list")
            time.sleep(0.01)

    def close(self) -> None:
        self._browser.send_signal(signal.SIGTERM)
        out, _ = self._browser.communicate(timeout=30)
        answered = {int(k): v for k, v in json.loads(out).items() if k != "503"}  # no broker
        assert set(answered) == {200}, f"the page's requests answered {out}"
        if self.daemon.web is not None:
            self.daemon.web.stop()


def browse(base: str, route: str) -> int:
    """What the page's script asks of a daemon, as often, until SIGTERM; then the answers'
    HTTP statuses and their counts as JSON on stdout."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    answered: Counter[int] = Counter()
    started = time.monotonic()
    due = {"/api/streams": 0.0, f"/api/stream?route={route}&stream=s0": 0.0, "/healthz": 0.0}
    every = {"/api/streams": 2.0, "/healthz": 5.0}
    while not stop.is_set():
        now = time.monotonic() - started
        for path, at in due.items():
            if now >= at:
                answered[_get(base + path)] += 1
                due[path] = at + every.get(path, 1.0)
        stop.wait(0.05)
    print(json.dumps(answered))
    return 0


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as exc:
        exc.read()
        return exc.code


def page_answers(bundle: Path, work: list[list[Message]]) -> dict[str, float]:
    """Milliseconds of CPU per answer of the page's two requests, on a daemon that has
    scored ``work``: the streams list (every stream filtered, sorted and 200 written) and a
    stream's full chart."""
    from sensord.daemon.web.app import WebApp

    options = CONFIGS["+web open"]
    with tempfile.TemporaryDirectory() as state:
        daemon = Daemon(settings_for(bundle, Path(state), options))
        board = daemon.board
        assert board is not None
        for batch in work:
            daemon.process(batch)
        route = daemon.routes[0].name
        board.describe(daemon.routes)
        board.chart(route, "s0", wait_s=0)  # asks for it
        board.stream_lists(wait_s=0)  # someone looks
        board.turn(daemon.routes, time.monotonic())
        later = 1.7e9 + len(work) * BATCH  # past every reading of ``work``
        for batch in batches(1, daemon.settings.web.points, t0=later):
            daemon.process(batch)  # s0's chart fills
        board.turn(daemon.routes, time.monotonic() + 1)
        app = WebApp(board, daemon.settings.web, health=None, shown=None, max_feedback_bytes=1)
        figures = {}
        statuses: list[str] = []

        def respond(status: str, headers: list[tuple[str, str]]) -> None:
            statuses.append(status)

        for name, query in (("streams_list_ms", "/api/streams"), ("chart_ms", "/api/stream")):
            path, _, arguments = query.partition("?")
            arguments = f"route={route}&stream=s0" if path == "/api/stream" else ""
            environ = {
                "PATH_INFO": path,
                "REQUEST_METHOD": "GET",
                "QUERY_STRING": arguments,
                "HTTP_HOST": "127.0.0.1",
            }
            statuses.clear()
            started = time.process_time()
            for _ in range(ANSWERS):
                b"".join(app(environ, respond))
            figures[name] = (time.process_time() - started) / ANSWERS * 1e3
            assert set(statuses) == {"200 OK"}, f"{path} answered {set(statuses)}"
        daemon.durable.close()
    return figures


def train(work: Path) -> Path:
    from sensord.offline.synthetic import generate, write_csv
    from sensord.training.options import FitOptions, TrainOptions
    from sensord.training.train import train_bundle

    history = work / "history.csv"
    write_csv(history, generate(1200, seed=1))
    options = TrainOptions(name="bench", fit=FitOptions(epochs=3, hidden=64, layers=2))
    return train_bundle(history, work / "bundle", options).bundle.path


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--browse"]:  # the browser stand-in of Page, in its own process
        return browse(argv[1], argv[2])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, help="bundle to score with (default: train one)")
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--readings", type=int, default=60_000, help="per configuration and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    logs.configure("warning", "console")  # an alert line per alert would be measured too
    with tempfile.TemporaryDirectory() as tmp:
        bundle = args.bundle or train(Path(tmp))
        work = batches(args.streams, args.readings)
        figures: dict[str, list[float]] = {name: [] for name in CONFIGS}
        for _ in range(args.rounds):
            for name, options in CONFIGS.items():
                figures[name].append(cpu_per_reading(bundle, options, work))
        answers = page_answers(bundle, work)
    report(figures, args, answers)
    return 0


def report(
    figures: dict[str, list[float]], args: argparse.Namespace, answers: dict[str, float]
) -> None:
    plain = figures["plain"]
    rows = []
    print(f"{args.streams} streams, batches of {BATCH}, {args.rounds} rounds (CPU us/reading)")
    print(f"{'configuration':<16}{'median':>9}{'min':>9}{'vs plain':>10}")
    for name, values in figures.items():
        # Same-round ratios: each round's figure over the plain daemon's in that round.
        ratio = statistics.median(v / p for v, p in zip(values, plain, strict=True))
        rows.append(
            {
                "configuration": name,
                "median_us": round(statistics.median(values), 3),
                "min_us": round(min(values), 3),
                "ratio_to_plain": round(ratio, 3),
                "rounds_us": [round(v, 3) for v in values],
            }
        )
        print(f"{name:<16}{statistics.median(values):>9.2f}{min(values):>9.2f}{ratio:>10.3f}")
    print(f"page answers, CPU ms each ({args.streams} streams): ", end="")
    print(", ".join(f"{k} {v:.2f}" for k, v in answers.items()))
    if args.json:
        result = {
            "streams": args.streams,
            "readings": args.readings,
            "rows": rows,
            "page_answers_ms": {k: round(v, 3) for k, v in answers.items()},
        }
        args.json.write_text(json.dumps(result, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    sys.exit(main())
