"""One retrain child process: ``sensord retrain --route NAME`` started bounded in CPU, watched
without waiting, and its outcome read from the route's decision log (continual.py runs it).

The child runs in a session of its own, at ``nice``, with ``max_cpu_s`` as its RLIMIT_CPU
(SIGXCPU at the limit, SIGKILL ``CPU_GRACE_S`` later) and ``threads`` torch and OpenMP
threads; its output goes to ``<models_dir>/<route>/continual.log``. Whether it ended is
asked of the kernel without blocking (``wait4``, which also gives its CPU time); what it
decided is the last promoted, refused or skipped record it appended to ``decisions.jsonl``
(``sensord retrain`` logs every decision there). A child that ends without one failed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import orjson

from sensord.ops.models import DECISIONS

Outcome = Literal["promoted", "refused", "skipped", "failed"]
OUTCOMES: tuple[Outcome, ...] = ("promoted", "refused", "skipped", "failed")
DECIDED = ("promoted", "refused", "skipped")  # what sensord retrain logs
CPU_GRACE_S = 5  # RLIMIT_CPU's hard limit past the soft one
CHILD_LOG = "continual.log"  # the last attempt's output, beside the route's decisions
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")

# What the child runs: it lowers its own priority and sets its own CPU limit first, then
# runs `sensord retrain` in the same process (so the pid the daemon holds is the retrain's).
# Not subprocess's preexec_fn: that runs Python between fork and exec in a process with
# threads (the metrics and web servers), and makes subprocess fork() the daemon's whole
# address space in the loop thread instead of vfork()ing it.
# Where a seccomp filter refuses (systemd's SystemCallFilter=~@resources), it says so and
# runs nothing: never a retrain unbounded.
CHILD = """\
import os, resource, sys
nice, cpu, grace = (int(arg) for arg in sys.argv[1:4])
try:
    os.setpriority(os.PRIO_PROCESS, 0, max(nice, os.getpriority(os.PRIO_PROCESS, 0)))
    hard = resource.getrlimit(resource.RLIMIT_CPU)[1]
    hard = cpu + grace if hard == resource.RLIM_INFINITY else min(cpu + grace, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (min(cpu, hard), hard))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
except OSError as exc:
    sys.exit(
        f"sensord: error: the retrain child cannot lower its priority and CPU limit "
        f"({exc.strerror}); let the service do so: SystemCallFilter=setpriority setrlimit "
        "prlimit64 (docs/operations.md, continual learning)"
    )
from sensord.cli.main import main
sys.exit(main(sys.argv[4:]))
"""


@dataclass(frozen=True)
class Launch:
    """How a retrain child is started: the daemon's configuration file and the bounds."""

    config: Path
    nice: int
    max_cpu_s: int
    threads: int

    def argv(self, route: str) -> list[str]:
        limits = (str(self.nice), str(self.max_cpu_s), str(CPU_GRACE_S))
        command = ["retrain", "--route", route, "--config", str(self.config)]
        return [sys.executable, "-c", CHILD, *limits, *command]

    def env(self) -> dict[str, str]:
        return {**os.environ, **dict.fromkeys(THREAD_VARIABLES, str(self.threads))}


@dataclass(frozen=True)
class Ended:
    """How a child ended."""

    outcome: Outcome | Literal["stopped"]  # stopped: ended because the daemon stopped
    exit_code: int | None  # negative: ended by that signal; None: not known
    cpu_s: float  # its user + system time
    version: str | None  # the candidate's
    reasons: tuple[str, ...]


class RetrainChild:
    """A running ``sensord retrain`` for one route."""

    def __init__(self, launch: Launch, route: str, route_dir: Path) -> None:
        """Start it (OSError if it cannot be)."""
        self.launch, self.route_dir = launch, route_dir
        decisions = route_dir / DECISIONS
        self._decisions_at = decisions.stat().st_size if decisions.exists() else 0
        with (route_dir / CHILD_LOG).open("wb") as out:
            self._process = subprocess.Popen(
                launch.argv(route),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=launch.env(),
                start_new_session=True,  # a ^C at the terminal is the daemon's to pass on
            )
        self.pid = self._process.pid
        self.started = time.monotonic()

    def ended(self) -> Ended | None:
        """How it ended, once it has; None while it runs. Never waits."""
        reaped = self._wait4(block=False)
        return None if reaped is None else self._outcome(*reaped)

    def stop(self, wait_s: float) -> Ended:
        """SIGTERM to its pid, wait up to ``wait_s`` for it to end, then SIGKILL."""
        self._process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + wait_s
        reaped = self._wait4(block=False)
        while reaped is None and time.monotonic() < deadline:
            time.sleep(0.05)
            reaped = self._wait4(block=False)
        if reaped is None:
            self._process.send_signal(signal.SIGKILL)
            reaped = self._wait4(block=True)
        code, cpu_s = reaped if reaped is not None else (None, 0.0)
        return Ended("stopped", code, cpu_s, None, ("the daemon stopped",))

    def _wait4(self, *, block: bool) -> tuple[int | None, float] | None:
        """Its exit code and CPU seconds once it ended; None while it runs."""
        try:
            pid, status, usage = os.wait4(self.pid, 0 if block else os.WNOHANG)
        except ChildProcessError:  # reaped by someone else: its end is known, not its cost
            return None, 0.0
        if pid == 0:
            return None
        code = os.waitstatus_to_exitcode(status)
        self._process.returncode = code  # reaped here: Popen must not wait for it again
        return code, usage.ru_utime + usage.ru_stime

    def _outcome(self, code: int | None, cpu_s: float) -> Ended:
        decision = decision_after(self.route_dir / DECISIONS, self._decisions_at)
        if code in (0, None) and decision is not None:
            candidate = decision.get("candidate") or {}
            reasons = tuple(str(r) for r in decision.get("reasons") or ())
            return Ended(decision["decision"], code, cpu_s, candidate.get("version"), reasons)
        reason = failure(code, self.launch.max_cpu_s, self.route_dir / CHILD_LOG)
        return Ended("failed", code, cpu_s, None, (reason,))


def decision_after(path: Path, offset: int) -> dict[str, Any] | None:
    """The last retrain decision appended to ``path`` past ``offset``, if any."""
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            lines = handle.read().splitlines()
    except FileNotFoundError:
        return None
    for line in reversed(lines):
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue  # torn by a crash mid-append
        if isinstance(record, dict) and record.get("decision") in DECIDED:
            return record
    return None


def failure(code: int | None, max_cpu_s: int, output: Path) -> str:
    """Why a child that logged no decision failed, in one line."""
    if code == -signal.SIGXCPU:
        return f"ended by SIGXCPU: it used its max_cpu_s ({max_cpu_s} CPU seconds)"
    if code == -signal.SIGKILL:
        return "ended by SIGKILL (past its CPU limit's grace, or the kernel's OOM killer)"
    if code is not None and code < 0:
        return f"ended by {signal.Signals(-code).name}"
    try:
        lines = output.read_bytes()[-4096:].decode(errors="replace").strip().splitlines()
    except OSError:
        lines = []
    last = lines[-1] if lines else "no output"
    return f"exit code {code}: {last}" if code else f"no decision logged: {last}"
