"""sensord: streaming anomaly detection for sensor streams, one LSTM step at a time."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("sensord")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
