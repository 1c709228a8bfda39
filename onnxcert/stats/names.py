"""The names of the certification methods, importable without SciPy (config, gate and report
validate and describe methods; only certifying needs the bounds)."""

from __future__ import annotations

METHODS = ("naive", "cdf-dkw", "cdf-bj")
METHOD_DESCRIPTIONS = {
    "naive": "Theorem 1 (Kumar et al. 2020) with Hoeffding's bound on the mean",
    "cdf-dkw": "Theorem 2 (Kumar et al. 2020) with the one-sided DKW band at every sampled value",
    "cdf-bj": "Theorem 2 (Kumar et al. 2020) with a calibrated Berk-Jones order-statistic band",
}
