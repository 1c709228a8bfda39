"""Closed-form checks of the elementary bounds and the label certificate (Cohen et al. 2019)."""

import math

import numpy as np
import pytest
from scipy import stats

from onnxcert.stats import (
    ABSTAIN,
    DKWBand,
    clopper_pearson_lower,
    dkw_eps,
    hoeffding_eps,
    label_certificate,
    phi_inv,
    predict,
)


def test_hoeffding_and_dkw_eps_closed_form():
    # sqrt(ln(1/alpha) / (2n)): Hoeffding 1963; Massart 1990 for the one-sided DKW band
    assert hoeffding_eps(100_000, 0.001) == pytest.approx(math.sqrt(math.log(1000) / 200_000), rel=1e-15)
    assert dkw_eps(100_000, 0.001) == pytest.approx(0.005877, abs=1e-6)  # the 0.0059
    # above alpha = 1/2 the one-sided Massart bound is not proven: the two-sided width is used
    assert dkw_eps(100, 0.8) == pytest.approx(math.sqrt(math.log(2 / 0.8) / 200))


@pytest.mark.parametrize("k,n", [(1, 10), (5, 10), (9, 10), (500, 1000), (99_990, 100_000)])
def test_clopper_pearson_matches_scipy_binomtest(k, n):
    alpha = 0.001
    p, q = clopper_pearson_lower(k, n, alpha)
    # the two-sided exact interval at confidence 1 - 2 alpha has our one-sided bound as its low end
    low = stats.binomtest(k, n).proportion_ci(confidence_level=1 - 2 * alpha, method="exact").low
    assert float(p) == pytest.approx(low, rel=1e-9)
    assert float(p) + float(q) == pytest.approx(1.0, abs=1e-14)


def test_clopper_pearson_edges():
    p, q = clopper_pearson_lower(0, 50, 0.01)
    assert (float(p), float(q)) == (0.0, 1.0)
    # k = n: p_lower = alpha^(1/n) (closed form); q keeps its digits where 1 - p would not
    n, alpha = 10**9, 0.001
    p, q = clopper_pearson_lower(n, n, alpha)
    assert float(q) == pytest.approx(-math.expm1(math.log(alpha) / n), rel=1e-9)
    assert float(q) > 0


def test_phi_inv_never_nan_and_uses_the_precise_side():
    z = phi_inv([0.0, 1.0, 0.5], [1.0, 0.0, 0.5])
    assert z[0] == -np.inf and z[1] == np.inf and z[2] == 0.0
    # p = 1 - 1e-20 is 1.0 in floating point, but q = 1e-20 carries it: Phi^-1 = 9.262...
    assert float(phi_inv(1.0, 1e-20)) == pytest.approx(stats.norm.isf(1e-20), rel=1e-12)


def test_dkw_band_clips_to_unit_interval():
    band = DKWBand(100, 0.05)
    g, q = band.lower(np.array([0, 1, 50, 100]))
    assert g.min() >= 0 and g[0] == 0 and q[0] == 1
    assert g[-1] == pytest.approx(1 - band.eps) and q[-1] == pytest.approx(band.eps)


@pytest.mark.parametrize("votes,n", [(990, 1000), (600, 1000), (1000, 1000), (99_999, 100_000)])
def test_label_radius_is_sigma_phi_inv_p_lower(votes, n):
    sigma, alpha = 0.5, 0.001
    cert = label_certificate(votes, n, sigma, alpha)
    p_lower = stats.beta.ppf(alpha, votes, n - votes + 1)  # computed independently
    assert cert.p_lower == pytest.approx(p_lower, rel=1e-9)
    assert cert.radius == pytest.approx(sigma * stats.norm.ppf(p_lower), rel=1e-7)


def test_label_abstains_below_one_half():
    cert = label_certificate(520, 1000, 0.25, 0.001)  # p_hat 0.52 but p_lower < 1/2
    assert cert.p_lower < 0.5 and cert.radius is None
    assert label_certificate(0, 1000, 0.25, 0.001).radius is None


def test_predict_binomtest():
    assert predict([0, 90, 10], alpha=0.001).label == 1
    tie = predict([50, 50, 0], alpha=0.001)
    assert tie.label == ABSTAIN and tie.p_value == pytest.approx(1.0)
    # 60 vs 40 of 100: two-sided p = 0.057 > 0.05 -> abstain; at alpha 0.1 -> class 0
    assert predict([60, 40], alpha=0.05).label == ABSTAIN
    assert predict([60, 40], alpha=0.1).label == 0
