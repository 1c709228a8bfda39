"""Statistical guarantees tested statistically: repeat with fresh samples, count failures, and
compare the count with a binomial quantile at alpha. Each check is also run once against a
deliberately broken bound to show it can fail.

Failure budget: a correct bound fails in at most alpha of runs, so its failure count is
stochastically below Binomial(reps, alpha); we flag counts above that law's 1 - 1e-4 quantile.
Seeds are fixed, so the tests are deterministic.
"""

import math

import numpy as np
import pytest
from scipy import stats

from onnxcert.stats import DKWBand, EmpiricalTail, RankBand, cdf_bounds, clopper_pearson_lower, naive_bounds
from onnxcert.stats.bands import DKWBand as _DKW
from onnxcert.stats.berk_jones import betas, bj_band, calibrate, noncrossing_probability

ALPHA = 0.05


def budget(reps, alpha=ALPHA):
    return int(stats.binom.ppf(1 - 1e-4, reps, alpha))


class ThirdEpsBand(_DKW):
    """Planted bug: the DKW width divided by 3."""

    @property
    def eps(self):
        return super().eps / 3


class PlugInBand(_DKW):
    """Planted bug: plug-in probabilities (no width at all)."""

    @property
    def eps(self):
        return 0.0


def pointwise_cp_band(n, alpha):
    """Planted bug: Clopper-Pearson at level alpha at every rank, no multiplicity correction."""
    ranks = np.arange(1, n + 1)
    g, q = betas(n, ranks, np.full(n, alpha))
    return RankBand(n, alpha, ranks, g, q, crossing=float("nan"), name="pointwise")


# ---------------------------------------------------------------- bands


def band_failures_uniform(band, n, reps, seed):
    """Z ~ U(0, 1), G(s) = 1 - s. On (z_(i-1), z_(i)] the band is g(n - i + 1) and G is smallest
    at z_(i), so the band fails iff g(n - i + 1) > 1 - z_(i) for some i."""
    z = np.sort(np.random.default_rng(seed).random((reps, n)), axis=1)
    g, _ = band.lower(n - np.arange(n))  # counts at the i-th smallest value
    return int(np.count_nonzero((g[None, :] > 1 - z).any(axis=1)))


DISCRETE_VALUES = np.array([0.1, 0.3, 0.5, 0.7, 0.9])
DISCRETE_PROBS = np.array([0.1, 0.2, 0.3, 0.25, 0.15])


def band_failures_discrete(band, n, reps, seed):
    """Tie-heavy scores: five atoms. G(v_j) exact; the band fails iff g(N(v_j)) > G(v_j)."""
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n, DISCRETE_PROBS, size=reps)
    at_or_above = np.cumsum(counts[:, ::-1], axis=1)[:, ::-1]
    truth = np.cumsum(DISCRETE_PROBS[::-1])[::-1]
    g, _ = band.lower(at_or_above)
    return int(np.count_nonzero((g > truth[None, :] + 1e-12).any(axis=1)))


@pytest.mark.parametrize("n", [50, 400])
def test_dkw_band_coverage_continuous(n):
    reps = 4000
    assert band_failures_uniform(DKWBand(n, ALPHA), n, reps, seed=n) <= budget(reps)
    # the same check catches a band of a third of the width
    assert band_failures_uniform(ThirdEpsBand(n, ALPHA), n, reps, seed=n) > budget(reps)


@pytest.mark.parametrize("n", [50, 400])
def test_bj_band_coverage_continuous(n):
    reps = 4000
    band = bj_band(n, ALPHA)
    fails = band_failures_uniform(band, n, reps, seed=100 + n)
    assert fails <= budget(reps)
    # calibrated to be exact for continuous scores: not wildly conservative either
    assert fails >= stats.binom.ppf(1e-4, reps, 0.5 * ALPHA)
    assert band_failures_uniform(pointwise_cp_band(n, ALPHA), n, reps, seed=100 + n) > budget(reps)


@pytest.mark.parametrize("make", [lambda n: bj_band(n, ALPHA), lambda n: DKWBand(n, ALPHA)], ids=["bj", "dkw"])
def test_band_coverage_with_ties(make):
    n, reps = 200, 4000
    assert band_failures_discrete(make(n), n, reps, seed=7) <= budget(reps)


def test_tie_check_catches_broken_bands():
    n, reps = 200, 4000
    assert band_failures_discrete(PlugInBand(n, ALPHA), n, reps, seed=7) > budget(reps)
    assert band_failures_discrete(pointwise_cp_band(n, ALPHA), n, reps, seed=7) > budget(reps)


@pytest.mark.parametrize("n,alpha", [(20, 0.2), (60, 0.05)])
def test_exact_calibration_matches_monte_carlo(n, alpha):
    band = calibrate(n, alpha)
    reps = 200_000
    u = np.sort(np.random.default_rng(n).random((reps, n)), axis=1)
    mc = np.mean((u[:, band.ranks - 1] < band.g).any(axis=1))
    sd = math.sqrt(band.crossing * (1 - band.crossing) / reps)
    assert abs(mc - band.crossing) < 5 * sd
    assert band.crossing <= alpha
    # and the recursion agrees with Monte Carlo for an arbitrary (uncalibrated) boundary
    g2, _ = betas(n, band.ranks, np.full(band.ranks.size, alpha / 3))
    p_cross = 1 - noncrossing_probability(n, band.ranks, g2)
    mc2 = np.mean((u[:, band.ranks - 1] < g2).any(axis=1))
    assert abs(mc2 - p_cross) < 5 * math.sqrt(p_cross * (1 - p_cross) / reps) + 1e-4


# ---------------------------------------------------------------- end to end


def smooth_case(reps, n, mu, tau, sigma, seed):
    """Worst-case-shaped base classifier Z = Phi(mu - delta_1 / tau), delta_1 ~ N(0, sigma^2)."""
    delta = np.random.default_rng(seed).normal(0.0, sigma, size=(reps, n))
    return stats.norm.cdf(mu - delta / tau)


def smooth_truth(mu, tau, sigma, r):
    return float(stats.norm.cdf((mu - r / tau) / math.sqrt(1 + sigma**2 / tau**2)))


def end_to_end_failures(samples, make_bounds, truth, radius):
    fails = 0
    for z in samples:
        lower, _ = make_bounds(EmpiricalTail.from_samples(z, 0.0, 1.0))
        fails += lower.at([radius])[0] > truth
    return fails


METHODS = {
    "naive": lambda n: (lambda t: naive_bounds(t, ALPHA, 0.25)),
    "cdf-dkw": lambda n: (lambda t: cdf_bounds(t, DKWBand(n, ALPHA), 0.25)),
    "cdf-bj": lambda n: (lambda t, band=bj_band(n, ALPHA): cdf_bounds(t, band, 0.25)),
}


@pytest.mark.parametrize("method", list(METHODS))
def test_end_to_end_coverage_smooth_worst_case(method):
    n, reps, mu, tau, sigma, radius = 200, 1500, 1.2, 0.4, 0.25, 0.25
    samples = smooth_case(reps, n, mu, tau, sigma, seed=21)
    truth = smooth_truth(mu, tau, sigma, radius)
    make = METHODS[method](n)
    assert end_to_end_failures(samples, make, truth, radius) <= budget(reps)


def test_end_to_end_check_catches_plug_in_probabilities():
    n, reps, mu, tau, sigma, radius = 200, 1500, 1.2, 0.4, 0.25, 0.25
    samples = smooth_case(reps, n, mu, tau, sigma, seed=21)
    truth = smooth_truth(mu, tau, sigma, radius)
    plug_in = lambda t: cdf_bounds(t, PlugInBand(n, ALPHA), sigma)  # noqa: E731
    assert end_to_end_failures(samples, plug_in, truth, radius) > budget(reps)


def two_point_case(reps, n, p, seed):
    """Z in {0, 0.9} (0 = a), P(Z = 0.9) = p, arranged as a half-space: the worst case for both
    theorems, so the certified bound fails exactly when the band (or mean) bound at 0.9 fails."""
    return np.where(np.random.default_rng(seed).random((reps, n)) < p, 0.9, 0.0)


def two_point_truth(p, sigma, r):
    return 0.9 * float(stats.norm.cdf(stats.norm.ppf(p) - r / sigma))


@pytest.mark.parametrize("method", ["cdf-dkw", "naive"])
def test_end_to_end_two_point_and_planted_third_eps(method):
    n, reps, p, sigma, radius = 200, 2000, 0.5, 0.25, 0.3
    samples = two_point_case(reps, n, p, seed=5)
    truth = two_point_truth(p, sigma, radius)
    assert end_to_end_failures(samples, METHODS[method](n), truth, radius) <= budget(reps)
    broken = lambda t: cdf_bounds(t, ThirdEpsBand(n, ALPHA), sigma)  # noqa: E731
    assert end_to_end_failures(samples, broken, truth, radius) > budget(reps)


def test_label_clopper_pearson_coverage():
    n, reps, p = 100, 20_000, 0.9
    k = np.random.default_rng(9).binomial(n, p, size=reps)
    lower, _ = clopper_pearson_lower(k, n, ALPHA)
    assert np.count_nonzero(lower > p) <= budget(reps)
    assert np.count_nonzero(k / n > p) > budget(reps)  # the plug-in estimate fails the same check


def upper_failures(samples, make_bounds, truth, radius):
    fails = 0
    for z in samples:
        _, upper = make_bounds(EmpiricalTail.from_samples(z, 0.0, 1.0))
        fails += upper.at([radius])[0] < truth
    return fails


@pytest.mark.parametrize("method", list(METHODS))
def test_upper_bound_coverage_smooth_worst_case(method):
    # the upper bound must hold at every ||x' - x|| <= R; the largest smoothed value is at
    # x - R e1 for Z = Phi(mu - delta_1 / tau), i.e. the closed form at radius -R
    n, reps, mu, tau, sigma, radius = 200, 1500, 0.2, 0.4, 0.25, 0.25
    samples = smooth_case(reps, n, mu, tau, sigma, seed=31)
    truth = smooth_truth(mu, tau, sigma, -radius)
    assert upper_failures(samples, METHODS[method](n), truth, radius) <= budget(reps)


def test_upper_bound_check_catches_plug_in_probabilities():
    n, reps, mu, tau, sigma, radius = 200, 1500, 0.2, 0.4, 0.25, 0.25
    samples = smooth_case(reps, n, mu, tau, sigma, seed=31)
    truth = smooth_truth(mu, tau, sigma, -radius)
    plug_in = lambda t: cdf_bounds(t, PlugInBand(n, ALPHA), sigma)  # noqa: E731
    assert upper_failures(samples, plug_in, truth, radius) > budget(reps)
