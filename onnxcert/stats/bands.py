"""Simultaneous lower confidence bands on the tail G(s) = P(Z >= s) of a measure Z.

A band maps N(s) = #{i : Z_i >= s}, the count of the n samples at or above s, to a lower bound
g(N(s)) on G(s). With probability at least 1 - alpha over the samples, G(s) >= g(N(s)) for every
s at once; so the levels s may be the sampled values themselves. Applied to -Z, the same band
gives P(Z <= s) >= g(#{Z_i <= s}), which is the upper band used by the upper bounds.

Bands return (g, q) with q = 1 - g computed directly, so g near 1 keeps its digits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .bounds import dkw_eps


@dataclass(frozen=True)
class DKWBand:
    """The one-sided Dvoretzky-Kiefer-Wolfowitz band, g(N) = N/n - eps (Massart 1990).

    Kumar et al. 2020, Section 3.2 use the two-sided version; each of our lower and upper
    bounds needs one side only, so eps = sqrt(ln(1/alpha) / (2n)).
    """

    n: int
    alpha: float

    @property
    def eps(self) -> float:
        return dkw_eps(self.n, self.alpha)

    def lower(self, counts) -> tuple[np.ndarray, np.ndarray]:
        counts = np.asarray(counts, dtype=np.float64)
        eps = self.eps
        g = np.divide(counts, self.n)  # in place from here: n can be 1e6
        g -= eps
        np.clip(g, 0.0, 1.0, out=g)
        q = np.subtract(self.n, counts)
        del counts
        q /= self.n
        q += eps
        np.clip(q, 0.0, 1.0, out=q)
        return g, q


@dataclass(frozen=True)
class RankBand:
    """An order-statistic band: G(Z^(k)) >= beta_k for every k in ``ranks`` at once.

    ``ranks`` is increasing; ``g[i]`` = beta_{ranks[i]} and ``q[i]`` = 1 - beta_{ranks[i]}.
    For a count N the bound is beta_{k*} with k* = max{k in ranks : k <= N}, and 0 below the
    smallest rank. ``crossing`` is the probability, for continuous scores, that any constraint
    fails (computed, never understated; for the union-bound and Bonferroni bands, the bound
    alpha itself); it is at most alpha.
    """

    n: int
    alpha: float
    ranks: np.ndarray
    g: np.ndarray
    q: np.ndarray
    crossing: float
    name: str = "cdf-bj"
    scale: float = float("nan")  # the level scale lambda of a calibrated band (berk_jones)

    def lower(self, counts) -> tuple[np.ndarray, np.ndarray]:
        counts = np.asarray(counts)
        idx = np.searchsorted(self.ranks, counts, side="right") - 1
        ok = idx >= 0
        safe = np.where(ok, idx, 0)
        g = np.where(ok, self.g[safe], 0.0)
        q = np.where(ok, self.q[safe], 1.0)
        return g, q
