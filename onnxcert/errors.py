"""The exceptions onnxcert raises on purpose.

::

    OnnxCertError            anything the user can fix; the CLI prints one line and exits non-zero
    ├── ConfigError          a setting, flag or config file is invalid           (exit 2)
    ├── InputError           an input path, image, array or report is unusable   (exit 2)
    ├── ModelError           the ONNX model cannot be loaded or run as a classifier (exit 3)
    ├── DependencyError      an optional dependency is missing; names the extra   (exit 2)
    └── RunInterrupted       SIGINT/SIGTERM stopped a run; partial results kept    (exit 130)

Anything else escaping the CLI is a bug in onnxcert and is shown with its traceback.
"""

from __future__ import annotations


class OnnxCertError(Exception):
    """Base class: a problem the user can fix. The message is one line."""

    exit_code = 1


class ConfigError(OnnxCertError):
    """A setting is missing, of the wrong type or out of range."""

    exit_code = 2


class InputError(OnnxCertError):
    """An input path, image, array or report cannot be used."""

    exit_code = 2


class ModelError(OnnxCertError):
    """The ONNX model cannot be loaded, or is not an [N, k] classifier, or produced NaN/inf."""

    exit_code = 3


class DependencyError(OnnxCertError):
    """An optional dependency is not installed."""

    exit_code = 2


class RunInterrupted(OnnxCertError):
    """The run was stopped by a signal; finished inputs are on disk."""

    exit_code = 130


__all__ = [
    "OnnxCertError",
    "ConfigError",
    "InputError",
    "ModelError",
    "DependencyError",
    "RunInterrupted",
]
