"""A bundle's manifest as training would write it, with no graph behind it: for the
persistence engine compiling the kernels (compiled/warmup.py) and for the tests' numpy LSTM."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from sensord.core.bundle import Bundle, Calibration, Graph, Manifest, Scaling, Training


def in_memory(
    features: Sequence[str] = ("value",),
    *,
    name: str = "in-memory",
    version: str = "1",
    layers: int = 1,
    hidden: int = 8,
    center: float = 50.0,
    scale: float = 10.0,
    time_features: Sequence[str] = (),
) -> Bundle:
    """A bundle's manifest as training would write it, with no graph behind it (for the
    persistence engine compiling the kernels; for the tests' numpy LSTM)."""
    n = len(features)
    manifest = Manifest.model_validate(
        {
            "format_version": 1,
            "name": name,
            "version": version,
            "sensord_version": "in-memory",
            "features": list(features),
            "time_features": list(time_features),
            "layers": layers,
            "hidden": hidden,
            "scaling": Scaling(
                center=[center] * n,
                scale=[scale] * n,
                low=[center - 3 * scale] * n,
                high=[center + 3 * scale] * n,
            ),
            "graph": Graph(sha256="0" * 64, opset=17),
            "calibration": Calibration(
                smoothing=0.1,
                error_floor=0.01,
                log_error_mean=-2.0,
                log_error_std=0.5,
                threshold_error=0.6,
                samples=500,
            ),
            "training": Training(
                source="in-memory.csv",
                rows=1000,
                train_rows=800,
                validation_rows=200,
                skipped_rows=0,
                streams=1,
                data_start="2026-01-01T00:00:00Z",
                data_end="2026-01-04T11:15:00Z",
                median_interval_s=300.0,
                epochs_run=1,
                best_epoch=1,
                train_loss=0.1,
                validation_loss=0.1,
                validation_mae=0.2,
                persistence_mae=0.25,
                seed=0,
            ),
        }
    )
    return Bundle(Path("/nonexistent/in-memory-bundle"), manifest, b"")
