"""The one exception hierarchy of sensord.

Every error that a user can cause or fix derives from :class:`SensordError` and reads as one
line naming the thing at fault (a file, a row, a field, a topic) and the reason. Errors from
libraries (onnxruntime, pydantic, the csv module, torch) are translated into these at the edge
where they happen, so callers only ever catch sensord's own types::

    SensordError
    ├── InputError          bad data: a CSV file, a row, a cell, a payload
    ├── BundleError         a model bundle that cannot be trusted or read
    ├── ConfigError         settings that do not validate
    └── TrainingError       training could not produce a valid bundle
        └── ParityError     the exported graph does not reproduce the torch model
"""


class SensordError(Exception):
    """Base of every error sensord raises on purpose."""


class InputError(SensordError):
    """Input data is missing, malformed or unusable."""


class BundleError(SensordError):
    """A model bundle is missing, corrupt, tampered with or of an unknown format."""


class ConfigError(SensordError):
    """Settings do not validate."""


class TrainingError(SensordError):
    """Training could not produce a valid bundle."""


class ParityError(TrainingError):
    """The exported ONNX step does not reproduce the torch model within tolerance."""


def missing_train_extra(command: str, module: str | None) -> SensordError:
    """The error for a torch-side command run where the train extra is not installed."""
    return SensordError(
        f"sensord {command} needs the train extra ({module} is missing): "
        "pip install torch==2.13.0 && pip install 'sensord[train]'"
    )
