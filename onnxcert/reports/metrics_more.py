"""Numbers for the HTML report, per-class tables and comparisons (to be folded into
``reports.metrics``, the one home of certified accuracy, once that module lands).

- *exact step curve*: certified accuracy as a function of r is a step function that drops at each
  certified radius; ``certified_steps`` returns its corners, so nothing is resampled.
- *per class*: the same numbers as the summary, over the labelled inputs of one class.
- *confidence interval over the test set*: certified accuracy on m inputs is an estimate of the
  rate on the population they were drawn from; ``accuracy_interval`` is the two-sided
  Clopper-Pearson interval for k hits in m.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from ..stats.bounds import clopper_pearson_lower
from ..summary import ReportData


def certified_fraction(radius: np.ndarray, ok: np.ndarray, radii: Sequence[float]) -> tuple[float, ...]:
    """For each r, the fraction of rows with ``ok`` and a radius >= r (NaN never counts)."""
    hits = np.asarray(ok, bool) & ~np.isnan(radius)
    return tuple(float(np.count_nonzero(hits & (radius >= r))) / len(radius) for r in radii)


def population(data: ReportData) -> tuple[np.ndarray, np.ndarray]:
    """(rows, ok): labelled rows and their correctness; every row counts as ok without labels."""
    if data.labelled.any():
        return data.labelled, data.correct
    return np.ones(data.count, bool), np.ones(data.count, bool)


def certified_steps(radius: np.ndarray, data: ReportData, x_max: float) -> tuple[np.ndarray, np.ndarray]:
    """Corners of the exact certified-accuracy curve on [0, x_max]: at each distinct certified
    radius u the curve holds its value up to u (an input with radius u is certified at u) and
    drops right after. Fraction certified when the report has no labels."""
    rows, ok = population(data)
    rad = radius[rows]
    hits = np.sort(rad[ok[rows] & ~np.isnan(rad)])
    m = len(rad)
    xs, ys = [0.0], [np.count_nonzero(hits >= 0.0) / m]
    for u in np.unique(hits[np.isfinite(hits) & (hits <= x_max)]):
        xs += [float(u), float(u)]
        ys += [np.count_nonzero(hits >= u) / m, np.count_nonzero(hits > u) / m]
    xs.append(x_max)
    ys.append(np.count_nonzero(hits >= x_max) / m)
    return np.asarray(xs), np.asarray(ys, float)


def accuracy_interval(hits: int, m: int, confidence: float = 0.95) -> tuple[float, float]:
    """Two-sided Clopper-Pearson interval for a rate from ``hits`` successes in ``m`` trials:
    each end is a one-sided bound at level (1 + confidence) / 2, so the interval covers the
    true rate with probability >= ``confidence``. (0, 1) ends are exact at hits = 0 and m."""
    if m <= 0:
        return math.nan, math.nan
    half = (1.0 - confidence) / 2.0
    lo = float(clopper_pearson_lower(hits, m, half)[0])
    hi = 1.0 - float(clopper_pearson_lower(m - hits, m, half)[0])
    return lo, hi


def mean_radius(radius: np.ndarray, ok: np.ndarray) -> tuple[float, int]:
    """Mean certified radius over the rows, 0 where not ``ok`` or not certified; "inf" radii are
    left out and counted (as ``reports.metrics.mean_certified_radius`` defines it)."""
    value = np.where(ok & ~np.isnan(radius), radius, 0.0)
    finite = np.isfinite(value)
    if not finite.any():
        return math.inf, int(np.count_nonzero(~finite))
    return float(value[finite].mean()), int(np.count_nonzero(~finite))


@dataclass(frozen=True)
class ClassRow:
    """One class: its labelled inputs (or, in a report without labels, the inputs predicted as it).

    ``smoothed_accuracy`` is the n0-vote prediction's accuracy, ``clean_accuracy`` the noise-free
    forward pass's (None when the report has no clean predictions), ``accuracy`` the certified
    accuracy at each radius (fraction certified without labels).
    """

    label: int
    name: str | None
    count: int
    smoothed_accuracy: float | None
    clean_accuracy: float | None
    abstain_rate: float
    accuracy: tuple[float, ...]
    mean_radius: float
    inf_count: int


def _ints(records: Sequence[Mapping[str, Any]], key: str) -> np.ndarray:
    return np.array([r.get(key) if isinstance(r.get(key), int) else -1 for r in records], dtype=np.int64)


def class_names(data: ReportData) -> Sequence[str] | None:
    names = data.settings.get("classes")
    return names if isinstance(names, list) and all(isinstance(n, str) for n in names) else None


def by_class(data: ReportData, radius: np.ndarray, radii: Sequence[float]) -> tuple[ClassRow, ...]:
    """Per-class numbers for one certificate (``radius``: one value per record, NaN = none)."""
    records = data.report["records"]
    labelled = data.labelled.any()
    key = _ints(records, "label" if labelled else "prediction")
    clean = _ints(records, "clean_prediction")
    has_clean = any("clean_prediction" in r for r in records)
    names = class_names(data)
    rows = []
    for k in np.unique(key[key >= 0]):
        sel = key == k
        ok = data.correct[sel] if labelled else np.ones(int(sel.sum()), bool)
        acc = certified_fraction(radius[sel], ok, radii)
        rows.append(ClassRow(
            label=int(k), name=names[k] if names and k < len(names) else None, count=int(sel.sum()),
            smoothed_accuracy=float(ok.mean()) if labelled else None,
            clean_accuracy=float(np.mean(clean[sel] == k)) if labelled and has_clean else None,
            abstain_rate=float(np.isnan(data.label_radius[sel]).mean()), accuracy=acc,
            **dict(zip(("mean_radius", "inf_count"), mean_radius(radius[sel], ok)))))
    return tuple(rows)
