"""The statistics core: pure NumPy/SciPy, no model. Names are loaded lazily (see ``__getattr__``).

- ``label``: Cohen et al. 2019's label certificate and PREDICT;
- ``confidence``: Kumar et al. 2020's Theorem 1 (naive) and Theorem 2 (CDF) bounds, radius solver;
- ``bands``/``berk_jones``: the DKW and the calibrated Berk-Jones simultaneous bands;
- ``certify``: all of the above for one input.
"""

import importlib

_LAZY = {
    "DKWBand": "bands", "RankBand": "bands",
    "bj_band": "berk_jones", "bonferroni_band": "berk_jones",
    "clopper_pearson_lower": "bounds", "dkw_eps": "bounds", "hoeffding_eps": "bounds", "phi_inv": "bounds",
    "METHOD_DESCRIPTIONS": "names", "METHODS": "names",
    "ConfidenceCertificate": "certify", "InputCertificate": "certify", "band_for": "certify", "certify_measure": "certify", "certify_samples": "certify",
    "EmpiricalTail": "confidence", "StepBound": "confidence", "cdf_bounds": "confidence", "exact_tail_bound": "confidence", "naive_bounds": "confidence",
    "ABSTAIN": "label", "LabelCertificate": "label", "Prediction": "label", "label_certificate": "label", "predict": "label",
    "MEASURES": "measures", "measure_range": "measures", "predict_class": "measures", "score_and_margin": "measures", "softmax": "measures", "votes_for": "measures",
}

__all__ = [
    "ABSTAIN", "MEASURES", "METHODS", "METHOD_DESCRIPTIONS",
    "ConfidenceCertificate", "DKWBand", "EmpiricalTail", "InputCertificate", "LabelCertificate",
    "Prediction", "RankBand", "StepBound",
    "band_for", "bj_band", "bonferroni_band", "cdf_bounds", "certify_measure", "certify_samples",
    "clopper_pearson_lower", "dkw_eps", "exact_tail_bound", "hoeffding_eps", "label_certificate",
    "measure_range", "naive_bounds", "phi_inv", "predict", "predict_class", "score_and_margin",
    "softmax", "votes_for",
]


def __getattr__(name: str):
    """Submodules load on first use: ``import onnxcert`` must not pay for SciPy's optimize,
    signal and stats (see docs/architecture.md)."""
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
