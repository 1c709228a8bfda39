"""The statistics core: pure NumPy/SciPy, no I/O, no model.

- ``label``: Cohen et al. 2019's label certificate and PREDICT;
- ``confidence``: Kumar et al. 2020's Theorem 1 (naive) and Theorem 2 (CDF) bounds, radius solver;
- ``bands``/``berk_jones``: the DKW and the calibrated Berk-Jones simultaneous bands;
- ``certify``: all of the above for one input.
"""

from .bands import DKWBand, RankBand
from .berk_jones import bj_band, bonferroni_band
from .bounds import clopper_pearson_lower, dkw_eps, hoeffding_eps, phi_inv
from .certify import (
    METHOD_DESCRIPTIONS,
    METHODS,
    ConfidenceCertificate,
    InputCertificate,
    band_for,
    certify_measure,
    certify_samples,
)
from .confidence import EmpiricalTail, StepBound, cdf_bounds, exact_tail_bound, naive_bounds
from .label import ABSTAIN, LabelCertificate, Prediction, label_certificate, predict
from .measures import MEASURES, measure_range, predict_class, score_and_margin, softmax, votes_for

__all__ = [
    "ABSTAIN", "MEASURES", "METHODS", "METHOD_DESCRIPTIONS",
    "ConfidenceCertificate", "DKWBand", "EmpiricalTail", "InputCertificate", "LabelCertificate",
    "Prediction", "RankBand", "StepBound",
    "band_for", "bj_band", "bonferroni_band", "cdf_bounds", "certify_measure", "certify_samples",
    "clopper_pearson_lower", "dkw_eps", "exact_tail_bound", "hoeffding_eps", "label_certificate",
    "measure_range", "naive_bounds", "phi_inv", "predict", "predict_class", "score_and_margin",
    "softmax", "votes_for",
]
