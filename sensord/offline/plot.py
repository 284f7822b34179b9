"""The replay picture: signal vs expected, score vs threshold, alert spans shaded.

matplotlib is the ``plot`` extra; it is imported only when a plot is asked for.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt

from sensord.errors import InputError
from sensord.offline.replay import ReplayResult


def write_plot(path: Path, result: ReplayResult, stream: str | None = None) -> None:
    """Write a PNG of one stream (default: the first) of a replay."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise InputError(
            f"{path}: plotting needs matplotlib (pip install 'sensord[plot]')"
        ) from None
    series = result.series
    stream = stream or series.stream_names[0]
    rows = [i for i in series.stream_rows(stream) if result.outcomes[i] is not None]
    times = [datetime.fromtimestamp(float(series.timestamps[i]), tz=UTC) for i in rows]
    outcomes = [result.outcomes[i] for i in rows]
    nan = float("nan")
    expected = np.array(
        [
            o.expected if o is not None and o.expected is not None else [nan] * len(series.features)
            for o in outcomes
        ]
    )
    scores = np.array([o.score if o is not None else nan for o in outcomes])
    alerts = np.array([o.alert if o is not None else False for o in outcomes])

    features = len(series.features)
    fig, axes = plt.subplots(features + 1, 1, figsize=(12, 2.6 * (features + 1)), sharex=True)
    for k, name in enumerate(series.features):
        ax = axes[k]
        ax.plot(times, series.values[rows, k], lw=0.8, color="tab:blue", label=name)
        ax.plot(
            times, expected[:, k], lw=0.8, color="tab:orange", alpha=0.8, label=f"expected {name}"
        )
        ax.set_ylabel(name)
        ax.legend(loc="upper left", fontsize=8)
    score_ax = axes[-1]
    score_ax.plot(times, scores, lw=0.8, color="tab:red", label="score")
    score_ax.axhline(
        result.threshold, color="black", ls="--", lw=0.8, label=f"threshold {result.threshold:g}"
    )
    score_ax.set_ylim(-0.02, 1.02)
    score_ax.set_ylabel("score")
    score_ax.legend(loc="upper left", fontsize=8)
    for start, end in _spans(alerts):
        for ax in axes:
            ax.axvspan(times[start], times[end], color="tab:red", alpha=0.15, lw=0)
    fig.suptitle(f"{series.path.name} · stream {stream} · alerts shaded", fontsize=10)
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=110)
    except OSError as exc:
        raise InputError(f"{path}: cannot write the plot ({exc.strerror})") from None
    finally:
        plt.close(fig)


def _spans(flags: npt.NDArray[np.bool_]) -> list[tuple[int, int]]:
    """(first, last) index of each run of True."""
    spans, start = [], None
    for i, flag in enumerate(flags):
        if flag and start is None:
            start = i
        elif not flag and start is not None:
            spans.append((start, i))
            start = None
    if start is not None:
        spans.append((start, len(flags) - 1))
    return spans
