"""Theorem 1 and 2 against closed forms (Kumar et al. 2020), and the cross-checks of issue 2."""

import math

import numpy as np
import pytest
from scipy import stats

from onnxcert.stats import (
    DKWBand,
    EmpiricalTail,
    StepBound,
    cdf_bounds,
    certify_measure,
    exact_tail_bound,
    hoeffding_eps,
    naive_bounds,
)

RADII = np.array([0.0, 0.1, 0.25, 0.5, 1.0, 2.0])


class PlugInBand(DKWBand):
    """eps = 0: the empirical tail itself. With samples whose empirical law is the true law this
    puts the real code path (``cdf_bounds``) in the no-sampling-error setting of the theorem."""

    @property
    def eps(self):
        return 0.0


def staircase_truth(levels, probs, sigma, radii):
    """E f(x + R e1 + delta) for the staircase f = s_j on delta_1 / sigma in (u_{j+1}, u_j],
    u_j = Phi^{-1}(p_j), f = s_0 above u_1 (p_0 = 1): sum of s_j times Gaussian interval masses."""
    u = np.r_[np.inf, stats.norm.ppf(probs[1:]), -np.inf]  # u_0 = +inf ... u_{m+1} = -inf
    out = []
    for r in radii:
        t = r / sigma
        mass = stats.norm.cdf(u[:-1] - t) - stats.norm.cdf(u[1:] - t)
        out.append(float(np.dot(levels, mass)))
    return np.array(out)


def test_theorem2_is_tight_on_a_staircase():
    a, sigma = 0.0, 0.25
    levels = np.array([0.05, 0.3, 0.55, 0.8, 0.97])
    probs = np.array([1.0, 0.9, 0.6, 0.45, 0.2])  # P(f >= s_j), decreasing; p_0 = 1
    bound = exact_tail_bound(levels, probs, a, sigma).at(RADII)
    np.testing.assert_allclose(bound, staircase_truth(levels, probs, sigma, RADII), rtol=0, atol=1e-12)


def test_cdf_bounds_code_path_is_tight_on_a_staircase():
    # n samples whose empirical law equals the staircase law exactly; plug-in band (eps = 0)
    n, sigma = 1000, 0.5
    levels = np.array([0.05, 0.3, 0.55, 0.8, 0.97])
    probs = np.array([1.0, 0.9, 0.6, 0.45, 0.2])
    counts = -np.diff(np.r_[probs, 0.0]) * n
    samples = np.repeat(levels, counts.round().astype(int))
    tail = EmpiricalTail.from_samples(samples, 0.0, 1.0)
    lower, _ = cdf_bounds(tail, PlugInBand(n, 0.5), sigma)
    np.testing.assert_allclose(lower.at(RADII), staircase_truth(levels, probs, sigma, RADII), atol=1e-12)


def smooth_truth(mu, tau, sigma, radii):
    # Z = Phi(mu - delta_1 / tau), delta_1 ~ N(R, sigma^2): E Z = Phi((mu - R/tau) / sqrt(1 + sigma^2/tau^2))
    return stats.norm.cdf((mu - np.asarray(radii) / tau) / math.sqrt(1 + sigma**2 / tau**2))


@pytest.mark.parametrize("mu,tau,sigma", [(1.0, 0.5, 0.25), (2.5, 0.2, 0.5), (0.3, 1.0, 0.25)])
def test_theorem2_converges_to_the_smooth_worst_case(mu, tau, sigma):
    # exact G(s) = P(Z >= s) = Phi(tau (mu - Phi^{-1}(s)) / sigma) on a fine grid of levels
    s = np.linspace(1e-6, 1 - 1e-6, 200_001)
    zg = tau * (mu - stats.norm.ppf(s)) / sigma
    # carry q = 1 - G: for small s, G rounds to 1.0 and would count as a certain level
    bound = exact_tail_bound(s, stats.norm.cdf(zg), 0.0, sigma, tail_q=stats.norm.sf(zg)).at(RADII)
    truth = smooth_truth(mu, tau, sigma, RADII)
    assert np.all(bound <= truth + 1e-12)  # a lower bound ...
    np.testing.assert_allclose(bound, truth, atol=2e-5)  # ... and tight up to the grid spacing


def test_naive_matches_theorem1_closed_form():
    rng = np.random.default_rng(3)
    z = rng.beta(8, 2, size=5000)
    a, b, sigma, alpha = 0.0, 1.0, 0.25, 0.001
    lower, upper = naive_bounds(EmpiricalTail.from_samples(z, a, b), alpha, sigma)
    eps = math.sqrt(math.log(1 / alpha) / (2 * z.size))
    p_lo, p_up = z.mean() - eps, z.mean() + eps
    np.testing.assert_allclose(lower.at(RADII), b * stats.norm.cdf(stats.norm.ppf(p_lo) - RADII / sigma), rtol=1e-12)
    np.testing.assert_allclose(upper.at(RADII), b * stats.norm.cdf(stats.norm.ppf(p_up) + RADII / sigma), rtol=1e-12)
    for c in (0.5, 0.6, 0.7):
        expect = sigma * (stats.norm.ppf(p_lo) - stats.norm.ppf(c))
        assert lower.radius(c) == pytest.approx(expect, abs=1e-9)


def test_naive_margin_uses_b_minus_a():
    z = np.full(1000, 0.4)  # margin samples, (a, b) = (-1, 1)
    lower, _ = naive_bounds(EmpiricalTail.from_samples(z, -1.0, 1.0), 0.01, 0.5)
    p_lo = (0.4 + 1) / 2 - hoeffding_eps(1000, 0.01)
    assert lower.at([0.0])[0] == pytest.approx(-1 + 2 * p_lo, rel=1e-12)


def paper_equal_count_bound(z, a, sigma, alpha, n_levels, radii):
    """Kumar et al. 2020 Section 5.2: s_i = the sorted score at position 1 + (i - 1) m / n_levels,
    p_lower(s_i) = #{z >= s_i} / m - eps (DKW, one-sided eps here as in our method)."""
    m = z.size
    zs = np.sort(z)
    s = zs[(np.arange(n_levels) * m) // n_levels]
    eps = math.sqrt(math.log(1 / alpha) / (2 * m))
    p = np.array([(zs >= si).sum() / m for si in s]) - eps
    widths = np.diff(np.r_[a, s])
    out = []
    for r in radii:
        terms = np.where(p > 0, stats.norm.cdf(stats.norm.ppf(np.clip(p, 1e-300, 1)) - r / sigma), 0.0)
        out.append(a + float(np.dot(widths, terms)))
    return np.array(out)


@pytest.mark.parametrize("dist", ["beta82", "beta990", "bimodal", "uniform"])
def test_cdf_dkw_never_below_the_papers_equal_count_levels(dist):
    rng = np.random.default_rng(11)
    n = 4000
    z = {"beta82": rng.beta(8, 2, n), "beta990": rng.beta(990, 10, n),
         "bimodal": np.where(rng.random(n) < 0.9, 0.9, 0.1), "uniform": rng.random(n)}[dist]
    sigma, alpha = 0.25, 0.001
    ours = cdf_bounds(EmpiricalTail.from_samples(z, 0.0, 1.0), DKWBand(n, alpha), sigma)[0].at(RADII)
    for n_levels in (10, 100, 1000):
        paper = paper_equal_count_bound(z, 0.0, sigma, alpha, n_levels, RADII)
        assert np.all(ours >= paper - 1e-12), (n_levels, ours - paper)


def test_upper_bound_dominates_lower_and_brackets_the_mean():
    rng = np.random.default_rng(5)
    z = rng.beta(5, 3, 3000)
    tail = EmpiricalTail.from_samples(z, 0.0, 1.0)
    for lower, upper in (naive_bounds(tail, 0.001, 0.25), cdf_bounds(tail, DKWBand(3000, 0.001), 0.25)):
        lo, up = lower.at(RADII), upper.at(RADII)
        assert lo[0] <= z.mean() <= up[0]
        assert np.all(np.diff(lo) <= 0) and np.all(np.diff(up) >= 0)


def test_upper_cdf_bound_is_tight_with_plug_in_band_on_staircase():
    # mirror image: f increasing along e1; E f(x + R e1) = sum over intervals, using the upper bound
    n, sigma = 1000, 0.5
    levels = np.array([0.05, 0.3, 0.55, 0.8, 0.97])
    probs = np.array([1.0, 0.9, 0.6, 0.45, 0.2])
    samples = np.repeat(levels, (-np.diff(np.r_[probs, 0.0]) * n).round().astype(int))
    _, upper = cdf_bounds(EmpiricalTail.from_samples(samples, 0.0, 1.0), PlugInBand(n, 0.5), sigma)
    # the upper worst case puts the high values toward +e1; its value at R equals the lower worst
    # case at -R, i.e. the staircase truth evaluated at negative radius
    truth = staircase_truth(levels, probs, sigma, -RADII)
    # with eps = 0 the upper bound is a + int_a^b Phi(Phi^-1(P(Z > s)) + t); levels are atoms, so
    # P(Z > s) on (v_j, v_{j+1}] equals P(Z >= v_{j+1}): the same staircase
    np.testing.assert_allclose(upper.at(RADII), truth, atol=1e-12)


def test_radius_edge_cases():
    sigma = 0.25
    # a level with exact probability 1 keeps its mass forever: c below that limit is never crossed
    bound = exact_tail_bound([0.6, 0.9], [1.0, 0.5], 0.0, sigma)
    assert bound.radius(0.55) == math.inf
    assert bound.radius(0.6) == math.inf
    r = bound.radius(0.7)
    assert 0 < r < math.inf and bound.at([r])[0] >= 0.7
    assert bound.radius(0.99) is None  # bound at R = 0 is 0.75
    # threshold at or below a: unbounded
    assert exact_tail_bound([0.5], [0.3], 0.0, sigma).radius(0.0) == math.inf


def test_constant_scores_give_the_closed_form_finite_radius():
    # the paper's flat classifier at 0.55: infinite in truth, finite from samples; with DKW the
    # bound is 0.55 Phi(Phi^{-1}(1 - eps) - R/sigma), so R(c) = sigma (Phi^{-1}(1-eps) - Phi^{-1}(c/0.55))
    n, sigma, alpha = 100_000, 0.25, 0.001
    res = certify_measure(np.full(n, 0.55), "score", ["naive", "cdf-dkw", "cdf-bj"], sigma=sigma,
                          alpha=alpha, thresholds=[0.5], radii=[0.0])
    eps = math.sqrt(math.log(1 / alpha) / (2 * n))
    expect = sigma * (stats.norm.isf(eps) - stats.norm.ppf(0.5 / 0.55))
    assert res["cdf-dkw"].radius[0] == pytest.approx(expect, abs=1e-9)
    assert 0 < res["cdf-bj"].radius[0] < math.inf
    assert res["cdf-bj"].radius[0] > 1.33 * res["cdf-dkw"].radius[0]  # issue 3: a third or more


def test_scores_at_the_ends_are_finite_and_never_nan():
    for z in (np.ones(1000), np.zeros(1000), np.r_[np.zeros(500), np.ones(500)]):
        res = certify_measure(z, "score", ["naive", "cdf-dkw", "cdf-bj"], sigma=0.25, alpha=0.001,
                              thresholds=[0.5, 0.9], radii=[0.0, 0.5])
        for cert in res.values():
            assert all(np.isfinite(cert.lower_bounds)) and all(np.isfinite(cert.upper_bounds))
            assert all(r is None or 0 <= r < math.inf for r in cert.radius)
    all_one = certify_measure(np.ones(1000), "score", ["cdf-dkw"], sigma=0.25, alpha=0.001,
                              thresholds=[0.5], radii=[0.0])["cdf-dkw"]
    assert all_one.radius[0] > 0
    all_zero = certify_measure(np.zeros(1000), "score", ["cdf-dkw"], sigma=0.25, alpha=0.001,
                               thresholds=[0.5], radii=[0.0])["cdf-dkw"]
    assert all_zero.radius[0] is None and all_zero.lower_bounds[0] == 0.0


def test_step_bound_many_zero_levels_no_nan():
    # most levels below eps contribute nothing (p_lower <= 0): never 0 * NaN
    z = np.r_[np.linspace(0.01, 0.5, 990), np.full(10, 0.99)]
    lower, upper = cdf_bounds(EmpiricalTail.from_samples(z, 0.0, 1.0), DKWBand(1000, 0.001), 0.25)
    assert np.all(np.isfinite(lower.at(RADII))) and np.all(np.isfinite(upper.at(RADII)))
    assert isinstance(lower, StepBound)


@pytest.mark.parametrize("dist", ["beta990", "beta82", "uniform_margin"])
def test_merged_levels_are_conservative_and_nearly_exact(dist):
    # Jensen merging (StepBound.merged) is used above MERGE_MIN_LEVELS distinct values: it must
    # never be less conservative than the exact sum over every level, and lose < 1e-7
    from onnxcert.stats import confidence as conf

    rng = np.random.default_rng(4)
    n = 50_000
    z, a, b = {"beta990": (rng.beta(990, 10, n), 0.0, 1.0), "beta82": (rng.beta(8, 2, n), 0.0, 1.0),
               "uniform_margin": (rng.uniform(-1, 1, n), -1.0, 1.0)}[dist]
    tail = EmpiricalTail.from_samples(z, a, b)
    radii = np.linspace(0, 3, 31)
    merged_lo, merged_up = cdf_bounds(tail, DKWBand(n, 0.001), 0.25)
    old = conf.MERGE_MIN_LEVELS
    try:
        conf.MERGE_MIN_LEVELS = 10**12
        exact_lo, exact_up = cdf_bounds(tail, DKWBand(n, 0.001), 0.25)
    finally:
        conf.MERGE_MIN_LEVELS = old
    assert merged_lo.z.size < exact_lo.z.size / 5  # it did merge
    d_lo = exact_lo.at(radii) - merged_lo.at(radii)
    d_up = merged_up.at(radii) - exact_up.at(radii)
    assert d_lo.min() >= -1e-13 and d_up.min() >= -1e-13  # conservative at every radius
    assert d_lo.max() < 1e-7 and d_up.max() < 1e-7  # and second-order small
    for c in (0.3, 0.6, 0.9) if a == 0 else (0.0, 0.4):
        r_exact, r_merged = exact_lo.radius(c), merged_lo.radius(c)
        if r_exact is None:
            assert r_merged is None
        else:
            assert r_merged <= r_exact + 1e-12 and r_exact - r_merged < 1e-6
