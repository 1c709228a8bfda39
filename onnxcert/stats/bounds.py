"""Confidence bounds on probabilities, carried as (p, q = 1 - p) so that p near 1 keeps its digits.

Every function here is pure NumPy/SciPy and takes counts, never a model.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special


def hoeffding_eps(n: int, alpha: float) -> float:
    """Hoeffding's one-sided deviation for the mean of n values in [0, 1].

    P(mean - E >= eps) <= exp(-2 n eps^2) = alpha, so eps = sqrt(ln(1/alpha) / (2n)).
    """
    return math.sqrt(math.log(1.0 / alpha) / (2.0 * n))


def dkw_eps(n: int, alpha: float) -> float:
    """Width of the one-sided DKW band (Massart 1990) at level 1 - alpha.

    P(sup_s (F_n(s) - F(s)) > eps) <= exp(-2 n eps^2) holds whenever exp(-2 n eps^2) <= 1/2,
    that is alpha <= 1/2. For alpha > 1/2 the two-sided bound 2 exp(-2 n eps^2) is used, which
    Massart proved for every eps.
    """
    if alpha <= 0.5:
        return math.sqrt(math.log(1.0 / alpha) / (2.0 * n))
    return math.sqrt(math.log(2.0 / alpha) / (2.0 * n))


def clopper_pearson_lower(successes, n: int, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """One-sided Clopper-Pearson lower bound at level 1 - alpha, as (p_lower, q = 1 - p_lower).

    p_lower = BetaInv(alpha; k, n - k + 1) and 0 when k = 0. q is computed from the
    complementary Beta distribution, so it stays exact when p_lower is within 1e-12 of 1.
    """
    k = np.asarray(successes, dtype=np.float64)
    safe = np.where(k > 0, k, 1.0)
    p = np.where(k > 0, special.betaincinv(safe, n - safe + 1.0, alpha), 0.0)
    q = np.where(k > 0, special.betainccinv(n - safe + 1.0, safe, alpha), 1.0)
    return p, q


def phi_inv(p, q) -> np.ndarray:
    """Phi^{-1}(p) given both p and q = 1 - p; uses whichever side keeps precision.

    Returns -inf for p <= 0 and +inf for q <= 0 (p = 1), never NaN.
    """
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    if p.ndim == 0:
        return np.asarray(special.ndtri(max(float(p), 0.0)) if p < 0.5 else -special.ndtri(max(float(q), 0.0)))
    out = np.empty(np.broadcast_shapes(p.shape, q.shape))
    low = p < 0.5
    out[low] = special.ndtri(np.maximum(p[low], 0.0))
    high = ~low
    out[high] = -special.ndtri(np.maximum(q[high], 0.0))
    return out
