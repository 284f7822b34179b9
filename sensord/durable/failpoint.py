"""Failpoints: named places where a crash test can kill the process on purpose.

``SENSORD_FAILPOINT=snapshot.renamed`` makes the process SIGKILL itself the moment it reaches
``reached("snapshot.renamed")``: no handler, no cleanup, exactly like a power cut or the OOM
killer at that step. The variable is read when a failpoint is reached (rarely: only on
paths such as writing a snapshot), never at import. Unset, a failpoint does nothing.
"""

from __future__ import annotations

import os
import signal

FAILPOINT_ENV = "SENSORD_FAILPOINT"


def reached(name: str) -> None:
    """Die here if the crash test asked for it."""
    if os.environ.get(FAILPOINT_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
