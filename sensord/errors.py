"""The one exception hierarchy of sensord.

Every error that a user can cause or fix derives from :class:`SensordError` and reads as one
line naming the thing at fault (a file, a row, a field, a topic) and the reason. Errors from
libraries (onnxruntime, pydantic, the csv module, torch) are translated into these at the edge
where they happen, so callers only ever catch sensord's own types::

    SensordError
    ├── InputError              bad data: a CSV file, a row, a cell, a payload
    │   ├── DecodeError         a reading's payload (``reason`` is its counter's name)
    │   ├── StreamIdError       a topic whose stream id is not a safe topic level
    │   └── FeedbackError       an operator's verdict that cannot be taken
    │       └── UnknownAlertError   it names an alert not raised on that stream
    ├── BundleError             a model bundle that cannot be trusted or read
    │   └── MalformedGraphError the graph's bytes are not a protobuf message
    ├── ClusterError            the engine (NATS) does not fit this member's settings
    │   └── LogError            the engine's readings log cannot be made as configured
    ├── ConfigError             settings that do not validate
    ├── StateError              the state directory's files (durable/)
    │   ├── JournalError        the readings journal cannot be written or read
    │   ├── OutboxError         the alert outbox cannot be written
    │   └── SnapshotError       a snapshot that cannot be restored
    └── TrainingError           training could not produce a valid bundle
        └── ParityError         the exported graph does not reproduce the torch model

The daemon catches the errors of single readings, verdicts and state files where they
happen, counts them and goes on (never a stop); commands print one line and exit non-zero.
A cluster member that meets a ``ClusterError`` while it starts logs it and tries again (the
engine may be another member's to set up, or be fixed meanwhile).
The ones that were ``ValueError`` before they joined this tree still are, so that code
parsing values may catch either.
"""


class SensordError(Exception):
    """Base of every error sensord raises on purpose."""


class InputError(SensordError):
    """Input data is missing, malformed or unusable."""


class BundleError(SensordError):
    """A model bundle is missing, corrupt, tampered with or of an unknown format."""


class ConfigError(SensordError):
    """Settings do not validate."""


class NameTakenError(ConfigError):
    """Another live cluster member has this member's name: a configuration to fix, not to
    retry (``sensord run`` exits with EX_CONFIG)."""


class ClusterError(SensordError):
    """The engine's buckets or streams do not fit this member's settings (a lease time
    other members do not share), or a cluster part was used before it was opened."""


class LogError(ClusterError):
    """The engine's readings log cannot be made as configured (another stream already
    takes its subjects); the message names the setting to change."""


class DecodeError(InputError, ValueError):
    """A payload that cannot become a reading; ``reason`` is a short counter name."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class StreamIdError(InputError, ValueError):
    """The topic gives a stream id that is not a safe topic level."""


class FeedbackError(InputError, ValueError):
    """A feedback message that cannot be taken; the text is the reason, for the answer."""


class UnknownAlertError(FeedbackError):
    """Feedback naming an alert this daemon did not raise on that stream."""


class MalformedGraphError(BundleError, ValueError):
    """The bytes are not a protobuf message."""


class StateError(SensordError):
    """A file of the state directory could not be written or read."""


class JournalError(StateError):
    """The journal could not be written or read; the message names the file and why."""


class OutboxError(StateError):
    """The outbox could not be written; the message names the file and the reason."""


class SnapshotError(StateError):
    """A snapshot that cannot be restored; the message says why."""


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


def missing_cluster_extra(where: str, module: str) -> ConfigError:
    """The error for settings in cluster mode where the cluster extra is not installed: a
    ConfigError, so that systemd does not restart what only an install can fix."""
    return ConfigError(
        f"{where}: cluster.url is set, and cluster mode needs the cluster extra ({module} is "
        "missing): pip install 'sensord[cluster]' (or unset cluster.url)"
    )
