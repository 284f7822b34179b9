"""Training options the tests share: a tiny network that trains in seconds."""

from sensord.training.options import FitOptions

SMALL = FitOptions(epochs=3, hidden=8, layers=1, window=32, seed=7)
