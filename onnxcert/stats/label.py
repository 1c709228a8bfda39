"""The label certificate and PREDICT of Cohen, Rosenfeld & Kolter 2019 ("Certified Adversarial
Robustness via Randomized Smoothing", ICML), on vote counts."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from .bounds import clopper_pearson_lower, phi_inv

ABSTAIN = -1


@dataclass(frozen=True)
class LabelCertificate:
    """CERTIFY of Cohen et al.: with probability at least 1 - alpha, if ``radius`` is not None the
    smoothed classifier g(x') = argmax_c P(f(x' + delta) = c) returns the predicted class for every
    ||x' - x||_2 < radius. ``radius`` is None when p_lower < 1/2 (abstain)."""

    votes: int
    n: int
    p_lower: float
    radius: float | None


def label_certificate(votes: int, n: int, sigma: float, alpha: float) -> LabelCertificate:
    """One-sided Clopper-Pearson lower bound p_lower on P(f(x + delta) = c) from ``votes`` of n,
    and the radius sigma * Phi^{-1}(p_lower), or abstain (None) when p_lower < 1/2."""
    p, q = clopper_pearson_lower(votes, n, alpha)
    p, q = float(p), float(q)
    radius = None if p < 0.5 else sigma * float(phi_inv(p, q))
    return LabelCertificate(int(votes), int(n), p, radius)


@dataclass(frozen=True)
class Prediction:
    """PREDICT of Cohen et al.: ``label`` is the top class or ABSTAIN. With probability at least
    1 - alpha a returned label equals the smoothed classifier's prediction."""

    label: int
    count_top: int
    count_second: int
    p_value: float


def predict(counts, alpha: float) -> Prediction:
    """Two-sided binomial test of the top two vote counts (``scipy.stats.binomtest``).

    ``counts`` holds the votes per class from n fresh samples. Abstains unless the test rejects
    p = 1/2 at level alpha.
    """
    counts = np.asarray(counts)
    order = np.argsort(counts, kind="stable")[::-1]
    top, second = int(counts[order[0]]), int(counts[order[1]]) if counts.size > 1 else 0
    if top + second == 0:
        return Prediction(ABSTAIN, 0, 0, 1.0)
    p_value = float(stats.binomtest(top, top + second, 0.5).pvalue)
    label = int(order[0]) if p_value <= alpha else ABSTAIN
    return Prediction(label, top, second, p_value)
