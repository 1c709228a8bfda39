"""cdf_bounds in count space (issue 17, third pass): ``SortedSamples`` runs Theorem 2's level
pass over the sorted samples with the Jensen merge groups fixed per band (``_CountPlan``). The
bounds must be those of a direct per-level computation (the oracle below: np.unique levels, the
band per level, merge runs found level by level and summed with math.fsum) to 1e-12, and the
radius search must find its roots from the surrogate without falling back."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from onnxcert.stats import DKWBand, EmpiricalTail, cdf_bounds
from onnxcert.stats import confidence as conf
from onnxcert.stats.berk_jones import bj_band
from onnxcert.stats.bounds import phi_inv
from onnxcert.stats.certify import certify_measure
from onnxcert.stats.confidence import SortedSamples, StepBound

RADII = np.array([0.0, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 3.0])

pytestmark = pytest.mark.usefixtures("stats_kernel")  # every test on both paths (conftest.py)


def _oracle_side(a, widths, counts, band, sign, sigma):
    """One bound, level by level: keep width > 0 and p > 0, merge runs of equal
    floor(z / MERGE_STEP) (math.fsum per group) above MERGE_MIN_LEVELS kept levels."""
    g, q = band.lower(np.asarray(counts))
    p, qq = (g, q) if sign < 0 else (q, g)
    keep = (widths > 0) & (p > 0)
    widths, p, qq = widths[keep], p[keep], qq[keep]
    z = phi_inv(p, qq)
    if widths.size > conf.MERGE_MIN_LEVELS:
        keys = [math.inf if not math.isfinite(v) else math.floor(v / conf.MERGE_STEP) for v in z]
        w_out, p_out, q_out, i = [], [], [], 0
        for _, run in itertools.groupby(keys):
            j = i + len(list(run))
            w = math.fsum(widths[i:j])
            w_out.append(w)
            p_out.append(math.fsum(widths[i:j] * p[i:j]) / w)
            q_out.append(math.fsum(widths[i:j] * qq[i:j]) / w)
            i = j
        widths, z = np.array(w_out), phi_inv(np.array(p_out), np.array(q_out))
    return StepBound.build(a, widths, z, sign, sigma)


def _oracle(values, a, b, band, sigma):
    x = np.clip(np.asarray(values, dtype=np.float64), a, b)
    levels, counts = np.unique(x, return_counts=True)
    below = np.cumsum(counts)
    above = x.size - below + counts
    lower = _oracle_side(a, np.diff(levels, prepend=a), above, band, -1, sigma)
    # upper: (a, v_1] at count 0 (p = 1), then (v_j, v_{j+1}] at M_j = #{Z <= v_j}, v_{m+1} = b
    up_widths = np.diff(np.r_[a, levels, b])
    upper = _oracle_side(a, up_widths, np.r_[0, below], band, +1, sigma)
    return lower, upper


def _close(new, old):
    assert new.a == old.a and new.sign == old.sign
    assert new.z.size == old.z.size
    np.testing.assert_allclose(new.widths, old.widths, rtol=1e-12, atol=0)
    np.testing.assert_allclose(new.z, old.z, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(new.at(RADII), old.at(RADII), rtol=1e-12, atol=0)


def _samples(n, rng):
    yield "dirichlet", rng.dirichlet([8.0] + [1.0] * 9, size=n)[:, 0], 0.0, 1.0
    yield "beta-near-1", rng.beta(30, 1, n), 0.0, 1.0
    yield "margin", rng.beta(2, 2, n) * 2.2 - 1.1, -1.0, 1.0  # values at a and b after clipping
    yield "ties", np.round(rng.random(n), 4), 0.0, 1.0
    yield "at-a-and-b", np.where(rng.random(n) < 0.1, 0.0, np.where(rng.random(n) < 0.1, 1.0, rng.random(n))), 0.0, 1.0


CASES = [(n, kind) for n in (1_000, 4_090, 4_200, 20_000, 100_000) for kind in ("dkw", "bj")]


@pytest.mark.parametrize("n,kind", CASES, ids=[f"{k}{n}" for n, k in CASES])
def test_count_space_bounds_equal_a_per_level_oracle(n, kind):
    rng = np.random.default_rng(n)
    band = DKWBand(n, 0.001) if kind == "dkw" else bj_band(n, 0.001)
    used = 0
    for name, values, a, b in _samples(n, rng):
        s = SortedSamples.from_samples(values, a, b)
        used += conf._count_bounds(s, band, 0.25) is not None
        for new, old in zip(cdf_bounds(s, band, 0.25), _oracle(values, a, b, band, 0.25)):
            _close(new, old)
    if n > 5_000:
        assert used >= 4  # the count-space path ran (the 1e4-tie sample may stay per level)
    if n < conf.MERGE_MIN_LEVELS:
        assert used == 0


def test_count_space_bounds_at_a_million_samples():
    rng = np.random.default_rng(6)
    n = 1_000_000
    values = rng.beta(8, 2, n)
    band = DKWBand(n, 0.001)
    s = SortedSamples.from_samples(values, 0.0, 1.0)
    assert conf._count_bounds(s, band, 0.25) is not None
    for new, old in zip(cdf_bounds(s, band, 0.25), _oracle(values, 0.0, 1.0, band, 0.25)):
        _close(new, old)


def test_constant_and_few_level_samples_take_the_per_level_path():
    band = DKWBand(10_000, 0.001)
    for values in (np.full(10_000, 0.7), np.round(np.random.default_rng(1).random(10_000), 3)):
        s = SortedSamples.from_samples(values, 0.0, 1.0)
        assert conf._count_bounds(s, band, 0.25) is None  # at most 1,001 levels: exact terms
        for new, old in zip(cdf_bounds(s, band, 0.25), _oracle(values, 0.0, 1.0, band, 0.25)):
            _close(new, old)


def test_merge_threshold_is_decided_per_side_as_before():
    """Just above MERGE_MIN_LEVELS distinct values: whichever side keeps at most
    MERGE_MIN_LEVELS levels stays exact, as in the per-level path."""
    rng = np.random.default_rng(8)
    for distinct in (conf.MERGE_MIN_LEVELS - 2, conf.MERGE_MIN_LEVELS + 3, conf.MERGE_MIN_LEVELS + 700):
        values = rng.permutation(np.repeat(np.sort(rng.random(distinct)), 3))
        band = DKWBand(values.size, 0.001)
        s = SortedSamples.from_samples(values, 0.0, 1.0)
        old = cdf_bounds(EmpiricalTail.from_samples(values, 0.0, 1.0), band, 0.25)
        for new, ref, orc in zip(cdf_bounds(s, band, 0.25), old, _oracle(values, 0.0, 1.0, band, 0.25)):
            _close(new, ref)
            _close(new, orc)


def test_certify_measure_matches_the_per_level_tail(monkeypatch):
    """End to end: certificates from SortedSamples equal those from EmpiricalTail (the
    per-level path) to 1e-12 in the bounds and within the search tolerance in the radii."""
    from onnxcert.stats import certify

    rng = np.random.default_rng(9)
    n = 30_000
    values = rng.dirichlet([8.0] + [1.0] * 9, size=n)[:, 0]
    kw = dict(sigma=0.25, alpha=0.001, thresholds=[0.3, 0.5, 0.7, 0.9], radii=list(RADII))
    new = certify_measure(values, "score", ["naive", "cdf-dkw", "cdf-bj"], **kw)
    monkeypatch.setattr(certify, "SortedSamples", EmpiricalTail)
    old = certify_measure(values, "score", ["naive", "cdf-dkw", "cdf-bj"], **kw)
    for method in new:
        a, b = new[method], old[method]
        assert a.mean == b.mean
        np.testing.assert_allclose(a.lower_bounds, b.lower_bounds, rtol=1e-12)
        np.testing.assert_allclose(a.upper_bounds, b.upper_bounds, rtol=1e-12)
        for r, q in zip(a.radius, b.radius):
            assert (r is None) == (q is None)
            if r is not None:
                assert abs(r - q) <= 2e-10 * max(1.0, q)


def test_the_surrogate_search_finds_roots_without_the_fallback():
    """_roots_secant returns NaN where its exact check fails (then the bracketed search runs):
    on the bounds of a run it must succeed for nearly every threshold, each root certified and
    within the tolerance of the bracketed search's."""
    rng = np.random.default_rng(10)
    tried = found = 0
    for n in (5_000, 100_000):
        for values, a, b in ((rng.beta(8, 2, n), 0.0, 1.0), (rng.beta(2, 2, n) * 2 - 1, -1.0, 1.0)):
            s = SortedSamples.from_samples(values, a, b)
            for band in (DKWBand(n, 0.001), bj_band(n, 0.001)):
                for sigma in (0.12, 0.25, 0.5, 1.0):
                    lower, _ = cdf_bounds(s, band, sigma)
                    at_zero = lower._at_scalar(0.0)
                    cs = np.linspace(a + 0.02 * (b - a), at_zero, 12)
                    r = lower._roots_secant(cs.copy())
                    ok = ~np.isnan(r)
                    tried, found = tried + cs.size, found + int(ok.sum())
                    assert np.all(lower.at(r[ok]) >= cs[ok]) if ok.any() else True
                    for c, x in zip(cs[ok], r[ok]):
                        assert lower.at([x])[0] >= c  # the certificate, as checked by its user
                    ref = lower._roots_bracketed(cs[ok], at_zero)
                    assert np.all(np.abs(r[ok] - ref) <= 2e-10 * np.maximum(1.0, ref))
    assert found >= 0.98 * tried, (found, tried)


def test_threads_certifying_at_once_get_the_same_bounds():
    """The count-space pass reuses work arrays (``_scratch``): they are per thread, so inputs
    certified in several threads at once give what each gives alone."""
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(12)
    n = 100_000
    inputs = [rng.beta(2 + i, 1, n) for i in range(4)]
    band = DKWBand(n, 0.001)

    def bounds(values):
        lower, upper = cdf_bounds(SortedSamples.from_samples(values, 0.0, 1.0), band, 0.25)
        return lower.at(RADII), upper.at(RADII)

    alone = [bounds(v) for v in inputs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        for _ in range(3):
            together = list(pool.map(bounds, inputs * 2))
            for got, want in zip(together, alone * 2):
                np.testing.assert_array_equal(got[0], want[0])
                np.testing.assert_array_equal(got[1], want[1])


def test_one_sided_group_sums_are_bit_for_bit_both_sums(monkeypatch):
    """_CountSide._split: DKW groups sum only the side of (p, q) that phi_inv reads; the bounds
    must be bit for bit those made with both sums everywhere (``split`` None), cached (p, q)
    (n <= CACHED_COUNTS) or made per piece (above)."""
    rng = np.random.default_rng(13)
    for n in (20_000, 300_000):
        band = DKWBand(n, 0.001)
        plan = conf._count_plan(band)
        assert plan.lower.split is not None and plan.upper.split is not None
        for values, a, b in ((rng.beta(8, 2, n), 0.0, 1.0), (rng.beta(30, 1, n), 0.0, 1.0),
                             (rng.beta(2, 2, n) * 2.2 - 1.1, -1.0, 1.0)):
            s = SortedSamples.from_samples(values, a, b)
            one_sided = conf._count_bounds(s, band, 0.25)
            with monkeypatch.context() as m:
                m.setattr(plan.lower, "split", None)
                m.setattr(plan.upper, "split", None)
                both = conf._count_bounds(s, band, 0.25)
            assert one_sided is not None and both is not None
            for x, y in zip(one_sided, both):
                np.testing.assert_array_equal(x.widths, y.widths)
                np.testing.assert_array_equal(x.z, y.z)
