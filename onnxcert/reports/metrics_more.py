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
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import ConfigError
from ..stats.bounds import clopper_pearson_lower
from ..summary import COHEN, LABEL, Curve, ReportData, ReportSummary, default_method


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


@dataclass(frozen=True)
class ClassTable:
    """Per-class numbers of one certificate of one report."""

    report: str
    certificate: str
    radii: tuple[float, ...]
    rows: tuple[ClassRow, ...]


def class_tables(data: ReportData, name: str, radii: Sequence[float], *, measures: Sequence[str] | None = None,
                 methods: Sequence[str] | None = None) -> list[ClassTable]:
    """Per-class tables: the label certificate's, then one per measure, method [default: the
    default method only] and threshold."""
    radii = tuple(float(r) for r in radii)
    tables = [ClassTable(name, "label certificate (Cohen et al.)", radii, by_class(data, data.label_radius, radii))]
    for m in measures or data.measures:
        for meth in methods or (default_method(data.methods),):
            for j, c in enumerate(data.thresholds(m)):
                rows = by_class(data, data.radius[m, meth][:, j], radii)
                tables.append(ClassTable(name, f"{m} >= {c:g} ({meth})", radii, rows))
    return tables


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


# ---------------------------------------------------------------- comparing two reports

COMPARED_SETTINGS = ("sigma", "n", "alpha")


def _relative_inputs(data: ReportData) -> list[str | None]:
    """Input paths with the folder they all share removed, so that the same test set checked out
    in two places compares equal."""
    paths = [r.get("input") if isinstance(r.get("input"), str) else None for r in data.report["records"]]
    named = [p for p in paths if p is not None]
    if not named:
        return paths
    parts = [Path(p).parts for p in named]
    common = 0
    while all(len(p) > common + 1 and p[common] == parts[0][common] for p in parts):
        common += 1
    return [None if p is None else "/".join(Path(p).parts[common:]) for p in paths]


def mismatches(a: ReportData, b: ReportData) -> list[str]:
    """What makes two reports measure different things: their inputs (count, paths below their
    common folder, labels), sigma, n or alpha. [] when they are comparable."""
    out = []
    for key in COMPARED_SETTINGS:
        va, vb = float(a.settings[key]), float(b.settings[key])
        if not math.isclose(va, vb, rel_tol=1e-12, abs_tol=0.0):
            out.append(f"{key} ({va:g} vs {vb:g})")
    if a.count != b.count:
        out.append(f"inputs ({a.count} vs {b.count})")
        return out
    for what, xa, xb in (("inputs", _relative_inputs(a), _relative_inputs(b)),
                         ("labels", [r.get("label") for r in a.report["records"]],
                          [r.get("label") for r in b.report["records"]])):
        if xa != xb:
            i = next(i for i, (u, v) in enumerate(zip(xa, xb)) if u != v)
            out.append(f"{what} (record {i}: {xa[i]!r} vs {xb[i]!r})")
            break
    return out


def check_comparable(a: ReportData, b: ReportData, *, allow: bool, what: str = "compare") -> list[str]:
    """ConfigError (one line) when ``mismatches`` finds something and ``allow`` is False; else
    the mismatches (to show as a warning)."""
    found = mismatches(a, b)
    if found and not allow:
        raise ConfigError(f"cannot {what} {a.source} with {b.source}: they differ in {', '.join(found)}; "
                          "pass --allow-mismatch to do it anyway")
    return found


@dataclass(frozen=True)
class CurveDiff:
    """One certificate in two reports; ``delta`` is other - base at each radius (None without labels)."""

    measure: str
    method: str
    threshold: float | None
    base: Curve
    other: Curve

    @property
    def delta(self) -> tuple[float, ...] | None:
        if self.base.accuracy is None or self.other.accuracy is None:
            return None
        return tuple(o - b for b, o in zip(self.base.accuracy, self.other.accuracy))

    @property
    def mean_radius_delta(self) -> float | None:
        b, o = self.base.mean_radius, self.other.mean_radius
        return None if math.isinf(b) or math.isinf(o) else o - b


@dataclass(frozen=True)
class SummaryDiff:
    """``other`` compared with ``base`` at the same radii: the label certificate first, then every
    confidence certificate both reports have."""

    base: ReportSummary
    other: ReportSummary
    curves: tuple[CurveDiff, ...]
    mismatches: tuple[str, ...] = ()

    @property
    def clean_accuracy_delta(self) -> float | None:
        b, o = self.base.clean_accuracy, self.other.clean_accuracy
        return None if b is None or o is None else o - b

    @property
    def abstain_rate_delta(self) -> float:
        return self.other.abstain_rate - self.base.abstain_rate


def diff_summaries(base: ReportSummary, other: ReportSummary, mismatches: Sequence[str] = ()) -> SummaryDiff:
    if base.radii != other.radii:
        raise ValueError("summaries to compare must share their radii")
    curves = [CurveDiff(LABEL, COHEN, None, base.label, other.label)]
    for c in base.curves:
        o = other.curve(c.measure, c.method, c.threshold)
        if o is not None:
            curves.append(CurveDiff(c.measure, c.method, c.threshold, c, o))
    return SummaryDiff(base, other, tuple(curves), tuple(mismatches))
