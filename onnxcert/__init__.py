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

from .api import certify_model, certify_scores, gate_report, summarize
from .config import Config, ModelConfig, PreprocessConfig, Settings
from .errors import ConfigError, DependencyError, InputError, ModelError, OnnxCertError, RunInterrupted
from .report import Record
from .scores import CertificationResult

__all__ = [
    "__version__",
    "certify_model",
    "certify_scores",
    "gate_report",
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
