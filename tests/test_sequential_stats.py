"""Sequential certification (onnxcert.stats.sequential): valid at the stopping look, tested statistically.

Failure budget as in test_stats_coverage: a valid procedure makes a false statement in at most
alpha of the runs, so its count is stochastically below Binomial(reps, alpha); we flag counts above
that law's 1 - 1e-4 quantile. Each validity check is also run against naive peeking (the fixed-n
bound at level alpha at every look), which the same check must reject. Seeds are fixed.
"""

import math

import numpy as np
import pytest
from scipy import stats

from onnxcert.stats import DKWBand, bj_band
from onnxcert.stats.certify import certify_samples
from onnxcert.stats.confidence import EmpiricalTail, cdf_bounds
from onnxcert.stats.sequential import (CERTIFIED, FUTILE, UNDECIDED, Cell, SequentialPlan, certify_sequential,
                                       label_decision, look_schedule, lower_bound, measure_decision,
                                       optimistic_lower, p0, simulate_cell, simulate_label, tighten)

ALPHA = 0.05
SIGMA = 0.25


def budget(reps, alpha=ALPHA):
    return int(stats.binom.ppf(1 - 1e-4, reps, alpha))


# ---------------------------------------------------------------- the plan


def test_look_schedule_is_geometric_and_ends_at_n():
    assert look_schedule(100_000) == (1000, 2000, 4000, 8000, 16000, 32000, 64000, 100000)
    assert look_schedule(10_000) == (1000, 2000, 4000, 8000, 10000)
    assert look_schedule(8000) == (1000, 2000, 4000, 8000)  # no repeated last look
    assert look_schedule(700) == (700,)
    assert look_schedule(1000, first=250) == (250, 500, 1000)
    with pytest.raises(ValueError):
        look_schedule(0)


def test_plan_splits_alpha_over_the_looks():
    plan = SequentialPlan.for_n(100_000, 0.001)
    assert len(plan.looks) == 8 and plan.alpha_per_look == pytest.approx(0.001 / 8)
    d = plan.to_dict(dataset_stop=True)
    assert d["looks"] == list(plan.looks) and d["alpha_per_look"] == plan.alpha_per_look
    assert d["dataset_stop"] is True and "clopper-pearson" in d["label_test"]


# ---------------------------------------------------------------- label: p just below p0(r)


def label_prefix(reps, n, p, seed):
    return np.cumsum(np.random.default_rng(seed).random((reps, n)) < p, axis=1)


def test_label_sequential_is_valid_and_naive_peeking_is_not():
    """p = Phi(r / sigma) - 1e-9: certifying r is false. Clopper-Pearson is nearly exact at one look,
    so peeking at 6 looks at level alpha each falsely certifies well above alpha."""
    n, reps, radius = 1000, 4000, SIGMA * stats.norm.ppf(0.9)
    plan = SequentialPlan.for_n(n, ALPHA, first=50)
    votes = label_prefix(reps, n, p0(radius, SIGMA) - 1e-9, seed=9)
    decision, _ = simulate_label(votes, plan, SIGMA, radius)
    assert np.count_nonzero(decision == CERTIFIED) <= budget(reps)
    peeking, _ = simulate_label(votes, plan, SIGMA, radius, alpha_per_look=ALPHA)
    assert np.count_nonzero(peeking == CERTIFIED) > budget(reps)


def test_label_futility_never_stops_a_true_label():
    """p = Phi(r / sigma) + 1e-9: the label at r holds, and 'futile' (upper bound < p0) is false."""
    n, reps, radius = 1000, 4000, SIGMA * stats.norm.ppf(0.9)
    plan = SequentialPlan.for_n(n, ALPHA, first=50)
    votes = label_prefix(reps, n, p0(radius, SIGMA) + 1e-9, seed=10)
    decision, _ = simulate_label(votes, plan, SIGMA, radius)
    assert np.count_nonzero(decision == FUTILE) <= budget(reps)
    peeking, _ = simulate_label(votes, plan, SIGMA, radius, alpha_per_look=ALPHA)
    assert np.count_nonzero(peeking == FUTILE) > budget(reps)


def test_label_decision_edges():
    assert label_decision(1000, 1000, SIGMA, 1e-3, 0.5) == CERTIFIED
    assert label_decision(0, 1000, SIGMA, 1e-3, 0.0) == FUTILE  # abstains surely
    assert label_decision(500, 1000, SIGMA, 1e-3, 0.0) == UNDECIDED
    # the radius-0 cell is "does not abstain": p_lower >= 1/2
    assert label_decision(600, 1000, SIGMA, 1e-3, 0.0) == CERTIFIED


# ---------------------------------------------------------------- bands: every look at once


def band_fails_at_some_look(make_band, plan, alpha, reps, seed):
    """Z ~ U(0, 1) (continuous: the cdf-bj band's crossing is exact there). Counts the runs in which
    the band of some look fails somewhere: g(N_k(s)) > G(s) = 1 - s."""
    z = np.random.default_rng(seed).random((reps, plan.looks[-1]))
    failed = np.zeros(reps, bool)
    for n_k in plan.looks:
        zs = np.sort(z[:, :n_k], axis=1)
        g, _ = make_band(n_k, alpha).lower(n_k - np.arange(n_k))
        failed |= (g[None, :] > 1 - zs).any(axis=1)
    return int(np.count_nonzero(failed))


@pytest.mark.parametrize("make_band", [bj_band, DKWBand], ids=["cdf-bj", "cdf-dkw"])
def test_bands_hold_at_every_look_at_once(make_band):
    n, reps = 200, 3000
    plan = SequentialPlan.for_n(n, ALPHA, first=25)  # 25, 50, 100, 200
    assert band_fails_at_some_look(make_band, plan, plan.alpha_per_look, reps, seed=3) <= budget(reps)
    assert band_fails_at_some_look(make_band, plan, ALPHA, reps, seed=3) > budget(reps)


# ---------------------------------------------------------------- cells end to end


def smooth_case(reps, n, mu, tau, seed):
    """Worst-case-shaped base classifier Z = Phi(mu - delta_1 / tau), delta_1 ~ N(0, sigma^2)."""
    return stats.norm.cdf(mu - np.random.default_rng(seed).normal(0.0, SIGMA, size=(reps, n)) / tau)


def smooth_truth(mu, tau, r):
    """Its smoothed score at distance r (Kumar et al. 2020, Theorem 2 is tight on it)."""
    return float(stats.norm.cdf((mu - r / tau) / math.sqrt(1 + SIGMA**2 / tau**2)))


MU, TAU, R = 1.2, 0.4, 0.25
CELL_N, CELL_REPS = 200, 400


@pytest.fixture(scope="module")
def smooth_samples():
    return smooth_case(CELL_REPS, CELL_N, MU, TAU, seed=21)


@pytest.mark.parametrize("method", ["cdf-bj", "cdf-dkw", "naive"])
def test_smooth_worst_case_no_false_certificate(method, smooth_samples):
    truth = smooth_truth(MU, TAU, R)
    plan = SequentialPlan.for_n(CELL_N, ALPHA, first=25)
    cell = Cell("score", method, truth + 1e-12, R)
    false = sum(simulate_cell(z, None, cell, plan, SIGMA)[0] == CERTIFIED for z in smooth_samples)
    assert false <= budget(CELL_REPS)


def test_smooth_worst_case_futility_never_stops_a_true_statement(smooth_samples):
    """c just below the truth: the statement holds, so a futile stop (optimistic bound < c) is wrong."""
    truth = smooth_truth(MU, TAU, R)
    plan = SequentialPlan.for_n(CELL_N, ALPHA, first=25)
    cell = Cell("score", "cdf-bj", truth - 1e-12, R)
    wrong = sum(simulate_cell(z, None, cell, plan, SIGMA)[0] == FUTILE for z in smooth_samples)
    assert wrong <= budget(CELL_REPS)


@pytest.mark.parametrize("method", ["cdf-dkw", "naive"])
def test_two_point_case_no_false_certificate(method):
    """Z in {0, 0.9}, P(Z = 0.9) = p: the half-space worst case of both theorems."""
    n, reps, p, radius = 200, 500, 0.5, 0.3
    z = np.where(np.random.default_rng(5).random((reps, n)) < p, 0.9, 0.0)
    truth = 0.9 * float(stats.norm.cdf(stats.norm.ppf(p) - radius / SIGMA))
    plan = SequentialPlan.for_n(n, ALPHA, first=25)
    cell = Cell("score", method, truth + 1e-12, radius)
    false = sum(simulate_cell(row, None, cell, plan, SIGMA)[0] == CERTIFIED for row in z)
    assert false <= budget(reps)


def test_optimistic_bound_is_above_the_lower_bound_and_the_truth_is_between():
    """At every R: lower <= what the method gives from the exact law <= optimistic (on this
    sample; each side holds with probability >= 1 - 0.0125). Theorem 2 is tight here, so its
    exact value is the smoothed score; Theorem 1's is a + (b - a) Phi(Phi^{-1}(E Z) - R / sigma)."""
    z = smooth_case(1, 200, MU, TAU, seed=4)[0]
    tail = EmpiricalTail.from_samples(z, 0.0, 1.0)
    radii = np.linspace(0, 1, 11)
    theorem2 = np.array([smooth_truth(MU, TAU, r) for r in radii])
    theorem1 = stats.norm.cdf(stats.norm.ppf(smooth_truth(MU, TAU, 0.0)) - radii / SIGMA)
    for method, truth in (("cdf-bj", theorem2), ("cdf-dkw", theorem2), ("naive", theorem1)):
        lo = lower_bound(tail, method, 0.0125, SIGMA).at(radii)
        hi = optimistic_lower(tail, method, 0.0125, SIGMA).at(radii)
        assert np.all(lo <= truth) and np.all(truth <= hi), method
        assert np.all((hi - lo)[:4] > 0.01)  # bounds, not the estimate (all tend to a as R grows)
    lower_cdf, _ = cdf_bounds(tail, bj_band(200, 0.0125), SIGMA)
    np.testing.assert_array_equal(lower_cdf.at(radii), lower_bound(tail, "cdf-bj", 0.0125, SIGMA).at(radii))


def test_measure_decision_certifies_and_gives_up():
    z = smooth_case(1, 200, MU, TAU, seed=6)[0]
    tail = EmpiricalTail.from_samples(z, 0.0, 1.0)
    assert measure_decision(tail, "cdf-bj", 0.0125, SIGMA, 0.3, 0.25) == CERTIFIED
    assert measure_decision(tail, "cdf-bj", 0.0125, SIGMA, 0.95, 0.25) == FUTILE
    truth = smooth_truth(MU, TAU, 0.25)
    assert measure_decision(tail, "cdf-bj", 0.0125, SIGMA, truth, 0.25) == UNDECIDED


# ---------------------------------------------------------------- one input, look by look


def draw_from(score, won):
    def draw(start, stop):
        return {"score": score[start:stop], "margin": 2 * score[start:stop] - 1}, int(won[start:stop].sum())
    return draw


METHODS = ("cdf-dkw", "naive")  # cdf-bj's calibration at these n would slow the tests; the code path is shared


def run(score, won, cells, plan):
    return certify_sequential(0, draw_from(score, won), plan=plan, cells=cells, sigma=SIGMA, methods=METHODS, thresholds={"score": [0.5, 0.7], "margin": [0.0]},
                              radii=[0.0, 0.25, 0.5])


def test_certify_sequential_stops_when_every_cell_is_decided():
    rng = np.random.default_rng(1)
    plan = SequentialPlan.for_n(4000, 0.001, first=250)
    easy = rng.beta(990, 10, size=4000)
    cells = [Cell("score", "cdf-dkw", 0.7, 0.25), Cell("label", None, None, 0.5)]
    out = run(easy, easy > 0.5, cells, plan)
    assert out.decisions == (CERTIFIED, CERTIFIED) and out.stopped_at_look < len(plan.looks)
    assert out.samples == plan.looks[out.stopped_at_look - 1]
    assert out.certificate.confidence["score"]["cdf-dkw"].radius[1] >= 0.25
    # 250 votes of 250 give p_lower = 0.0002^(1/250) = 0.966 < Phi(2): the label alone needs look 2
    assert run(easy, easy > 0.5, cells[1:], plan).stopped_at_look == 2
    # a cell that stays open keeps sampling to n_K
    hard = Cell("score", "cdf-dkw", smooth_truth(MU, TAU, 0.25), 0.25)
    z = smooth_case(1, 4000, MU, TAU, seed=2)[0]
    out = run(z, z > 0.5, [hard], plan)
    assert out.decisions == (UNDECIDED,) and out.stopped_at_look == len(plan.looks) and out.samples == 4000


def fixed_at(z, k, plan):
    return certify_samples(0, {"score": z[:k], "margin": 2 * z[:k] - 1}, int((z[:k] > 0.5).sum()), sigma=SIGMA,
                           alpha=plan.alpha_per_look, methods=METHODS,
                           thresholds={"score": [0.5, 0.7], "margin": [0.0]}, radii=[0.0, 0.25, 0.5])


def test_record_is_the_best_of_the_certifying_looks_and_the_last():
    """The record: the fixed-n certificate at alpha / K of the looks where a cell was certified and
    of the last look, tightened (largest lower bounds and radii, smallest upper bounds)."""
    plan = SequentialPlan.for_n(2000, 0.01, first=250)  # 250, 500, 1000, 2000
    z = smooth_case(1, 2000, MU, TAU, seed=2)[0]
    hard = Cell("score", "cdf-dkw", smooth_truth(MU, TAU, 0.25), 0.25)  # stays undecided
    out = run(z, z > 0.5, [hard], plan)
    assert out.decisions == (UNDECIDED,) and out.samples == 2000
    assert out.certificate == fixed_at(z, 2000, plan)
    # a cell certified at an early look keeps its certificate in the record
    easy = Cell("score", "cdf-dkw", 0.5, 0.0)
    out = run(z, z > 0.5, [easy, hard], plan)
    first = fixed_at(z, 250, plan)
    assert first.confidence["score"]["cdf-dkw"].radius[0] is not None  # certified at look 1
    assert out.decisions == (CERTIFIED, UNDECIDED) and out.samples == 2000
    want = tighten(first, fixed_at(z, 2000, plan))
    assert out.certificate == want
    got = out.certificate.confidence["score"]["cdf-dkw"]
    last = fixed_at(z, 2000, plan).confidence["score"]["cdf-dkw"]
    assert all(g >= x for g, x in zip(got.lower_bounds, last.lower_bounds))
    assert all(g <= x for g, x in zip(got.upper_bounds, last.upper_bounds))
    assert got.lower_bounds == tuple(max(x, y) for x, y in zip(
        first.confidence["score"]["cdf-dkw"].lower_bounds, last.lower_bounds))
    assert out.certificate.label.p_lower == max(first.label.p_lower, fixed_at(z, 2000, plan).label.p_lower)


def test_draws_are_contiguous_and_cover_each_look():
    seen = []
    score = np.linspace(0.01, 0.99, 1000)

    def draw(start, stop):
        seen.append((start, stop))
        return {"score": score[start:stop]}, 0

    plan = SequentialPlan.for_n(1000, 0.01, first=100)
    certify_sequential(0, draw, plan=plan, cells=[Cell("score", "naive", 0.5, 0.0)], sigma=SIGMA,
                       methods=("naive",), thresholds={"score": [0.5]}, radii=[0.0])
    assert seen[0] == (0, 100) and all(a[1] == b[0] for a, b in zip(seen, seen[1:]))
    assert [s for _, s in seen] == list(plan.looks[:len(seen)])
