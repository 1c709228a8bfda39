"""Properties of the certificates (hypothesis): monotone in R, in c and in n."""

import math

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from onnxcert.stats import certify_measure

METHODS = ["naive", "cdf-dkw", "cdf-bj"]
RADII = [0.0, 0.1, 0.25, 0.5, 1.0, 2.0]
scores = arrays(np.float64, st.integers(2, 120), elements=st.floats(0.0, 1.0))
fast = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _rank(r):
    return -1.0 if r is None else r


@fast
@given(z=scores, alpha=st.sampled_from([0.001, 0.05]), sigma=st.sampled_from([0.12, 0.5]))
def test_bounds_are_monotone_in_radius(z, alpha, sigma):
    res = certify_measure(z, "score", METHODS, sigma=sigma, alpha=alpha, thresholds=[0.5], radii=RADII)
    for cert in res.values():
        assert np.all(np.diff(cert.lower_bounds) <= 1e-12)
        assert np.all(np.diff(cert.upper_bounds) >= -1e-12)
        assert cert.lower_bounds[0] <= cert.mean + 1e-12 <= cert.upper_bounds[0] + 2e-12
        assert all(0.0 - 1e-12 <= v <= 1.0 + 1e-12 for v in cert.lower_bounds + cert.upper_bounds)


@fast
@given(z=arrays(np.float64, st.integers(2, 120), elements=st.floats(-1.0, 1.0)),
       cs=st.lists(st.floats(-0.99, 0.99), min_size=2, max_size=6, unique=True))
def test_radius_is_monotone_in_threshold(z, cs):
    cs = sorted(cs)
    res = certify_measure(z, "margin", METHODS, sigma=0.25, alpha=0.01, thresholds=cs, radii=[0.0])
    for cert in res.values():
        r = [_rank(x) for x in cert.radius]
        assert all(a >= b - 1e-9 for a, b in zip(r, r[1:])), r
        # and each returned radius really certifies its threshold
        for c, x in zip(cs, cert.radius):
            if x is not None and math.isfinite(x):
                low = certify_measure(z, "margin", [cert.method], sigma=0.25, alpha=0.01,
                                      thresholds=[c], radii=[x])[cert.method].lower_bounds[0]
                assert low >= c - 1e-12


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(z=arrays(np.float64, st.integers(5, 40), elements=st.floats(0.0, 1.0)),
       c=st.sampled_from([0.3, 0.5, 0.7]))
def test_radius_grows_with_n_for_a_fixed_empirical_distribution(z, c):
    prev = None
    for k in (1, 2, 4, 8):  # tiling keeps the empirical distribution, multiplies n
        res = certify_measure(np.tile(z, k), "score", METHODS, sigma=0.25, alpha=0.01,
                              thresholds=[c], radii=[0.0])
        now = {m: _rank(res[m].radius[0]) for m in METHODS}
        if prev is not None:
            for m in METHODS:
                assert now[m] >= prev[m] - 1e-9, (m, k, prev[m], now[m])
        prev = now
