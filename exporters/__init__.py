"""torch -> ONNX exporters for onnxcert (torch, from the ``[export]`` extra, is imported here only).

- ``export_model``: any torch.nn.Module -> ONNX with a dynamic batch axis, an explicit opset, the
  onnxcert metadata sections (preprocess, classes, output kind, training sigma) and a parity check
  of onnxruntime against torch.
- ``export_checkpoint``: the same from a module path, a class or factory name and a checkpoint
  read with ``torch.load(weights_only=True)``.
- ``export_cohen``: the CIFAR-10 ResNet-110 and ImageNet ResNet-50 of Cohen et al. (2019), from
  their published checkpoints.

Command line, from the repository root: ``python -m exporters generic ...`` and ``... cohen ...``.
This folder sits beside the ``onnxcert`` package and is not installed with it (a top-level
package named ``exporters`` would clash with another well-known package): nothing in
``onnxcert/`` imports torch, so the runtime certifies ONNX models without it. The errors join
onnxcert's tree (``ExportError`` is an ``OnnxCertError``).
"""

from __future__ import annotations

import importlib

from .errors import CheckpointError, ExportError, ParityError

_LAZY = {
    "check_parity": "onnx_export", "export_model": "onnx_export", "ExportResult": "onnx_export",
    "NormalizeLayer": "onnx_export", "Parity": "onnx_export", "DEFAULT_ATOL": "onnx_export",
    "DEFAULT_OPSET": "onnx_export", "DEFAULT_RTOL": "onnx_export",
    "extract_state_dict": "checkpoint", "load_checkpoint": "checkpoint", "load_weights": "checkpoint",
    "build_model": "generic", "export_checkpoint": "generic", "load_factory": "generic",
    "ARCHITECTURES": "cohen", "DATASETS": "cohen", "export_cohen": "cohen",
    "get_architecture": "cohen", "load_cohen_checkpoint": "cohen",
}
INSTALL_HINT = "the exporters need torch: pip install 'onnxcert[export]'"
__all__ = sorted([*_LAZY, "CheckpointError", "ExportError", "ParityError", "INSTALL_HINT", "require_torch"])


def require_torch() -> None:
    """Raise ImportError with the install hint when torch cannot be imported."""
    try:
        import torch  # noqa: F401
    except ImportError:
        raise ImportError(INSTALL_HINT) from None


def __getattr__(name: str):
    """Import torch only when an exporter is used, so that a missing extra gives one clear line."""
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    require_torch()
    return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)

