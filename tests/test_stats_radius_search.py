"""StepBound.radii searches every threshold at once (issue 17). Each radius must stay a
certificate, lower(R) >= c, and lie within the search tolerance below the exact root; the
reference root here is a plain bisection on the bound, to 1e-14."""

from __future__ import annotations

import math

import numpy as np
import pytest

from onnxcert.stats import DKWBand, EmpiricalTail, cdf_bounds, exact_tail_bound, naive_bounds
from onnxcert.stats.berk_jones import bj_band

TOL = 2e-10  # the search stops at a bracket of 1e-10 (relative above R = 1); twice that, for rounding


def _bisect(bound, c: float) -> tuple[float, float]:
    """(lo, hi): bound(lo) >= c > bound(hi), hi - lo <= 1e-14 (relative above 1)."""
    lo, hi = 0.0, 1.0
    while bound.at([hi])[0] >= c:
        lo, hi = hi, 2 * hi
    while hi - lo > 1e-14 * max(1.0, lo):
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        lo, hi = (mid, hi) if bound.at([mid])[0] >= c else (lo, mid)
    return lo, hi


def _bounds():
    rng = np.random.default_rng(11)
    for n in (200, 5000, 60_000):
        for z in (rng.dirichlet([8.0] + [1.0] * 9, size=n)[:, 0], rng.beta(0.3, 5, n), np.round(rng.random(n), 2)):
            tail = EmpiricalTail.from_samples(z, 0.0, 1.0)
            yield f"dkw{n}", cdf_bounds(tail, DKWBand(n, 0.001), 0.25)[0]
            yield f"bj{n}", cdf_bounds(tail, bj_band(n, 0.001), 0.5)[0]
            yield f"naive{n}", naive_bounds(tail, 0.001, 0.25)[0]
    yield "staircase", exact_tail_bound([0.2, 0.5, 0.9], [0.95, 0.7, 0.3], 0.0, 0.25)


BOUNDS = list(_bounds())


@pytest.mark.parametrize("name,bound", BOUNDS, ids=[name for name, _ in BOUNDS])
def test_every_radius_is_a_certificate_within_tolerance_below_the_root(name, bound):
    at_zero = bound.at([0.0])[0]
    cs = np.r_[np.linspace(0.02, 0.98, 23), at_zero * np.array([0.3, 0.6, 0.9, 0.99, 1.0]), np.nextafter(at_zero, 0.0)]
    many = bound.radii(cs)
    one = [bound.radius(c) for c in cs]  # searched alone: another grid, the same guarantees
    checked = 0
    for c, r in [*zip(cs, many), *zip(cs, one)]:
        if r is None:
            assert at_zero < c
            continue
        if math.isinf(r):
            assert c <= bound.limit()
            continue
        checked += 1
        assert bound.at([r])[0] >= c, (c, r)  # the certificate itself
        lo, hi = _bisect(bound, c)
        assert lo - TOL * max(1.0, lo) <= r <= hi, (c, r, lo, hi)
    assert checked >= 6 or at_zero <= bound.limit()  # (beta(0.3, 5) at n = 200: naive certifies nothing)
