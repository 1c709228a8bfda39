"""The ``cdf-bj`` band: a calibrated, tail-adaptive order-statistic band of Berk-Jones type.

Let Z^(k) be the k-th largest of n samples and G(s) = P(Z >= s). For any distribution, atoms
included, (G(Z^(1)), ..., G(Z^(n))) dominates (U_(1), ..., U_(n)), the order statistics of n
i.i.d. U(0, 1) (couple Z_i = Q(U_i) with Q non-increasing and G(Q(u)) >= u). Ranks K and levels
l_k = lambda * (1 + n - k)^(-1/2) are fixed from (n, alpha) alone; beta_k = BetaInv(l_k; k,
n - k + 1) is the Clopper-Pearson lower bound for k successes in n. If
P(exists k in K: U_(k) < beta_k) <= alpha, then with probability >= 1 - alpha, G(Z^(k)) >= beta_k
for all k in K, and so G(s) >= beta_{k*} for every s at once, k* = max{k in K : k <= #{Z_i >= s}}.
This is the band of Berk & Jones 1979 as computed by Moscovich, Nadler & Spiegelman 2016 ("On
the exact Berk-Jones statistics and their p-value calculation", Electron. J. Stat.); the levels
spend alpha where G is near 1, and the scale lambda is the largest that keeps the crossing
probability <= alpha.

The crossing probability is a sum of first-passage probabilities, every term positive, so it
keeps its relative precision at any alpha (never 1 - P(no crossing), which cancels): see
``crossing_probability``. The one thing a stored table holds is lambda; ``band_at_scale``
rebuilds the ranks and levels from (n, alpha, lambda) and can re-verify the crossing.

No I/O here: tables for common (n, alpha) ship as code (``bj_tables``), the disk cache lives in
``onnxcert.bandstore``, and bands a run will need are handed in with ``register_band`` before
sampling starts. SciPy's special functions are the only SciPy this module imports.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from functools import lru_cache

import numpy as np
from scipy import special

from .bands import RankBand

log = logging.getLogger("onnxcert")

GRID_FRACTION = 0.5  # rank spacing, as a fraction of the binomial standard deviation
LEVEL_POWER = -0.5  # l_k proportional to (1 + n - k)^LEVEL_POWER
ACCEPT = 2e-4  # the calibrated crossing probability lies in [alpha (1 - ACCEPT), alpha]
MARGIN = 1e-8  # relative margin added to every computed crossing probability (rounding)
NEGLECT = 1e-9  # truncation bounds are kept below NEGLECT * alpha
MIN_ALPHA = 1e-100  # below it, the union-bound scale (no crossing computation; float64 underflows)
MAX_CALIBRATED_N = 2_000_000
TAU = 1e-6  # FFT output below TAU * its peak is not trusted to relative precision
DIRECT_WORK = 1_000_000  # multiply-adds per step below which a step convolves directly
ALGORITHM = "bj2-" + hashlib.sha1(
    f"{GRID_FRACTION}:{LEVEL_POWER}:{ACCEPT}:{MARGIN}:{NEGLECT}:first-passage:skew-windows".encode()).hexdigest()[:10]


def rank_grid(n: int, fraction: float = GRID_FRACTION) -> np.ndarray:
    """Ranks 1 = k_1 < ... < k_m = n, spaced by ``fraction`` of sqrt(k (n - k) / n)."""
    ranks, k = [], 1
    while k < n:
        ranks.append(k)
        k += max(1, int(fraction * math.sqrt(k * (n - k) / n)))
    ranks.append(n)
    return np.asarray(ranks, dtype=np.int64)


def level_weights(n: int, ranks: np.ndarray) -> np.ndarray:
    """w_k = (1 + n - k)^(-1/2): alpha goes where G is near 1 (k near n)."""
    return (1.0 + n - ranks) ** LEVEL_POWER


def betas(n: int, ranks: np.ndarray, levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """beta_k = BetaInv(l_k; k, n - k + 1) and 1 - beta_k, each computed on its own side."""
    k = ranks.astype(np.float64)
    g = special.betaincinv(k, n - k + 1.0, levels)
    q = special.betainccinv(n - k + 1.0, k, levels)
    bad = ~(np.isfinite(g) & np.isfinite(q))
    if bad.any():  # levels far below 1e-200: I_x(k, n - k + 1) <= x^k / (k B(k, n - k + 1)), so
        # this x is at most the exact beta_k (a lower, still valid, bound)
        kb = k[bad]
        with np.errstate(divide="ignore"):
            x = np.exp((np.log(levels[bad]) + np.log(kb) + special.betaln(kb, n - kb + 1.0)) / kb)
        g[bad], q[bad] = x, 1.0 - x
    return g, q


# ---------------------------------------------------------------- the crossing probability


def _log_poisson(c: np.ndarray, lam: float) -> np.ndarray:
    return special.xlogy(c, lam) - lam - special.gammaln(c + 1.0)


def _fft_convolve(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    size = a.size + b.size - 1
    nfft = _fast_length(size)
    return np.fft.irfft(np.fft.rfft(a, nfft) * np.fft.rfft(b, nfft), nfft)[:size]


@lru_cache(maxsize=4096)
def _fast_length(size: int) -> int:
    """The smallest 2^a 3^b 5^c >= size (pocketfft is fastest there)."""
    best = 1 << (size - 1).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            p = p35
            while p < size:
                p *= 2
            best = min(best, p)
            p35 *= 3
        p5 *= 5
    return best


def _convolve(v: np.ndarray, kernel: np.ndarray, top: int, direct_work: int) -> np.ndarray:
    """v * kernel, to relative precision at every index >= ``top`` and wherever the result is at
    least TAU times its peak. Small products convolve directly (a sum of positive terms, exact to
    a few ulps); large ones by FFT, whose error is absolute (~1e-16 of the peak), so the tail
    above the peak that falls below TAU * peak, and everything from ``top`` up, is redone
    directly from the (accurate) entries of v it depends on."""
    if v.size * kernel.size <= direct_work:
        return np.convolve(v, kernel)
    out = _fft_convolve(v, kernel)
    peak = int(np.argmax(out))
    below = np.flatnonzero(out[peak:] < TAU * out[peak])
    r = max(0, min(top, peak + int(below[0])) if below.size else top)
    if r < out.size:
        s0 = max(0, r - kernel.size + 1)
        out[r:] = np.convolve(v[s0:], kernel)[r - s0:]
    np.maximum(out, 0.0, out=out)
    return out


def crossing_probability(n: int, ranks: np.ndarray, g: np.ndarray, *, neglect: float = 1e-30,
                         direct_work: int = DIRECT_WORK) -> float:
    """P(U_(k) < beta_k for some k in ``ranks``) for n i.i.d. U(0, 1); ``g`` = beta, increasing.

    With N(t) = #{U_i < t}, the band is crossed at rank k_i when N(beta_i) >= k_i. The count is
    followed as a Poisson process of rate n (Moscovich & Nadler 2017, "Fast calculation of
    boundary crossing probabilities for Poisson processes", Stat. Probab. Lett.): v[c] is
    P(no crossing yet, N(beta_i) = c), advanced by a Poisson(n (beta_i - beta_{i-1})) kernel.
    The mass that lands at or above k_i is a first passage; weighted by
    P(Poisson(n (1 - beta_i)) = n - c) / P(Poisson(n) = n) it is the exact probability of a
    first crossing there with N(1) = n. The result is the sum of these positive terms, so it
    has the relative precision of its parts at any size (1 - P(no crossing) would not).

    Two truncations keep the vectors short; each adds an exact bound on what it drops, so the
    result can only be overstated: kernel jumps of ``width`` or more (bounded by the binomial
    tail of N(beta_i) - N(beta_{i-1}) ~ Bin(n, beta_i - beta_{i-1})), and counts far below the
    mean (bounded by P(Bin(n, beta_i) < low)). Each bound is kept below ``neglect`` / |K| (a
    skewed binomial tail widens its window), so together they add at most ``neglect``. A
    relative MARGIN covers rounding.
    """
    m = len(ranks)
    z = math.sqrt(2.0 * math.log(max(m, 2) / neglect))
    each = neglect / max(m, 1)
    log_pnn = float(_log_poisson(np.float64(n), float(n)))
    v = np.ones(1)
    offset, t = 0, 0.0
    crossed = bounds = 0.0
    for beta, k in zip(np.asarray(g, dtype=np.float64).tolist(), np.asarray(ranks).tolist()):
        mu = n * (beta - t)
        if mu > 0:
            width = int(math.ceil(mu + z * math.sqrt(mu) + z))
            dropped = float(special.bdtrc(width - 1, n, beta - t)) if width <= n else 0.0
            while dropped > each:  # a skewed tail: widen until its bound is negligible
                width = min(n + 1, 2 * width)
                dropped = float(special.bdtrc(width - 1, n, beta - t)) if width <= n else 0.0
            bounds += dropped
            kernel = np.exp(_log_poisson(np.arange(width, dtype=np.float64), mu))
            v = _convolve(v, kernel, k - offset, direct_work)
        keep = max(k - offset, 0)
        if keep < v.size:
            c = offset + np.arange(keep, min(v.size, n - offset + 1))
            weight = np.exp(_log_poisson((n - c).astype(np.float64), n * (1.0 - beta)) - log_pnn)
            crossed += float(np.dot(v[keep:keep + c.size], weight))
            v = v[:keep]
            if keep == 0:
                break
        low = int(n * beta - z * math.sqrt(n * beta * (1.0 - beta))) - offset
        if low > 0:
            dropped = float(special.bdtr(offset + low - 1, n, beta))
            while dropped > each and low > 0:  # a skewed tail: drop less
                low //= 2
                dropped = float(special.bdtr(offset + low - 1, n, beta)) if low > 0 else 0.0
            if low > 0:
                bounds += dropped
                v, offset = v[low:], offset + low
        t = beta
    total = (crossed + bounds) * (1.0 + MARGIN)
    return min(1.0, total) if math.isfinite(total) else math.nan


def noncrossing_probability(n: int, ranks: np.ndarray, g: np.ndarray) -> float:
    """1 - ``crossing_probability``: the probability that every U_(k) >= beta_k. Loses the
    crossing's relative precision when it is small; calibration never uses it."""
    return 1.0 - crossing_probability(n, ranks, g)


# ---------------------------------------------------------------- bands from a scale


def band_at_scale(n: int, alpha: float, scale: float, crossing: float | None = None) -> RankBand:
    """The band with levels ``scale`` * w_k on the standard grid. Its crossing probability is
    computed (a verification) unless given; pass it only for a value this module computed."""
    ranks = rank_grid(n)
    g, q = betas(n, ranks, scale * level_weights(n, ranks))
    if crossing is None:
        crossing = crossing_probability(n, ranks, g, neglect=NEGLECT * alpha)
    return RankBand(n, alpha, ranks, g, q, float(crossing), scale=float(scale))


def union_band(n: int, alpha: float) -> RankBand:
    """The same grid at the union-bound scale alpha / sum(w): its levels sum to alpha, so it is
    valid by Bonferroni's inequality with no crossing computation (a little looser)."""
    ranks = rank_grid(n)
    scale = alpha / float(level_weights(n, ranks).sum())
    g, q = betas(n, ranks, scale * level_weights(n, ranks))
    return RankBand(n, alpha, ranks, g, q, float(alpha), name="cdf-bj (union bound)", scale=scale)


def bonferroni_band(n: int, alpha: float, size: int = 1000) -> RankBand:
    """The simple valid fallback: Clopper-Pearson at level alpha/|K| on ~``size`` fixed ranks."""
    ranks = np.unique(np.linspace(1, n, min(size, n)).round().astype(np.int64))
    levels = np.full(ranks.size, alpha / ranks.size)
    g, q = betas(n, ranks, levels)
    return RankBand(n, alpha, ranks, g, q, float(alpha), name="bonferroni")


# ---------------------------------------------------------------- calibration


def initial_scale(n: int, alpha: float) -> float:
    """A first guess for lambda from the shipped scales: lambda / alpha changes slowly with n and
    alpha (0.158 to 0.180 for n = 100 to 1e6 at alpha = 0.001), so it is interpolated linearly in
    log n at the two shipped alphas nearest to alpha, then in log alpha."""
    from .bj_tables import ALGORITHM as shipped_algorithm, SCALES

    if shipped_algorithm != ALGORITHM or not SCALES:
        return 3.0 * alpha / float(level_weights(n, rank_grid(n)).sum())
    levels = sorted({a for _, a in SCALES}, key=lambda a: abs(math.log(a / alpha)))[:2]

    def at(a: float) -> float:
        points = sorted((math.log(m), math.log(s / a)) for (m, b), (s, _) in SCALES.items() if b == a)
        return float(np.interp(math.log(n), [p[0] for p in points], [p[1] for p in points]))

    if len(levels) == 1 or levels[0] == levels[1]:
        return alpha * math.exp(at(levels[0]))
    (a0, a1), x = (math.log(levels[0]), math.log(levels[1])), math.log(alpha)
    frac = min(1.0, max(0.0, (x - a0) / (a1 - a0)))
    return alpha * math.exp(at(levels[0]) + frac * (at(levels[1]) - at(levels[0])))


def calibrate(n: int, alpha: float, *, guess: float | None = None) -> RankBand:
    """The largest scale lambda (to within ACCEPT) with crossing probability <= alpha.

    Secant steps on log(crossing) against log(lambda), which is nearly a straight line of slope
    about 1, kept inside a bracket once one is known; two or three crossing evaluations from
    ``initial_scale``. Below MIN_ALPHA, or when the computation cannot confirm the union-bound
    scale, the union-bound band is returned (valid, a little looser).
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    if alpha < MIN_ALPHA:
        log.warning("alpha=%g is below %g: cdf-bj uses the union-bound scale", alpha, MIN_ALPHA)
        return union_band(n, alpha)
    ranks = rank_grid(n)
    w = level_weights(n, ranks)
    union = math.log(alpha / float(w.sum()))
    target = math.log(alpha * (1.0 - ACCEPT / 2))

    def crossing(x: float) -> float:
        g, _ = betas(n, ranks, math.exp(x) * w)
        return crossing_probability(n, ranks, g, neglect=NEGLECT * alpha)

    lo: tuple[float, float] | None = None  # (log lambda, crossing) with crossing <= alpha
    hi: tuple[float, float] | None = None  # crossing > alpha
    prev: tuple[float, float] | None = None
    x = max(union, math.log(guess if guess is not None else initial_scale(n, alpha)))
    for _ in range(60):
        c = crossing(x)
        if not math.isfinite(c) or (c > alpha and x <= union):
            lo = None  # the computation contradicts the union bound: do not trust it
            break
        if c <= alpha:
            lo = (x, c)
            if c >= alpha * (1.0 - ACCEPT):
                break
        else:
            hi = (x, c)
        slope = 1.0
        if prev is not None and prev[1] > 0 and c > 0 and x != prev[0]:
            slope = min(2.0, max(0.05, (math.log(c) - math.log(prev[1])) / (x - prev[0])))
        prev = (x, c)
        x = _next_point(x, c, target, slope, lo, hi, union)
    if lo is None or not math.isfinite(lo[1]):
        log.warning("cdf-bj calibration for n=%d, alpha=%g could not confirm its scale; using the "
                    "union-bound scale", n, alpha)
        return union_band(n, alpha)
    g, q = betas(n, ranks, math.exp(lo[0]) * w)
    return RankBand(n, alpha, ranks, g, q, float(lo[1]), scale=math.exp(lo[0]))


def _next_point(x, c, target, slope, lo, hi, union) -> float:
    """A secant step toward log(crossing) = target, kept strictly inside the bracket."""
    step = (target - math.log(c)) / slope if c > 0 else 2.0
    nxt = max(union, x + step)
    if lo is not None and hi is not None:
        if not lo[0] < nxt < hi[0]:
            nxt = 0.5 * (lo[0] + hi[0])
    return nxt


# ---------------------------------------------------------------- the bands of this process


_BANDS: dict[tuple[int, float], RankBand] = {}


def register_band(band: RankBand) -> None:
    """Make ``band`` the cdf-bj band for its (n, alpha) in this process (``bj_band`` returns it).
    Only bands built here, from a shipped scale or a verified table, should be registered."""
    _BANDS[(int(band.n), float(band.alpha))] = band


def clear_bands() -> None:
    """Forget every registered band (tests and benchmarks)."""
    _BANDS.clear()


def known_band(n: int, alpha: float) -> RankBand | None:
    """The band for (n, alpha) without calibrating: registered, or shipped with onnxcert, or the
    Bonferroni band above MAX_CALIBRATED_N; None when it has to be calibrated."""
    band = _BANDS.get((int(n), float(alpha)))
    if band is not None:
        return band
    if n > MAX_CALIBRATED_N:
        log.warning("n=%d is above %d: cdf-bj uses the Bonferroni rank band", n, MAX_CALIBRATED_N)
        band = bonferroni_band(n, alpha)
    else:
        band = shipped_band(n, alpha)
    if band is not None:
        register_band(band)
    return band


def shipped_band(n: int, alpha: float) -> RankBand | None:
    """The band from a scale shipped with onnxcert (``bj_tables``), or None."""
    from .bj_tables import ALGORITHM as shipped_algorithm, SCALES

    if shipped_algorithm != ALGORITHM:
        return None
    for (m, a), (scale, crossing) in SCALES.items():
        # a table for a level a hair away from alpha (alpha / K rounded another way) serves
        # when its own crossing probability is <= alpha
        if m == n and abs(a - alpha) <= 1e-9 * alpha and crossing <= alpha:
            return band_at_scale(n, alpha, scale, crossing=crossing)
    return None


def bj_band(n: int, alpha: float) -> RankBand:
    """The calibrated ``cdf-bj`` band for (n, alpha): registered, shipped, or calibrated now.

    A run obtains its bands before sampling (``onnxcert.bandstore.prepare_bands``); this calibrates
    only when called directly for a new (n, alpha).
    """
    band = known_band(n, alpha)
    if band is not None:
        return band
    log.info("calibrating the cdf-bj band for n=%d, alpha=%g ...", n, alpha)
    start = time.perf_counter()
    band = calibrate(n, alpha)
    log.info("cdf-bj band calibrated in %.2f s: %d ranks, crossing probability %.6g <= alpha",
             time.perf_counter() - start, band.ranks.size, band.crossing)
    register_band(band)
    return band
