"""Judging a retrained candidate: both models run through the daemon's own core on the
newest recorded rows (each warmed up on the rows just before), and the rules the candidate
must keep to be promoted. No torch here: the core runs the bundles' graphs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sensord.arrays import F64, Bools
from sensord.core.bundle import Bundle
from sensord.core.engine import Engine
from sensord.core.pipeline import Pipeline, PipelineSettings
from sensord.core.sample import SCORED
from sensord.offline.nabscore import STANDARD, prepare, score_corpus
from sensord.ops.history import Recording
from sensord.ops.models import DataFigures, Figures

Windows = dict[str, list[tuple[float, float]]]


@dataclass(frozen=True)
class Split:
    """Row masks over the recording, and the figures of the split."""

    train: Bools
    warm: Bools
    holdout: Bools
    excluded: Bools
    windows: Windows
    data: DataFigures


def judge(
    bundle: Bundle, settings: PipelineSettings, recording: Recording, split: Split, batch: int
) -> Figures:
    """Run the warm-up rows, then the holdout, through a fresh core; figures of the holdout."""
    pipeline = Pipeline(Engine(bundle), settings)
    _feed(pipeline, recording, np.flatnonzero(split.warm), batch)
    rows, status, expected, raised = _feed(
        pipeline, recording, np.flatnonzero(split.holdout), batch
    )
    scored = status == SCORED
    clean = scored & ~split.excluded[rows]
    errors = np.abs(recording.values[rows[clean]] - expected[clean]).mean(axis=1)
    count = int(scored.sum())
    return Figures(
        version=bundle.manifest.version,
        scored=count,
        mae=float(errors.mean()) if errors.size else float("nan"),
        mae_rows=int(errors.size),
        alerts=int(raised.sum()),
        alert_rate=1000.0 * float(raised.sum()) / count if count else float("nan"),
        nab=_nab(recording, rows, raised, split.windows),
    )


def _feed(
    pipeline: Pipeline, recording: Recording, rows: npt.NDArray[np.intp], batch: int
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.int8], F64, Bools]:
    """Feed rows in time order, as the daemon receives them; per row fed: its index,
    status, expected values and whether it raised an alert."""
    ts = recording.timestamps
    rows = rows[np.argsort(ts[rows], kind="stable")]
    status = np.empty(len(rows), dtype=np.int8)
    expected = np.empty((len(rows), recording.values.shape[1]))
    raised = np.zeros(len(rows), dtype=bool)
    for start in range(0, len(rows), batch):
        chunk = rows[start : start + batch]
        out = pipeline.process_batch(
            [recording.streams[i] for i in chunk], ts[chunk], recording.values[chunk]
        )
        status[start : start + len(chunk)] = out.status
        expected[start : start + len(chunk)] = out.expected
        for i, event in out.events:
            raised[start + i] = event.event == "raised"
    return rows, status, expected, raised


def _nab(
    recording: Recording, rows: npt.NDArray[np.intp], raised: Bools, windows: Windows
) -> float | None:
    """NAB (standard profile) of the alerts raised, one file per stream, the confirmed
    alerts as windows; None when no alert on the holdout was confirmed."""
    if not windows:
        return None
    streams = np.asarray([recording.streams[i] for i in rows], dtype=object)
    files = []
    for stream in dict.fromkeys(streams.tolist()):
        mine = streams == stream
        stamps = recording.timestamps[rows[mine]]
        # Warmed up before the holdout: no probation rows.
        onsets = raised[mine].astype(np.float64)
        files.append(prepare(stream, stamps, onsets, windows.get(stream, []), probation=0))
    return float(score_corpus(files, STANDARD, threshold=1.0).normalized)


def failed_rules(live: Figures, candidate: Figures, tolerance: float) -> list[str]:
    """Every rule the candidate breaks, each naming the figures."""
    reasons = []
    if not candidate.mae <= live.mae * (1 + tolerance):
        reasons.append(
            f"error: candidate MAE {candidate.mae:.6g} > live {live.mae:.6g} x {1 + tolerance:g}"
        )
    one_alert = 1000.0 / candidate.scored if candidate.scored else 0.0
    rate_limit = live.alert_rate * (1 + tolerance) + one_alert
    if not candidate.alert_rate <= rate_limit:
        reasons.append(
            f"alert rate: candidate {candidate.alert_rate:.3g}/1000 > live "
            f"{live.alert_rate:.3g}/1000 x {1 + tolerance:g} + one alert = {rate_limit:.3g}"
        )
    if live.nab is not None and candidate.nab is not None:
        nab_limit = live.nab - tolerance * abs(live.nab)
        if not candidate.nab >= nab_limit:
            reasons.append(
                f"NAB: candidate {candidate.nab:.4g} < live {live.nab:.4g} - "
                f"{tolerance:g} x |live| = {nab_limit:.4g}"
            )
    return reasons
