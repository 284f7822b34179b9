"""The value transform a bundle applies after scaling (``transform`` in the manifest).

``asinh`` is linear near zero and logarithmic far from it: ordinary values keep their shape,
while a spike of a thousand standard deviations becomes about 7.6, so it neither saturates
the LSTM's state nor dominates the error statistics that follow it. It is monotone, so
orderings and ranges (the range rule) mean the same before and after.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt

Transform = Literal["none", "asinh"]
F64 = npt.NDArray[np.float64]


def forward(transform: Transform, scaled: F64) -> F64:
    return np.arcsinh(scaled) if transform == "asinh" else scaled


def inverse(transform: Transform, value: F64) -> F64:
    return np.sinh(value) if transform == "asinh" else value
