"""Every bound of an input evaluated together (issue 17, sixth pass): ``confidence.evaluate``.

``certify_samples`` builds the bounds of every (measure, method) and evaluates them in one pool set
(``_Pools`` holds several bounds, each pair (bound, radius) summed on its own), and searches every
threshold of every lower bound at once (``_search``). What must hold: each bound's values and
radii are bit for bit those it gives alone (``StepBound.at``, ``StepBound.radii``), whatever other
bounds it is evaluated with, and so a certificate does not depend on which measures or methods
were asked for with it.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from onnxcert.stats import DKWBand, cdf_bounds
from onnxcert.stats import confidence as conf
from onnxcert.stats.berk_jones import bj_band
from onnxcert.stats.certify import certify_measure, certify_samples
from onnxcert.stats.confidence import SortedSamples, evaluate, naive_bounds
from test_stats_pooled import softmax_measures

RADII = [0.0, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0]


pytestmark = pytest.mark.usefixtures("stats_kernel")  # every test on both paths (conftest.py)



def measures(n, seed):
    score, margin = softmax_measures(n, seed)
    return {"score": score, "margin": margin}


def bounds_of(n, seed, sigma):
    """(bound, thresholds or None) for naive, DKW and BJ, lower and upper, of both measures."""
    out = []
    for name, values in measures(n, seed).items():
        a, b = (0.0, 1.0) if name == "score" else (-1.0, 1.0)
        s = SortedSamples.from_samples(values, a, b)
        pairs = [naive_bounds(s, 0.001, sigma), cdf_bounds(s, DKWBand(n, 0.001), sigma),
                 cdf_bounds(s, bj_band(n, 0.001), sigma)]
        for lower, upper in pairs:
            top = float(lower.at([0.0])[0])
            # above lower(0) (None), at or below the limit (infinity), and inside the range
            cs = [top + 0.01, lower.limit(), a - 1.0] + list(np.linspace(lower.limit(), top, 7)[1:])
            out += [(lower, cs), (upper, None)]
    return out


@pytest.mark.parametrize("n,seed,sigma", [(100_000, 0, 0.25), (100_000, 1, 0.5), (20_000, 2, 0.12), (3_000, 3, 0.25)])
def test_evaluate_gives_each_bound_exactly_what_it_gives_alone(n, seed, sigma):
    items = bounds_of(n, seed, sigma)
    got = evaluate([b for b, _ in items], RADII, [c for _, c in items])
    pooled = 0
    for (bound, cs), (values, radii) in zip(items, got):
        pooled += bound.evaluated_pooled
        np.testing.assert_array_equal(values, bound.at(RADII))
        if cs is None:
            assert radii is None
            continue
        alone = bound.radii(cs)
        assert radii == alone  # bit for bit, None and infinity included
        assert radii[0] is None and radii[1] == math.inf and radii[2] == math.inf
        for c, r in zip(cs[3:], radii[3:]):
            assert r is not None and bound.at([r])[0] >= c
    if n == 100_000:
        assert pooled == 8  # every CDF bound of both measures went through the shared pools
    elif n == 20_000:
        assert pooled >= 2


def test_evaluate_in_any_company_gives_the_same_numbers():
    """A bound's values and radii do not depend on the other bounds evaluated with it, nor on their
    order (each pair is summed on its own, and each threshold's Newton steps stop on their own)."""
    items = [(b, c) for b, c in bounds_of(100_000, 4, 0.25) if b.evaluated_pooled]
    full = evaluate([b for b, _ in items], RADII, [c for _, c in items])
    rng = np.random.default_rng(0)
    for _ in range(3):
        pick = rng.permutation(len(items))[:3]
        part = evaluate([items[i][0] for i in pick], RADII, [items[i][1] for i in pick])
        for i, (values, radii) in zip(pick, part):
            np.testing.assert_array_equal(values, full[i][0])
            assert radii == full[i][1]


def test_certificates_do_not_depend_on_what_else_was_asked():
    """certify_samples (both measures at once) gives each measure the certificate certify_measure
    gives it alone, and each method the numbers it gets alone."""
    got = measures(100_000, 5)
    th = {"score": [0.5, 0.7, 0.9, 0.99], "margin": [0.0, 0.3, 0.6, 0.9]}
    kw = dict(sigma=0.25, alpha=0.001, radii=RADII)
    methods = ["naive", "cdf-dkw", "cdf-bj"]
    both = certify_samples(3, got, 60_000, methods=methods, thresholds=th, **kw)
    for name, values in got.items():
        alone = certify_measure(values, name, methods, thresholds=th[name], **kw)
        assert both.confidence[name] == alone
        for method in methods:
            one = certify_measure(values, name, [method], thresholds=th[name], **kw)
            assert one[method] == alone[method]


def test_sequential_sum_is_per_column_and_ignores_zero_rows():
    rng = np.random.default_rng(1)
    terms = rng.normal(size=(150, 9)) * np.exp(rng.normal(0, 3, size=(150, 9)))
    total = conf._sequential_sum(terms)
    for k in range(terms.shape[1]):
        column = np.ascontiguousarray(terms[:, k:k + 1])
        assert conf._sequential_sum(column)[0] == total[k]
        padded = np.vstack((column, np.zeros((40, 1))))
        assert conf._sequential_sum(padded)[0] == total[k]
        s = 0.0
        for v in terms[:, k]:  # one addition at a time, in row order
            s += v
        assert total[k] == s
    for rows in (1, 2, 7, 9, 129, 300):  # any number of pools, and a single pair
        for width in (1, 2, 3, 64):
            part = np.ascontiguousarray(terms[:rows % 150 or 1, :width]) if rows <= 150 else \
                np.ascontiguousarray(np.tile(terms[:, :width], (2, 1))[:rows])
            loop = part[0].copy()
            for row in part[1:]:
                loop += row
            np.testing.assert_array_equal(conf._sequential_sum(part), loop)


def test_sorting_ahead_changes_nothing_and_leaves_nothing_running(monkeypatch):
    """Up to SORT_AHEAD_MAX samples the second measure is sorted on a thread while the first one's
    bounds are built: the certificates are those of sorting one measure at a time; an error while
    building leaves no sort running behind the caller; a forked child makes its own thread."""
    from onnxcert.stats import certify as cert

    got = measures(50_000, 8)
    kw = dict(sigma=0.25, alpha=0.001, methods=["naive", "cdf-dkw", "cdf-bj"],
              thresholds={"score": [0.5, 0.9], "margin": [0.0, 0.5]}, radii=RADII)
    submitted = []
    real = cert._sorter

    def counting():
        pool = real()
        submitted.append(pool)
        return pool

    monkeypatch.setattr(cert, "_sorter", counting)
    ahead = certify_samples(3, got, 30_000, **kw)
    assert len(submitted) == 1  # the margin went to the thread
    monkeypatch.setattr(cert, "SORT_AHEAD_MAX", 0)
    assert certify_samples(3, got, 30_000, **kw) == ahead
    assert len(submitted) == 1  # and above SORT_AHEAD_MAX it does not

    monkeypatch.setattr(cert, "SORT_AHEAD_MAX", 1 << 18)
    started, done = [], []
    slow = cert._samples

    def samples(values, measure, cdf):
        started.append(measure)
        out = slow(values, measure, cdf)
        done.append(measure)
        return out

    def broken(tail, methods, sigma, alpha):
        raise RuntimeError("planted")

    monkeypatch.setattr(cert, "_samples", samples)
    monkeypatch.setattr(cert, "_bounds", broken)
    with pytest.raises(RuntimeError, match="planted"):
        certify_samples(3, got, 30_000, **kw)
    assert sorted(started) == sorted(done)  # every sort that started had finished when the error was raised

    monkeypatch.setattr(cert, "_sorter", real)
    first = cert._sorter()
    monkeypatch.setattr(cert.os, "getpid", lambda: -1)  # as a forked child sees it
    assert cert._sorter() is not first
