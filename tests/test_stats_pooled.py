"""Pooled evaluation of large bounds (issue 17, fourth pass): ``StepBound.pooled``.

A Theorem 2 bound at large n has thousands of merged terms w_j Phi(z_j + sign R / sigma). Above
POOL_MIN_TERMS they are pooled into intervals of z; each pool is a fourth-order Taylor expansion
about its mean z, and the fifth-order remainder is bounded and taken off a lower bound (added to
an upper one). What must hold, at every radius:

- validity: pooled lower <= the sum of every term (``exact_at``), pooled upper >= it;
- tightness: the loss is at most twice the remainder bound ``slack`` (the Taylor sum is within
  ``slack`` of the exact one, and ``slack`` is then moved off it), and below 1e-10 on the bounds
  of a real run;
- the constants: PHI5_SUP is the supremum of |Phi^(5)|, and ``_phi5_beyond(u)`` bounds
  |Phi^(5)| beyond u.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import special

from onnxcert.stats import DKWBand, cdf_bounds
from onnxcert.stats import confidence as conf
from onnxcert.stats.berk_jones import bj_band
from onnxcert.stats.certify import certify_measure
from onnxcert.stats.confidence import SortedSamples, StepBound

ULP = 1e-15  # the exact sum's own rounding (a few ulps of values of order 1)
RADII = np.concatenate((np.linspace(0.0, 1.0, 21), [1.5, 2.0, 3.0, 5.0, 10.0]))


pytestmark = pytest.mark.usefixtures("stats_kernel")  # every test on both paths (conftest.py)



def phi5(x):
    return (x ** 4 - 6 * x ** 2 + 3) * np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)


def softmax_measures(n, seed):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, 10)) * rng.uniform(0.5, 4.0)
    logits[:, 3] += rng.uniform(0.0, 6.0)
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    score = p[:, 3].copy()
    p[:, 3] = -1.0
    return score, score - p.max(axis=1)


def run_bounds(n, seed, sigma=0.25):
    """The CDF bounds of one input's score and margin at n, DKW and BJ: what a run evaluates."""
    score, margin = softmax_measures(n, seed)
    out = []
    for values, a, b in ((score, 0.0, 1.0), (margin, -1.0, 1.0)):
        s = SortedSamples.from_samples(values, a, b)
        for band in (DKWBand(n, 0.001), bj_band(n, 0.001)):
            out.extend(cdf_bounds(s, band, sigma))
    return out


def random_bound(rng, terms, sign):
    """A bound of ``terms`` finite terms with z spread and clustered unevenly, some +-inf terms."""
    z = np.sort(np.concatenate((rng.normal(0, 2, terms // 2), rng.uniform(-6, 6, terms - terms // 2))))
    w = rng.exponential(1.0, terms)
    w *= rng.uniform(0.2, 2.0) / w.sum()
    z = np.concatenate(([-np.inf], z, [np.inf]))
    w = np.concatenate(([0.1], w, [rng.uniform(0, 0.2)]))
    return StepBound.build(rng.uniform(-1, 0), w, z, sign, rng.uniform(0.1, 1.0))


def loss_and_slack(bound, radii):
    pools = bound.pooled
    first = np.zeros(len(radii), dtype=np.intp)  # the pool set of one bound: every pair is bound 0
    loss = bound.sign * (bound.at(radii) - bound.exact_at(radii))
    return loss, pools.slack(first, pools.centres(first, radii))


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("sign", [-1, +1])
def test_pooled_bound_is_valid_and_within_twice_its_slack(seed, sign):
    rng = np.random.default_rng(seed)
    bound = random_bound(rng, int(rng.integers(conf.POOL_MIN_TERMS + 1, 20_000)), sign)
    assert bound.pooled is not None
    loss, slack = loss_and_slack(bound, RADII)
    # never less conservative than the sum of every term (up to that sum's own last-bit rounding)
    assert np.all(loss >= -ULP), loss.min()
    assert np.all(loss <= 2 * slack + 1e-15), (loss / slack).max()


@pytest.mark.parametrize("n", [5_000, 100_000])
def test_on_the_bounds_of_a_run_the_pooled_bound_loses_under_1e_10(n):
    for seed in range(2):
        for bound in run_bounds(n, seed):
            if bound.pooled is None:
                continue
            loss, _ = loss_and_slack(bound, RADII)
            assert np.all(loss >= -ULP) and loss.max() < 1e-10, loss.max()
            # and far out, where the bound is tiny, the loss is tiny too (the slack follows Phi^(5))
            far = RADII >= 3.0
            exact = bound.exact_at(RADII[far]) - bound.limit() if bound.sign < 0 else None
            if exact is not None:
                assert np.all(loss[far] <= 1e-3 * exact + 1e-13)


def test_small_bounds_are_summed_term_by_term():
    rng = np.random.default_rng(1)
    bound = random_bound(rng, conf.POOL_MIN_TERMS - 10, -1)
    assert bound.pooled is None
    np.testing.assert_array_equal(bound.at(RADII), bound.exact_at(RADII))


def test_phi5_constants():
    x = np.linspace(-12, 12, 2_400_001)
    h = np.abs(phi5(x))
    assert h.max() == pytest.approx(conf.PHI5_SUP, rel=1e-12)
    assert conf.PHI5_SUP >= h.max()
    # _phi5_beyond(u) >= sup_{|xi| >= u} |Phi^(5)(xi)|: the running max from the right
    pos = x >= 0
    xs, hs = x[pos], h[pos]
    beyond = np.maximum.accumulate(hs[::-1])[::-1]
    assert np.all(conf._phi5_beyond(xs) >= beyond * (1 - 1e-12))
    assert conf._phi5_beyond(np.array([8.0]))[0] < 1e-9  # and it follows the tail (no flat bound)


def test_radii_of_a_pooled_bound_hold_at_the_pooled_bound():
    """The radius search works on what is reported: lower.at([R]) >= c at every returned R."""
    for bound in run_bounds(100_000, 3):
        if bound.sign > 0 or bound.pooled is None:
            continue
        at_zero = float(bound.at([0.0])[0])
        cs = [c for c in np.linspace(bound.limit(), at_zero, 9)[1:-1]]
        for c, r in zip(cs, bound.radii(cs)):
            assert r is not None and bound.at([r])[0] >= c
            assert bound.at([r * (1 + 1e-9) + 1e-12])[0] < c + 1e-15  # and it is the largest, to 1e-9


def test_certificates_of_a_run_agree_with_term_by_term_sums():
    """certify_measure end to end: every reported bound within 1e-10 of the term-by-term sum of
    the same StepBound, and on the conservative side."""
    score, _ = softmax_measures(100_000, 5)
    got = certify_measure(score, "score", ["cdf-dkw", "cdf-bj"], sigma=0.25, alpha=0.001,
                          thresholds=[0.5, 0.7, 0.9], radii=[0.0, 0.25, 0.5, 1.0])
    s = SortedSamples.from_samples(score, 0.0, 1.0)
    for method, band in (("cdf-dkw", DKWBand(100_000, 0.001)), ("cdf-bj", bj_band(100_000, 0.001))):
        lower, upper = cdf_bounds(s, band, 0.25)
        exact_lo, exact_up = lower.exact_at([0.0, 0.25, 0.5, 1.0]), upper.exact_at([0.0, 0.25, 0.5, 1.0])
        cert = got[method]
        assert np.all(np.array(cert.lower_bounds) <= exact_lo) and np.all(exact_lo - cert.lower_bounds < 1e-10)
        assert np.all(np.array(cert.upper_bounds) >= exact_up) and np.all(cert.upper_bounds - exact_up < 1e-10)


def test_the_taylor_part_alone_matches_phi_to_fifth_order():
    """The pool's Taylor sum is exact for one term at its own mean, and for two symmetric terms
    differs from the exact sum by less than the fifth-order remainder formula allows."""
    z = np.array([0.275 - 0.02, 0.275 + 0.02] * 700)
    w = np.full(z.size, 1.0 / z.size)
    bound = StepBound(0.0, w, np.sort(z), -1, 1.0)
    assert bound.pooled is not None and bound.pooled.count[0] == 1
    t = np.array([0.0, 0.7, 2.0])
    exact = 0.5 * (special.ndtr(0.255 - t) + special.ndtr(0.295 - t))
    loss = exact - bound.at(t)
    assert np.all(loss >= 0) and np.all(loss < 2 * 0.02 ** 5 * conf.PHI5_SUP / 120 + 1e-15)


def test_slack_covers_the_remainder_over_each_pools_reach():
    """``slack(x)`` >= sum over pools of sup_{|xi - x| <= reach} |Phi^(5)(xi)| sum_j w_j |d_j|^5 / 120
    (the Lagrange remainder's bound, brute-forced over a fine grid of xi), at centres in the body,
    near PHI5_PEAK and far in the tails."""
    rng = np.random.default_rng(7)
    bound = random_bound(rng, 5_000, -1)
    pools = bound.pooled
    first = np.zeros(1, dtype=np.intp)
    for t in (0.0, 0.5, 1.5, 2.9, 4.0, 6.0, 9.0):
        x = pools.centres(first, [t])  # [pools, 1]
        offsets = np.linspace(-1.0, 1.0, 401)
        xi = x + offsets[None, :] * pools.reach[:, :1]
        need = (np.abs(phi5(xi)).max(axis=1) @ pools.m5[:, 0]) / 120.0
        got = pools.slack(first, x)[0] - pools.rounding[0]
        assert got >= need * (1 - 1e-9), (t, got, need)


def test_minus_infinity_terms_add_nothing_to_the_pooled_bound():
    """A StepBound made directly (not through build) may hold z = -inf terms: Phi(-inf) = 0, so
    they add nothing, pooled or not; z = +inf terms add their whole width."""
    rng = np.random.default_rng(11)
    z = np.sort(rng.normal(0, 1.5, 3000))
    w = np.full(z.size, 0.5 / z.size)
    bound = StepBound(0.0, np.r_[0.2, w, 0.1], np.r_[-np.inf, z, np.inf], -1, 0.5)
    assert bound.pooled is not None
    loss = bound.exact_at(RADII) - bound.at(RADII)
    assert np.all(loss >= -ULP) and loss.max() < 1e-10
    assert bound.at([50.0])[0] == pytest.approx(0.1, abs=1e-12)


def test_compiled_and_numpy_evaluations_agree(stats_kernel):
    """``_kernels.pools`` computes what the NumPy path computes: the same sums in the same order,
    only Phi from the C library's erf/erfc instead of SciPy's ndtr. Values, slopes and slacks of
    every bound of a run, at radii from 0 to far in the tail, agree to a few ulps."""
    if stats_kernel != "compiled":
        pytest.skip("compares the compiled path with NumPy")
    bounds = [b for b in run_bounds(100_000, 6) if b.evaluated_pooled] + [random_bound(np.random.default_rng(3), 9_000, -1)]
    pools = conf._Pools.of(bounds, conf.POOL_WIDTH, rigorous=True)
    which = np.repeat(np.arange(len(bounds)), RADII.size)
    radii = np.tile(RADII, len(bounds))
    compiled = (pools.rigorous_at(which, radii), *pools(which, radii, slack=False), pools.slack_at(which, radii))
    conf.STATS_KERNEL = False  # (the fixture restores it)
    numpy = (pools.rigorous_at(which, radii), *pools(which, radii, slack=False), pools.slack_at(which, radii))
    names = ("rigorous value", "value without slack", "slope", "slack")
    for name, got, want in zip(names, compiled, numpy):
        scale = np.abs(pools.base[which]) + pools.total[which]
        assert np.all(np.abs(got - want) <= 8e-16 * scale + 1e-12 * np.abs(want)), name
    with pytest.raises(ValueError, match="bound index"):
        pools._compiled(np.array([len(bounds)]), np.array([0.0]), 1)


def test_compiled_and_numpy_pools_agree(stats_kernel, monkeypatch):
    """``_kernels.pool_moments`` makes the pools ``_Pools.of`` makes in NumPy: the same runs of
    floor(z / bins), widths, means and moments (summed in term order rather than pairwise), for
    rising and falling z with infinite ends; keys that are not monotone go to the NumPy path, and
    a bound with no finite term has no pools."""
    if stats_kernel != "compiled":
        pytest.skip("compares the compiled path with NumPy")
    rng = np.random.default_rng(21)
    bounds = [b for b in run_bounds(100_000, 7) if b.evaluated_pooled] + [random_bound(rng, 5_000, -1)]
    shuffled = random_bound(rng, 3_000, -1)
    bounds.append(StepBound(shuffled.a, shuffled.widths, rng.permutation(shuffled.z), -1, shuffled.sigma))
    compiled = conf._Pools.of(bounds, conf.POOL_WIDTH, rigorous=True)
    monkeypatch.setattr(conf, "STATS_KERNEL", False)
    numpy = conf._Pools.of(bounds, conf.POOL_WIDTH, rigorous=True)
    np.testing.assert_array_equal(compiled.count, numpy.count)
    for name in ("w", "zb"):
        np.testing.assert_allclose(getattr(compiled, name), getattr(numpy, name), rtol=1e-13, atol=1e-300, err_msg=name)
    # the moments are about each path's own mean (the last bits of zbar differ): d^5 feels it
    for name in ("m5", "reach"):
        np.testing.assert_allclose(getattr(compiled, name), getattr(numpy, name), rtol=1e-9, atol=1e-300, err_msg=name)
    for got, want in zip(compiled.value_poly, numpy.value_poly):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-15 * compiled.w.max())
    monkeypatch.setattr(conf, "STATS_KERNEL", True)
    empty = StepBound(0.0, np.array([0.5, 0.5]), np.array([-np.inf, np.inf]), -1, 1.0)
    assert conf._Pools.of([empty], conf.POOL_WIDTH) is None
