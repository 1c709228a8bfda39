"""The cdf-bj band's calibration against an independent exact computation, at any alpha.

The reference (``exact_crossing``) follows the uniform order statistics directly: the multinomial
law of the counts N(beta_i) = #{U_j < beta_i}, summed over every path that never reaches a rank,
in 60-digit decimal arithmetic from the exact binary values of the betas. It shares nothing with
onnxcert's computation (no Poissonisation, no first passages, no FFT, no truncation), and its
1 - P(no crossing) keeps ~45 digits at alpha = 1e-15. Each check is also run against the old
computation (1 - a Poissonised non-crossing probability, divided by P(Poisson(n) = n)) to show
that it catches the cancellation that made the band invalid at small alpha.
"""

import math
from decimal import Decimal, localcontext
from math import factorial

import numpy as np
import pytest

from onnxcert.stats import berk_jones as bj
from onnxcert.stats.bj_tables import ALGORITHM as SHIPPED_ALGORITHM, SCALES

ALPHAS = [1e-3, 1e-6, 1e-9, 1e-12, 1e-15]
SMALL_N = [5, 12, 30, 60]


def exact_crossing(n, ranks, g, digits=60) -> float:
    """P(exists i: U_(k_i) < g_i) for n i.i.d. U(0, 1), by the multinomial law of the counts."""
    with localcontext() as ctx:
        ctx.prec = digits
        inv_fact = [Decimal(1) / Decimal(factorial(j)) for j in range(n + 1)]
        w = [Decimal(1)] + [Decimal(0)] * n  # sum over surviving paths of prod dt^j / j!
        t = Decimal(0)
        for k, beta in zip(ranks, g):
            b = Decimal(float(beta))
            pw = [Decimal(1)]
            for j in range(1, n + 1):
                pw.append(pw[-1] * (b - t) / j)
            new = [Decimal(0)] * (n + 1)
            for c in range(min(int(k), n + 1)):
                if w[c]:
                    for c2 in range(c, int(k)):
                        new[c2] += w[c] * pw[c2 - c]
            w, t = new, b
        survive = sum(w[c] * (1 - t) ** (n - c) * inv_fact[n - c] for c in range(n + 1)) * factorial(n)
        return float(1 - survive)


def old_crossing(n, ranks, g, **_):
    """Planted bug: the crossing probability before issue 15, 1 - P(no crossing) (the legacy code
    that benchmarks/bench_calibration.py times against the new one)."""
    return _bench_calibration().old_crossing(n, ranks, g)


def _bench_calibration():
    import importlib
    import sys
    from pathlib import Path

    benchmarks = str(Path(__file__).resolve().parents[1] / "benchmarks")
    if benchmarks not in sys.path:
        sys.path.insert(0, benchmarks)
    return importlib.import_module("bench_calibration")


@pytest.mark.parametrize("n", SMALL_N)
def test_calibrated_band_is_valid_and_tight_at_every_alpha(n):
    for alpha in ALPHAS:
        band = bj.calibrate(n, alpha)
        exact = exact_crossing(n, band.ranks, band.g)
        assert exact <= alpha, (n, alpha, exact / alpha)
        assert exact >= alpha * (1 - 2 * bj.ACCEPT), (n, alpha, exact / alpha)  # calibrated, not loose
        # the stored value is never below the truth, and only the rounding margin above it
        assert exact <= band.crossing <= exact * (1 + 10 * bj.MARGIN), (n, alpha, band.crossing / exact)


def test_exact_check_catches_the_old_cancellation(monkeypatch):
    monkeypatch.setattr(bj, "crossing_probability", old_crossing)
    worst = 0.0
    for n in SMALL_N:
        for alpha in ALPHAS:
            band = bj.calibrate(n, alpha)
            worst = max(worst, exact_crossing(n, band.ranks, band.g) / alpha)
    assert worst > 1.0  # the old computation gives a band whose true crossing exceeds alpha


def test_crossing_of_an_arbitrary_boundary_matches_exact():
    # not a calibrated band: ranks and levels the calibration never produces
    n = 40
    ranks = np.array([1, 4, 9, 10, 20, 33, 39, 40])
    for level in (0.3, 1e-4, 1e-13):
        g, _ = bj.betas(n, ranks, np.full(ranks.size, level))
        exact = exact_crossing(n, ranks, g)
        assert exact <= bj.crossing_probability(n, ranks, g) <= exact * (1 + 10 * bj.MARGIN)


@pytest.mark.parametrize("level", [1e-4, 1e-9, 1e-14, 1e-17])
def test_fft_steps_agree_with_direct_steps(level):
    # n = 3000 is too large for the exact reference; the direct steps (sums of positive terms,
    # checked against it above) are the reference for the FFT steps
    n = 3000
    ranks = bj.rank_grid(n)
    g, _ = bj.betas(n, ranks, level * bj.level_weights(n, ranks))
    direct = bj.crossing_probability(n, ranks, g, direct_work=10**12)
    fft = bj.crossing_probability(n, ranks, g, direct_work=0)
    assert abs(fft / direct - 1) < 1e-9


def test_fft_check_catches_an_fft_tail_taken_as_is(monkeypatch):
    # planted: no direct redo of the FFT's small tail (TAU = 0 trusts every FFT entry)
    n, level = 3000, 1e-17
    ranks = bj.rank_grid(n)
    g, _ = bj.betas(n, ranks, level * bj.level_weights(n, ranks))
    direct = bj.crossing_probability(n, ranks, g, direct_work=10**12)
    monkeypatch.setattr(bj, "TAU", 0.0)
    fft = bj.crossing_probability(n, ranks, g, direct_work=0)
    assert abs(fft / direct - 1) > 1e-9


@pytest.mark.parametrize("alpha", [1e-30, 1e-99, 1e-101, 1e-250, 5e-324])
def test_tiny_alpha_gives_a_valid_band_without_error(alpha):
    n = 1000
    band = bj.calibrate(n, alpha)
    assert band.crossing <= alpha
    assert np.all(np.isfinite(band.g)) and np.all(np.diff(band.g) >= 0)
    if alpha >= bj.MIN_ALPHA:
        assert band.name == "cdf-bj"
    else:  # union bound: levels sum to alpha
        assert band.name == "cdf-bj (union bound)"


def test_shipped_scales_prove_themselves():
    assert SHIPPED_ALGORITHM == bj.ALGORITHM, "re-run tools/make_bj_tables.py"
    for (n, alpha), (scale, crossing) in SCALES.items():
        if n > 100_000:
            continue  # too slow for the suite: calibrated (so computed) by tools/make_bj_tables.py
        band = bj.band_at_scale(n, alpha, scale)
        assert band.crossing <= alpha and band.crossing >= alpha * (1 - bj.ACCEPT), (n, alpha)
        assert abs(band.crossing / crossing - 1) < 1e-9, (n, alpha)
