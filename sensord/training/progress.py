"""``sensord train`` with a progress bar (tqdm) that shows the losses, and Ctrl-C handling."""

from __future__ import annotations

import sys
from pathlib import Path

from tqdm import tqdm

from sensord.logs import get_logger
from sensord.training.options import TrainOptions
from sensord.training.train import TrainReport, train_bundle

log = get_logger(__name__)


def train_with_progress(data: Path, out: Path, options: TrainOptions) -> TrainReport:
    """Train with a bar on a terminal (a log line per run otherwise)."""
    with tqdm(
        total=options.fit.epochs,
        desc="training",
        unit="epoch",
        disable=not sys.stderr.isatty(),
        leave=False,
    ) as bar:

        def on_epoch(epoch: int, train_loss: float, validation: float, best: float) -> None:
            bar.update(1)
            bar.set_postfix(loss=f"{train_loss:.4f}", val=f"{validation:.4f}", best=f"{best:.4f}")

        report = train_bundle(data, out, options, on_epoch)
    t = report.bundle.manifest.training
    if t.interrupted:
        log.warning("training interrupted; kept the best model so far", best_epoch=t.best_epoch)
    if t.skipped_rows:
        log.warning(
            "rows skipped: empty or non-finite feature cells",
            file=str(data),
            skipped=t.skipped_rows,
        )
    return report
