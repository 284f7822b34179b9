"""What ``sensord train`` can be asked for, with its defaults: torch-free, so that the CLI
takes its defaults from here (each written once) without loading torch to parse a command."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from sensord.core.bundle import Cell
from sensord.core.transform import Transform
from sensord.offline.series import OutOfOrder

TimeOfDay = Literal["auto", "on", "off"]


@dataclass(frozen=True)
class FitOptions:
    epochs: int = 150
    hidden: int = 64
    layers: int = 2
    dropout: float = 0.1
    learning_rate: float = 3e-3
    batch_size: int = 32
    window: int = 64
    stride: int = 8
    max_windows_per_epoch: int = 512
    clip_norm: float = 1.0
    patience: int = 15
    seed: int = 0
    cell: Cell = "lstm"
    # The spread head: the model also predicts the standard deviation of its next error,
    # trained by Gaussian negative log-likelihood (fit.py), and the detector divides each
    # error by it (core/heads.py).
    spread: bool = False
    # The horizon head: the model also predicts the sample this many steps ahead (0: no),
    # and the detector also sees each reading against the prediction made that many steps
    # before (core/heads.py): a drift a next-step model follows step by step shows there.
    horizon: int = 0


@dataclass(frozen=True)
class TrainOptions:
    name: str = "model"
    version: str | None = None
    features: Sequence[str] | None = None
    out_of_order: OutOfOrder = "error"
    time_of_day: TimeOfDay = "auto"
    transform: Transform = "none"
    validation_fraction: float = 0.2
    fit: FitOptions = field(default_factory=FitOptions)
    # The virtual-sensor head (training/cross.py): each feature's error less what the other
    # features' errors explain; only for more than one feature.
    cross: bool = False
    # torch's intra-op threads. One by default: the nets are small, and when another process
    # holds a core, torch's threads wait for each other. Measured on 2 cores, 4 NAB
    # probationary sets: one thread 2.3-8 s idle, 4-13 s with both cores busy; two threads
    # 2.6-7 s idle, but 6-130 s with one core busy and 15-246 s with both. The bundle is
    # byte-identical for the same seed, data and threads (threads change the rounding).
    threads: int = 1
