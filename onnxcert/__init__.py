"""onnxcert: certified confidence for ONNX image classifiers by randomized smoothing.

Noise is added in [0, 1] pixel space after resize/crop and before (x - mean) / std; radii are
L2 norms in the same units as sigma.

>>> import numpy as np, onnxcert
>>> rng = np.random.default_rng(0)
>>> est = rng.dirichlet([20, 1, 1], size=(1, 1000)); sel = rng.dirichlet([20, 1, 1], size=(1, 50))
>>> result = onnxcert.certify_scores(est, sel, sigma=0.25, n=1000, n0=50)
>>> result.records[0].prediction
0
"""

from __future__ import annotations

__version__ = "0.1.0"

import importlib
from typing import TYPE_CHECKING

from .errors import ConfigError, DependencyError, InputError, ModelError, OnnxCertError, RunInterrupted

# Loaded on first use, so that ``import onnxcert`` (and ``onnxcert --help``) stays fast.
_LAZY = {
    "certify_model": "api", "certify_scores": "api", "check_model": "api", "gate_report": "api", "summarize": "api",
    "Config": "config", "ModelConfig": "config", "PreprocessConfig": "config", "Settings": "config",
    "Record": "report", "CertificationResult": "scores", "prepare_bands": "bandstore",
}

if TYPE_CHECKING:
    from .api import certify_model, certify_scores, check_model, gate_report, summarize
    from .bandstore import prepare_bands
    from .config import Config, ModelConfig, PreprocessConfig, Settings
    from .report import Record
    from .scores import CertificationResult

__all__ = [
    "__version__",
    "certify_model",
    "certify_scores",
    "check_model",
    "gate_report",
    "prepare_bands",
    "summarize",
    "CertificationResult",
    "Config",
    "ConfigError",
    "DependencyError",
    "InputError",
    "ModelConfig",
    "ModelError",
    "OnnxCertError",
    "PreprocessConfig",
    "Record",
    "RunInterrupted",
    "Settings",
]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
