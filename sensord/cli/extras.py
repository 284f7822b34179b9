"""Optional extras, checked before a command does any work that would need them.

A command that trains (``train``, ``retrain``, the demo when it has no bundle yet) needs the
``train`` extra, a plot needs ``plot``, settings in cluster mode (``run``, ``check-config``)
need ``cluster``. Finding that out from an ImportError after minutes of
work (training, replaying a file) wastes the user's time, so commands ask here first. Only
whether the modules can be found is checked: importing torch takes seconds.
"""

from __future__ import annotations

import importlib.util
import sys

from sensord.errors import InputError, missing_cluster_extra, missing_train_extra

TRAIN_MODULES = ("torch", "onnx", "tqdm")
CLUSTER_MODULES = ("nats",)  # nats-py


def missing(modules: tuple[str, ...]) -> str | None:
    """The first of ``modules`` that is not installed, or None."""
    for name in modules:
        if name in sys.modules:
            if sys.modules[name] is None:  # import blocked (as python -X or a test does)
                return name
        elif importlib.util.find_spec(name) is None:
            return name
    return None


def require_train_extra(command: str) -> None:
    """Raise (a one-line error naming the extra) unless torch, onnx and tqdm are there."""
    module = missing(TRAIN_MODULES)
    if module is not None:
        raise missing_train_extra(command, module)


def require_plot_extra(command: str) -> None:
    if missing(("matplotlib",)) is not None:
        raise InputError(
            f"sensord {command} --plot needs the plot extra (matplotlib is missing): "
            "pip install 'sensord[plot]'"
        )


def require_cluster_extra(where: str) -> None:
    """Raise (a one-line ConfigError with the install line) unless nats-py is there; the
    settings at ``where`` are in cluster mode."""
    module = missing(CLUSTER_MODULES)
    if module is not None:
        raise missing_cluster_extra(where, module)
