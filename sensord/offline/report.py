"""Human-readable text for the CLI: bundles, alert events, replay summaries."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from sensord.core.alert import AlertEvent
from sensord.core.bundle import Bundle
from sensord.core.sample import Counters
from sensord.core.timestamps import format_timestamp
from sensord.offline.replay import ReplayResult

# What each of replay's ENGINES did, in the summary's words.
ENGINE_TEXT = {
    "lstm": "the bundle's network predicted each reading",
    "persistence": 'each reading predicted as its stream\'s last one ("repeat the last value"); '
    "the bundle's scaling, calibration and detector as with its network",
}


def describe_bundle(bundle: Bundle, verified: bool) -> str:
    m = bundle.manifest
    t, cal = m.training, m.calibration
    scaling = ", ".join(
        f"{name}: center {c:.6g} scale {s:.6g}"
        for name, c, s in zip(m.features, m.scaling.center, m.scaling.scale, strict=True)
    )
    lines = [
        f"bundle      {bundle.path}",
        f"model       {m.name} version {m.version} (format {m.format_version}, "
        f"written by sensord {m.sensord_version})",
        f"graph       {m.graph.file} opset {m.graph.opset} sha256 {m.graph.sha256}",
        f"network     {m.cell.upper()} {m.layers}x{m.hidden}, features {', '.join(m.features)}",
        f"scaling     {scaling}",
    ]
    if m.stream_scaling:
        lines.append(
            f"streams     {len(m.stream_scaling)} with their own scaling: "
            + ", ".join(sorted(m.stream_scaling)[:8])
            + (" …" if len(m.stream_scaling) > 8 else "")
        )
    lines += [
        f"data        {t.source}: {t.rows} rows ({t.skipped_rows} skipped), {t.streams} "
        f"stream(s), {t.data_start} to {t.data_end}, every {t.median_interval_s:g} s",
        f"split       {t.train_rows} train / {t.validation_rows} validation rows",
        f"training    {t.epochs_run} epochs, best {t.best_epoch}, seed {t.seed}"
        + (", interrupted (best so far kept)" if t.interrupted else ""),
        f"fit         validation MSE {t.validation_loss:.4g}, MAE {t.validation_mae:.4g} "
        f"(repeat-last-value MAE {t.persistence_mae:.4g})",
        f"calibration smoothing {cal.smoothing:g}, log error {cal.log_error_mean:.3f} "
        f"± {cal.log_error_std:.3f} over {cal.samples} samples, fixed threshold "
        f"{cal.threshold_error:.4g} (scaled error)",
    ]
    if verified:
        lines.append("verified    manifest fields, graph sha256, graph input/output shapes: ok")
    return "\n".join(lines)


def describe_events(events: Sequence[AlertEvent]) -> str:
    if not events:
        return "no alerts"
    header = (
        f"{'time':<25} {'stream':<16} {'event':<8} {'value':>12} {'expected':>12} "
        f"{'score':>6} severity"
    )
    lines = [header]
    for e in events:
        value = ", ".join(f"{v:.4g}" for v in e.values)
        expected = ", ".join(f"{v:.4g}" for v in e.expected)
        lines.append(
            f"{format_timestamp(e.ts):<25} {e.stream[:16]:<16} {e.event:<8} "
            f"{value:>12} {expected:>12} {e.score:>6.3f} {e.severity}"
        )
    return "\n".join(lines)


def describe_replay(result: ReplayResult, counters: Counters, out: Path, plot: Path | None) -> str:
    rows = len(result.outcomes)
    parts = [
        f"replayed {rows} rows in {result.seconds:.2f} s ({result.rows_per_second:,.0f} rows/s):",
        f"{counters.scored} scored, {counters.first} first of a stream, "
        f"{result.series.skipped} skipped (empty or non-finite cells), "
        f"{counters.duplicate + counters.late} dropped (not after the stream's last), "
        f"{counters.resets} gap resets; {counters.raised} alerts raised, "
        f"{counters.cleared} cleared",
        f"engine {result.engine}: {ENGINE_TEXT.get(result.engine, result.engine)}",
        f"wrote {out}" + (f" and {plot}" if plot is not None else ""),
    ]
    return "\n".join(parts)
