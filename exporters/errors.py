"""The exceptions the exporters raise on purpose.

::

    OnnxCertError (onnxcert.errors)
    └── ExportError            anything the user can fix; ``python -m exporters`` prints
        │                      one line, exits 1
        ├── CheckpointError    the checkpoint cannot be read, or does not fit the model
        └── ParityError        onnxruntime and torch disagree beyond the stated tolerance
"""

from __future__ import annotations

from onnxcert.errors import OnnxCertError


class ExportError(OnnxCertError):
    """A problem with the model, the checkpoint or the export settings. The message is one line."""


class CheckpointError(ExportError):
    """The checkpoint is missing, unreadable with ``weights_only=True``, or does not fit the model."""


class ParityError(ExportError):
    """The exported ONNX model does not reproduce the torch model within the tolerance."""


__all__ = ["ExportError", "CheckpointError", "ParityError"]
