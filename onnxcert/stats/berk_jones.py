"""The ``cdf-bj`` band: a calibrated, tail-adaptive order-statistic band of Berk-Jones type.

Let Z^(k) be the k-th largest of n samples and G(s) = P(Z >= s). For any distribution, atoms
included, (G(Z^(1)), ..., G(Z^(n))) dominates (U_(1), ..., U_(n)), the order statistics of n
i.i.d. U(0, 1) (couple Z_i = Q(U_i) with Q non-increasing and G(Q(u)) >= u). Ranks K and levels
l_k are fixed from (n, alpha) alone; beta_k = BetaInv(l_k; k, n - k + 1) is the Clopper-Pearson
lower bound for k successes in n. If P(exists k in K: U_(k) < beta_k) <= alpha, then with
probability >= 1 - alpha, G(Z^(k)) >= beta_k for all k in K, and so G(s) >= beta_{k*} for every
s at once, k* = max{k in K : k <= #{Z_i >= s}}.

The crossing probability is computed exactly (up to a conservative truncation) by the
Poissonised recursion of Moscovich & Nadler 2017 ("Fast calculation of boundary crossing
probabilities for Poisson processes", Stat. Probab. Lett.): a Poisson(n t) count process must
stay at N(beta_k) <= k - 1, conditioned on N(1) = n. This is the band of Berk & Jones 1979 as
computed by Moscovich, Nadler & Spiegelman 2016 ("On the exact Berk-Jones statistics and their
p-value calculation", Electron. J. Stat.), with levels l_k = lambda * (1 + n - k)^(-1/2) that
spend alpha where G is near 1, and lambda the largest value that keeps the crossing <= alpha.

Calibration depends only on (n, alpha): it is cached on disk, and tables for common values ship
with the package.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import time
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy import optimize, signal, special, stats

from .bands import RankBand

log = logging.getLogger("onnxcert")

GRID_FRACTION = 0.5  # rank spacing, as a fraction of the binomial standard deviation
WINDOW_SD = 12.0  # Poisson standard deviations kept below the mean (dropping mass is conservative)
TABLE_VERSION = 1
MAX_CALIBRATED_N = 2_000_000
_TABLES = Path(__file__).parent / "tables"


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
    return (1.0 + n - ranks) ** -0.5


def betas(n: int, ranks: np.ndarray, levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """beta_k = BetaInv(l_k; k, n - k + 1) and 1 - beta_k, each computed on its own side."""
    k = ranks.astype(np.float64)
    g = special.betaincinv(k, n - k + 1.0, levels)
    q = special.betainccinv(n - k + 1.0, k, levels)
    return g, q


def noncrossing_probability(n: int, ranks: np.ndarray, g: np.ndarray) -> float:
    """P(U_(k) >= beta_k for every k in ranks) for n i.i.d. U(0, 1); ``g`` = beta, increasing.

    Poissonised: P(N(beta_k) <= k - 1 for all k, N(1) = n) / P(N(1) = n) with N a Poisson
    process of rate n. Mass more than WINDOW_SD standard deviations below n t is dropped, which
    can only lower the result (so the crossing probability is over-, never under-, stated).
    """
    probs = np.ones(1)
    offset, t = 0, 0.0
    for beta, k in zip(g, ranks):
        mu = n * (beta - t)
        if mu > 0:
            width = int(math.ceil(mu + WINDOW_SD * math.sqrt(mu) + 20))
            kernel = stats.poisson.pmf(np.arange(width), mu)
            probs = signal.oaconvolve(probs, kernel) if probs.size > 64 else np.convolve(probs, kernel)
        keep = int(k) - offset  # counts offset .. k - 1
        if keep <= 0:
            return 0.0
        probs = np.maximum(probs[:keep], 0.0)
        low = int(n * beta - WINDOW_SD * math.sqrt(n * beta)) - offset
        if low > 0:
            probs, offset = probs[low:], offset + low
        t = float(beta)
    counts = offset + np.arange(probs.size)
    last = stats.poisson.pmf(n - counts, n * (1.0 - t))
    return float(np.dot(probs, last) / stats.poisson.pmf(n, n))


def _band(n: int, alpha: float, ranks: np.ndarray, w: np.ndarray, lam: float) -> tuple:
    g, q = betas(n, ranks, lam * w)
    return g, q, 1.0 - noncrossing_probability(n, ranks, g)


def calibrate(n: int, alpha: float) -> RankBand:
    """Find the largest lambda with crossing probability <= alpha (Brent on log lambda)."""
    ranks = rank_grid(n)
    w = level_weights(n, ranks)
    lo, hi = math.log(alpha / w.sum()), math.log(alpha / w.max())  # Bonferroni, single-rank
    f = lambda loglam: _band(n, alpha, ranks, w, math.exp(loglam))[2] / alpha - 1.0  # noqa: E731
    if f(hi) <= 0:
        loglam = hi
    else:
        loglam = optimize.brentq(f, lo, hi, xtol=1e-5, rtol=1e-6)
    g, q, crossing = _band(n, alpha, ranks, w, math.exp(loglam))
    while crossing > alpha:  # brentq may land a hair above the root
        loglam -= 1e-4
        g, q, crossing = _band(n, alpha, ranks, w, math.exp(loglam))
    return RankBand(n, alpha, ranks, g, q, crossing)


def bonferroni_band(n: int, alpha: float, size: int = 1000) -> RankBand:
    """The simple valid fallback: Clopper-Pearson at level alpha/|K| on ~``size`` fixed ranks."""
    ranks = np.unique(np.linspace(1, n, min(size, n)).round().astype(np.int64))
    levels = np.full(ranks.size, alpha / ranks.size)
    g, q = betas(n, ranks, levels)
    return RankBand(n, alpha, ranks, g, q, float(alpha), name="bonferroni")


def _key(n: int, alpha: float) -> str:
    digest = hashlib.sha1(f"{TABLE_VERSION}:{GRID_FRACTION}:{WINDOW_SD}:{n}:{alpha!r}".encode())
    return f"bj-n{n}-a{alpha:.6g}-{digest.hexdigest()[:10]}.npz"


def cache_dir() -> Path:
    """$ONNXCERT_CACHE_DIR, else $XDG_CACHE_HOME/onnxcert, else ~/.cache/onnxcert."""
    if os.environ.get("ONNXCERT_CACHE_DIR"):
        return Path(os.environ["ONNXCERT_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "onnxcert"


def _load(path: Path, n: int, alpha: float) -> RankBand | None:
    try:
        with np.load(path) as d:
            if int(d["n"]) != n or float(d["alpha"]) != alpha or int(d["version"]) != TABLE_VERSION:
                return None
            band = RankBand(n, alpha, d["ranks"], d["g"], d["q"], float(d["crossing"]))
    except (OSError, KeyError, ValueError):
        return None
    ok = band.crossing <= alpha and np.all(np.diff(band.g) > 0) and band.ranks[-1] == n
    return band if ok else None


def save_table(band: RankBand, path: Path) -> None:
    """Write a calibrated band atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
    np.savez(tmp, n=band.n, alpha=band.alpha, version=TABLE_VERSION, ranks=band.ranks,
             g=band.g, q=band.q, crossing=band.crossing)
    os.replace(tmp, path)


@lru_cache(maxsize=32)
def bj_band(n: int, alpha: float) -> RankBand:
    """The calibrated ``cdf-bj`` band for (n, alpha): shipped table, disk cache, or computed.

    Above MAX_CALIBRATED_N samples the Bonferroni fallback is used (valid, slightly looser).
    """
    if n > MAX_CALIBRATED_N:
        log.warning("n=%d is above %d: cdf-bj uses the Bonferroni rank band", n, MAX_CALIBRATED_N)
        return bonferroni_band(n, alpha)
    name = _key(n, alpha)
    for path in (_TABLES / name, cache_dir() / name):
        band = _load(path, n, alpha)
        if band is not None:
            return band
    log.info("calibrating the cdf-bj band for n=%d, alpha=%g (once; cached in %s) ...", n, alpha, cache_dir())
    start = time.perf_counter()
    band = calibrate(n, alpha)
    log.info("cdf-bj band calibrated in %.1f s: %d ranks, crossing probability %.4g <= alpha",
             time.perf_counter() - start, band.ranks.size, band.crossing)
    try:
        save_table(band, cache_dir() / name)
    except OSError as exc:
        log.warning("could not cache the cdf-bj band: %s", exc)
    return band
