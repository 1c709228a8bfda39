"""Sequential, anytime-valid certification: sample in looks, stop each input once its questions are decided.

The look schedule n_1 < ... < n_K = n and the split of alpha are fixed before any sample is
drawn (``SequentialPlan``): by default n_1 = min(1000, n), n_{k+1} = 2 n_k while that is below n,
and n_K = n; every band (lower and upper, each measure and method) and the label's
Clopper-Pearson bound is computed at alpha / K at every look. By the union bound over the K looks,
with probability at least 1 - alpha every lower bound of every look holds at once (and, as a
separate statement at the same level, every upper bound). So the bounds hold at the look where an
input stops, whatever rule chose it, and so does their best over the looks seen (``tighten``).

A question (``Cell``) is one gate rule's certificate at its radius r: "the smoothed ``measure``
is >= c within r" for (measure, method, threshold c), or "the label is certified within r".
At each look it is

- ``certified`` when its lower bound at r is >= c (label: p_lower >= Phi(r / sigma)); in a run,
  read from the record's best radius at c, as the gate reads it (radius >= r);
- ``futile`` when even the most optimistic law the upper band allows, G(s) <= 1 - g(#{Z <= s}),
  gives a Theorem 2 lower bound below c at r (label: the Clopper-Pearson *upper* bound at
  alpha / K is below Phi(r / sigma)). When the upper bands hold, Theorem 2's bound computed from
  the exact law is then below c, so no look, however many samples, can certify it unless a lower
  band fails: a futility stop never certifies, and gives up only such certificates;
- ``undecided`` otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np
from scipy import special

from .bounds import clopper_pearson_lower, hoeffding_eps, phi_inv
from .certify import ConfidenceCertificate, InputCertificate, band_for, certify_samples
from .confidence import EmpiricalTail, StepBound, naive_bounds
from .label import LabelCertificate
from .measures import measure_range

FIRST_LOOK = 1000
CERTIFIED, FUTILE, UNDECIDED = "certified", "futile", "undecided"
DECISIONS = (CERTIFIED, FUTILE, UNDECIDED)
LABEL = "label"
LABEL_TEST = "clopper-pearson at alpha/K per look"


def look_schedule(n: int, first: int = FIRST_LOOK) -> tuple[int, ...]:
    """n_1 = min(first, n), n_{k+1} = 2 n_k while below n, and n_K = n.

    >>> look_schedule(10_000)
    (1000, 2000, 4000, 8000, 10000)
    """
    if n < 1 or first < 1:
        raise ValueError(f"n and the first look must be >= 1, got n={n}, first={first}")
    looks, k = [], min(first, n)
    while k < n:
        looks.append(k)
        k *= 2
    return (*looks, n)


@dataclass(frozen=True)
class SequentialPlan:
    """The looks and the alpha each look's bands use, fixed before sampling."""

    looks: tuple[int, ...]
    alpha: float

    @classmethod
    def for_n(cls, n: int, alpha: float, first: int = FIRST_LOOK) -> "SequentialPlan":
        return cls(look_schedule(n, first), float(alpha))

    @property
    def alpha_per_look(self) -> float:
        return self.alpha / len(self.looks)

    def to_dict(self, dataset_stop: bool) -> dict:
        """The report's ``settings.sequential``."""
        return {"looks": list(self.looks), "alpha_per_look": self.alpha_per_look, "label_test": LABEL_TEST,
                "dataset_stop": bool(dataset_stop)}


@dataclass(frozen=True)
class Cell:
    """One question about an input: measure "label" (method and threshold None), or a confidence
    certificate (measure, method, threshold c), at radius r."""

    measure: str
    method: str | None
    threshold: float | None
    radius: float


# ---------------------------------------------------------------- decisions at one look


def label_decision(votes: int, n: int, sigma: float, alpha: float, radius: float) -> str:
    """Certified when the label's radius sigma * Phi^{-1}(p_lower) is >= r (p_lower the
    Clopper-Pearson lower bound at level alpha); futile when the Clopper-Pearson upper bound is
    below Phi(r / sigma)."""
    certified, futile = label_states(votes, n, sigma, alpha, radius)
    return CERTIFIED if certified else FUTILE if futile else UNDECIDED


def label_states(votes, n: int, sigma: float, alpha: float, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """(certified, futile) for vote counts ``votes`` of n, elementwise."""
    p_lower, q_lower = clopper_pearson_lower(votes, n, alpha)
    q_upper, p_upper = clopper_pearson_lower(n - np.asarray(votes), n, alpha)  # the other side's lower bound
    certified = (p_lower >= 0.5) & (sigma * phi_inv(p_lower, q_lower) >= radius)
    futile = sigma * phi_inv(p_upper, q_upper) < radius
    return certified, futile & ~certified


def optimistic_lower(tail: EmpiricalTail, method: str, alpha: float, sigma: float) -> StepBound:
    """Theorem 1 or 2's lower bound evaluated on the most optimistic law the upper band allows:
    G(s) <= 1 - g(#{Z <= s}) (naive: the mean <= its Hoeffding upper bound). When the upper band
    holds, the true Theorem 2 (or 1) lower bound at every R is at most this."""
    a, b = tail.a, tail.b
    if method == "naive":
        eps = hoeffding_eps(tail.n, alpha)
        p = min((tail.mean - a) / (b - a) + eps, 1.0)
        q = max((b - tail.mean) / (b - a) - eps, 0.0)
        return StepBound.build(a, [b - a], [phi_inv(p, q)], -1, sigma)
    g_up, q_up = band_for(method, tail.n, alpha).lower(tail.at_or_below)
    v = tail.levels
    widths = np.r_[v[0] - a, np.diff(v, append=b)]
    return StepBound.from_probabilities(a, widths, np.r_[1.0, q_up], np.r_[0.0, g_up], -1, sigma)


def lower_bound(tail: EmpiricalTail, method: str, alpha: float, sigma: float) -> StepBound:
    """The certified lower bound alone (``naive_bounds`` / ``cdf_bounds``' first half)."""
    if method == "naive":
        return naive_bounds(tail, alpha, sigma)[0]
    g, q = band_for(method, tail.n, alpha).lower(tail.at_or_above)
    return StepBound.from_probabilities(tail.a, np.diff(tail.levels, prepend=tail.a), g, q, -1, sigma)


def measure_decision(tail: EmpiricalTail, method: str, alpha: float, sigma: float, threshold: float,
                     radius: float) -> str:
    """The cell (measure of ``tail``, method, c, r) at one look whose bands are at level alpha."""
    if float(lower_bound(tail, method, alpha, sigma).at([radius])[0]) >= threshold:
        return CERTIFIED
    if float(optimistic_lower(tail, method, alpha, sigma).at([radius])[0]) < threshold:
        return FUTILE
    return UNDECIDED


def merge_decision(before: str, now: str) -> str:
    """A cell once certified stays certified; futile stays futile unless a later look certifies."""
    if CERTIFIED in (before, now):
        return CERTIFIED
    return FUTILE if FUTILE in (before, now) else UNDECIDED


# ---------------------------------------------------------------- the best bounds over the looks


def tighten(best: InputCertificate | None, new: InputCertificate) -> InputCertificate:
    """The best of two certificates from looks of one plan: every lower bound and radius the
    larger, every upper bound the smaller. Valid when both are (all looks hold at once)."""
    if best is None:
        return new
    label = max(best.label, new.label, key=lambda lab: lab.p_lower)
    label = LabelCertificate(new.label.votes, new.label.n, label.p_lower, label.radius)
    confidence = {m: {meth: _tighter(best.confidence[m][meth], cert) for meth, cert in by_method.items()}
                  for m, by_method in new.confidence.items()}
    return InputCertificate(new.prediction, label, confidence)


def _tighter(old: ConfidenceCertificate, new: ConfidenceCertificate) -> ConfidenceCertificate:
    return ConfidenceCertificate(
        measure=new.measure, method=new.method, mean=new.mean,
        lower_bounds=tuple(max(x, y) for x, y in zip(old.lower_bounds, new.lower_bounds)),
        upper_bounds=tuple(min(x, y) for x, y in zip(old.upper_bounds, new.upper_bounds)),
        radius=tuple(_larger_radius(x, y) for x, y in zip(old.radius, new.radius)))


def _larger_radius(x: float | None, y: float | None) -> float | None:
    if x is None:
        return y
    return x if y is None else max(x, y)


# ---------------------------------------------------------------- one input, look by look


@dataclass(frozen=True)
class SequentialCertificate:
    """An input certified in looks. ``certificate`` holds the best bounds and radii over the looks
    seen (valid at 1 - alpha, all looks at once); ``decisions`` one per cell; ``samples`` the
    estimation samples drawn, n_{stopped_at_look}."""

    certificate: InputCertificate
    decisions: tuple[str, ...]
    stopped_at_look: int
    samples: int


Draw = Callable[[int, int], tuple[Mapping[str, np.ndarray], int]]


def certify_sequential(prediction: int, draw: Draw, *, plan: SequentialPlan, cells: Sequence[Cell], sigma: float,
                       methods: Sequence[str], thresholds: Mapping[str, Sequence[float]],
                       radii: Sequence[float], stop_early: bool = True) -> SequentialCertificate:
    """Draw estimation samples look by look and stop once every cell is decided (or at n_K;
    always at n_K without ``stop_early``).

    ``draw(start, stop)`` returns the measures (name -> values) of estimation samples
    start .. stop - 1 and their vote count for ``prediction``. The cells are decided at every
    look; the full certificate (every measure, method, threshold and radius) is computed at the
    looks where a cell is certified and at the last one, and the record is the best of those
    (``tighten``), so a certified cell's radius is in it.
    """
    alpha = plan.alpha_per_look
    chunks: dict[str, list[np.ndarray]] = {}
    votes, drawn, best = 0, 0, None
    decisions = [UNDECIDED] * len(cells)
    for k, n_k in enumerate(plan.looks, start=1):
        values, v = draw(drawn, n_k)
        votes, drawn = votes + int(v), n_k
        for name, arr in values.items():
            chunks.setdefault(name, []).append(np.asarray(arr, dtype=np.float64))
        measures = {name: np.concatenate(parts) for name, parts in chunks.items()}
        chunks = {name: [arr] for name, arr in measures.items()}
        now = _decide_cells(cells, decisions, measures, votes, n_k, alpha, sigma)
        last = k == len(plan.looks) or (stop_early and all(d != UNDECIDED for d in now))
        if last or any(d == CERTIFIED and d0 != CERTIFIED for d, d0 in zip(now, decisions)):
            best = tighten(best, certify_samples(prediction, measures, votes, sigma=sigma, alpha=alpha,
                                                 methods=methods, thresholds=thresholds, radii=radii))
            now = [_as_recorded(d, cell, best, thresholds) for d, cell in zip(now, cells)]
        decisions = now
        if k == len(plan.looks) or (stop_early and all(d != UNDECIDED for d in decisions)):
            break
    return SequentialCertificate(best, tuple(decisions), k, drawn)


def _decide_cells(cells, decisions, measures, votes, n, alpha, sigma) -> list[str]:
    """Each cell's decision after this look (merged with the earlier ones)."""
    tails, out = {}, []
    for cell, before in zip(cells, decisions):
        if before == CERTIFIED:
            out.append(before)
            continue
        if cell.measure == LABEL:
            now = label_decision(votes, n, sigma, alpha, cell.radius)
        else:
            if cell.measure not in tails:
                a, b = measure_range(cell.measure)
                tails[cell.measure] = EmpiricalTail.from_samples(measures[cell.measure], a, b)
            now = measure_decision(tails[cell.measure], cell.method, alpha, sigma, cell.threshold, cell.radius)
        out.append(merge_decision(before, now))
    return out


def _as_recorded(decision: str, cell: Cell, best: InputCertificate, thresholds) -> str:
    """A confidence cell whose threshold the record holds is certified exactly when the record's
    radius at c is >= r, as the gate reads it (the solver's tolerance could otherwise split them)."""
    if cell.measure == LABEL:
        return decision
    radius = _record_radius(best, cell, thresholds)
    if radius is False:
        return decision
    if radius is not None and radius >= cell.radius:
        return CERTIFIED
    return UNDECIDED if decision == CERTIFIED else decision


def _record_radius(cert: InputCertificate, cell: Cell, thresholds: Mapping[str, Sequence[float]]):
    """The record's radius at the cell's threshold (None: not certified at R = 0), or False when
    the record does not hold that threshold or method."""
    by_method = cert.confidence.get(cell.measure, {})
    if cell.method not in by_method:
        return False
    for j, c in enumerate(thresholds.get(cell.measure, ())):
        if math.isclose(c, cell.threshold, rel_tol=0, abs_tol=1e-9):
            return by_method[cell.method].radius[j]
    return False


def simulate_cell(values: np.ndarray | None, votes_prefix: np.ndarray | None, cell: Cell, plan: SequentialPlan,
                  sigma: float, *, alpha_per_look: float | None = None) -> tuple[str, int]:
    """Decide one cell from a pre-drawn sample of n_K values (or cumulative votes), look by look:
    (decision, look it was decided at, 1-based; K when undecided). ``alpha_per_look`` overrides
    the plan's split (alpha itself is naive peeking: the tests show it is not valid)."""
    alpha = plan.alpha_per_look if alpha_per_look is None else alpha_per_look
    decision = UNDECIDED
    for k, n_k in enumerate(plan.looks, start=1):
        if cell.measure == LABEL:
            now = label_decision(int(votes_prefix[n_k - 1]), n_k, sigma, alpha, cell.radius)
        else:
            a, b = measure_range(cell.measure)
            tail = EmpiricalTail.from_samples(values[:n_k], a, b)
            now = measure_decision(tail, cell.method, alpha, sigma, cell.threshold, cell.radius)
        decision = merge_decision(decision, now)
        if decision != UNDECIDED:
            return decision, k
    return decision, len(plan.looks)


def simulate_label(votes_prefix: np.ndarray, plan: SequentialPlan, sigma: float, radius: float, *,
                   alpha_per_look: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``simulate_cell`` for the label, vectorized over rows: ``votes_prefix[i, j]`` is row i's
    vote count among its first j + 1 samples. Returns (decision per row, look per row)."""
    alpha = plan.alpha_per_look if alpha_per_look is None else alpha_per_look
    rows = votes_prefix.shape[0]
    decision = np.full(rows, UNDECIDED, dtype=object)
    look = np.full(rows, len(plan.looks))
    for k, n_k in enumerate(plan.looks, start=1):
        open_ = decision == UNDECIDED
        certified, futile = label_states(votes_prefix[:, n_k - 1], n_k, sigma, alpha, radius)
        decision[open_ & certified] = CERTIFIED
        decision[open_ & futile] = FUTILE
        look[open_ & (certified | futile)] = k
    return decision, look


def p0(radius: float, sigma: float) -> float:
    """The probability a label needs for radius r: Phi(r / sigma)."""
    return float(special.ndtr(radius / sigma))


__all__ = ["CERTIFIED", "DECISIONS", "FUTILE", "UNDECIDED", "Cell", "SequentialCertificate", "SequentialPlan",
           "certify_sequential", "label_decision", "label_states", "look_schedule", "measure_decision", "merge_decision",
           "lower_bound", "optimistic_lower", "p0", "simulate_cell", "simulate_label",
           "tighten"]
