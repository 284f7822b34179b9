"""The compiled per-reading path: the detector, the alert lifecycle and a stream's
bookkeeping as one machine-code loop over a batch's readings (numba).

The numpy modules beside this package (detect/, alert.py, step.py) are the reference: they
say what a reading does to its stream, a wave of streams at a time. A wave of one reading
costs them some 500 numpy calls on arrays of one row, so the same arithmetic is written
here once more, per reading, in functions numba compiles and caches on disk: one
call runs every reading of a micro-batch, stream by stream, in each stream's order.
``tests/core/test_compiled.py`` replays generated streams and benchmark files through both
and requires the same alerts, and scores within 1e-9.

Why numba: it compiles this numpy-flavoured Python as it stands (no second language to
build for x86_64 and aarch64), caches machine code on disk, and its wheels exist for every
platform sensord runs on. The modules: ``maths`` (scalar helpers), ``channels`` (the error
scale and the channels), ``tails`` (the calibrated tails and their histograms), ``alerts``
(the lifecycle), ``kernel`` (a reading's whole step) and ``path`` (the Python side: the
columns and settings the kernel takes, the engine's sequence runs, the batch's outcomes).
"""
