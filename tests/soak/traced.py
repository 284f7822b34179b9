"""``sensord`` with a trace: every reading the core steps is appended to ``$SENSORD_TRACE``
as ``<stream> <timestamp>`` before the batch is acknowledged, with one ``write`` per batch
(the page cache keeps it through a kill -9 of this process). Only the crash tests use it.

    python -m tests.soak.traced run --config sensord.toml
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from sensord.cli import main as cli
from sensord.core.pipeline import Pipeline
from sensord.core.sample import FIRST, Scored


def trace_into(path: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    original = Pipeline.process_batch

    def traced(
        self: Pipeline,
        streams: Sequence[str],
        ts: npt.NDArray[np.float64],
        values: npt.NDArray[np.float64],
        received: npt.NDArray[np.float64] | None = None,
    ) -> Scored:
        out = original(self, streams, ts, values, received)
        stepped = np.flatnonzero(out.status <= FIRST)
        os.write(fd, "".join(f"{streams[i]} {ts[i]:.1f}\n" for i in stepped).encode())
        return out

    # Patched on the class: the daemon makes its pipelines itself. setattr, because mypy
    # rejects assigning to a method (ruff's B010 would have the assignment instead).
    setattr(Pipeline, "process_batch", traced)  # noqa: B010


if __name__ == "__main__":
    trace_into(os.environ["SENSORD_TRACE"])
    sys.exit(cli.main(sys.argv[1:]))
