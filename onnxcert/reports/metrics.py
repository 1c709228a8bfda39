"""The numbers of a report, in one place: certified accuracy (Kumar et al. 2020, Figure 5; the
label certificate's, Cohen et al. 2019), clean and smoothed accuracy, abstain rate and mean certified radius.
``report`` (its stored ``summary``), ``summary``, ``plot`` and ``gate`` all compute them here.

Definitions (``docs/results.md`` explains them for readers):

- *certified accuracy* at radius r: the fraction of labelled inputs whose prediction is correct
  and whose certified radius is >= r. A null radius (not certified) never counts; ``"inf"``
  counts at every r. Because the records hold the exact radii, any r can be asked for.
- *clean accuracy*: the fraction of labelled inputs whose noise-free prediction
  (``clean_prediction``: one forward pass on the clean input) equals the label. Unknown (None)
  for reports without clean predictions (certify-scores).
- *smoothed accuracy*: the fraction of labelled inputs whose prediction (the class voted by the
  n0 noisy selection samples) equals the label, whatever their certificates say. Reports before
  0.2 called this "clean accuracy".
- *abstain rate*: the fraction of all inputs whose label certificate has a null radius.
- *mean certified radius*: the average over labelled inputs of the radius, counting 0 for an
  incorrect prediction or a null radius (the "average certified radius" of Zhai et al. 2020).
  Without labels it averages over every input and only a null radius counts 0. Inputs whose
  radius is ``"inf"`` are left out of the average and counted in ``inf_count``; when every input
  is left out that way the mean is ``inf``.
- *confidence interval over the test set*: certified accuracy on m inputs estimates the rate on
  the population they were drawn from. ``interval`` is the two-sided Clopper-Pearson interval
  (at ``confidence``, 95% by default) for k = certified-and-correct inputs out of m, as
  ``statsmodels.proportion_confint(method="beta")``, which Cohen et al.'s code uses. It is about
  the finite test set, not the sampling noise that alpha covers.
- *exact step curve*: certified accuracy as a function of r drops at each certified radius;
  ``certified_steps`` returns the corners, so plots need no grid.
- *per class*: the same numbers over the labelled inputs of one class (``by_class``).
- *comparison*: ``mismatches`` names what makes two reports incomparable (inputs, sigma, n,
  alpha); ``diff_summaries`` pairs their certificates and takes B - A.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ..errors import ConfigError
from .read import COHEN, LABEL, ReportData, load_report, radius_from_json


def certified_fraction(radius: np.ndarray, ok: np.ndarray, radii: Iterable[float]) -> tuple[float, ...]:
    """The one certified-accuracy computation: for each r, the fraction of rows with ``ok`` and a
    radius >= r. ``radius`` is NaN where not certified (never counts) and inf where unbounded."""
    hits = np.asarray(ok, bool) & ~np.isnan(radius)
    return tuple(float(np.count_nonzero(hits & (radius >= r))) / len(radius) for r in radii)


def certified_accuracy_at(radius: np.ndarray, data: ReportData, radii: Iterable[float]) -> tuple[float, ...] | None:
    """Fraction of labelled records with correct == true and radius >= r, for each r.

    ``radius`` holds one value per record (NaN = not certified). None when no record has a label.
    """
    if not data.labelled.any():
        return None
    return certified_fraction(radius[data.labelled], data.correct[data.labelled], radii)


def certified_accuracy_interval(radius: np.ndarray, data: ReportData, r: float,
                                confidence: float = 0.95) -> tuple[float, float] | None:
    """The ``accuracy_interval`` of certified accuracy at ``r`` over the labelled records; None
    when no record has a label."""
    if not data.labelled.any():
        return None
    rad, ok = radius[data.labelled], data.correct[data.labelled]
    hits = int(np.count_nonzero(ok & ~np.isnan(rad) & (rad >= r)))
    return accuracy_interval(hits, len(rad), confidence)


def certified_accuracy_table(records: Sequence[Mapping], measure: str, method: str,
                             n_thresholds: int, radii: Sequence[float]) -> list[list[float]]:
    """Certified accuracy per threshold and radius straight from record dicts (the report's
    ``summary`` section). [] when no record has a label."""
    labelled = [r for r in records if r.get("correct") is not None]
    if not labelled:
        return []
    ok = np.array([bool(r["correct"]) for r in labelled])
    table = []
    for j in range(n_thresholds):
        rad = np.array([_radius_value(r["confidence"][measure][method]["radius"][j]) for r in labelled], float)
        table.append(list(certified_fraction(rad, ok, radii)))
    return table


def _radius_value(r: Any) -> float:
    value = radius_from_json(r)
    return math.nan if value is None else value


def population(data: ReportData) -> tuple[np.ndarray, np.ndarray]:
    """(rows, ok): labelled rows and their correctness; every row counts as ok without labels."""
    if data.labelled.any():
        return data.labelled, data.correct
    return np.ones(data.count, bool), np.ones(data.count, bool)


def mean_radius(radius: np.ndarray, ok: np.ndarray) -> tuple[float, int]:
    """Mean certified radius over the rows, 0 where not ``ok`` or not certified; "inf" radii are
    left out and counted (as ``reports.metrics.mean_certified_radius`` defines it)."""
    value = np.where(ok & ~np.isnan(radius), radius, 0.0)
    finite = np.isfinite(value)
    if not finite.any():
        return math.inf, int(np.count_nonzero(~finite))
    return float(value[finite].mean()), int(np.count_nonzero(~finite))


def certified_curve(radius: np.ndarray, data: ReportData, grid: Sequence[float]) -> np.ndarray:
    """Certified accuracy (the fraction certified, without labels) at each radius of ``grid``."""
    rows, ok = population(data)
    return np.asarray(certified_fraction(radius[rows], ok[rows], grid))


def mean_certified_radius(radius: np.ndarray, data: ReportData) -> tuple[float, int]:
    """(mean, inf_count) as the module docstring defines them."""
    rows, ok = population(data)
    return mean_radius(radius[rows], ok[rows])


def _labelled_fraction(ok: np.ndarray | None, labelled: np.ndarray) -> float | None:
    if ok is None or not labelled.any():
        return None
    return float(np.count_nonzero(ok[labelled])) / int(np.count_nonzero(labelled))


def smoothed_accuracy(data: ReportData) -> float | None:
    return _labelled_fraction(data.correct, data.labelled)


def clean_accuracy(data: ReportData) -> float | None:
    return _labelled_fraction(data.clean_correct, data.labelled)


def record_accuracies(records: Sequence[Mapping]) -> tuple[float | None, float | None]:
    """(clean accuracy, smoothed accuracy) straight from record dicts (the report's top-level keys)."""
    labelled = np.array([r.get("correct") is not None for r in records], bool)
    smoothed = np.array([r.get("correct") is True for r in records], bool)
    cleans = [r.get("clean_prediction") for r in records]
    known = all(c is not None for c, lab in zip(cleans, labelled) if lab)
    clean = np.array([c is not None and c == r.get("label") for c, r in zip(cleans, records)], bool)
    return _labelled_fraction(clean if known else None, labelled), _labelled_fraction(smoothed, labelled)


def abstain_rate(data: ReportData) -> float:
    return float(np.count_nonzero(np.isnan(data.label_radius))) / data.count


@dataclass(frozen=True)
class Curve:
    """Certified accuracy of one certificate at each radius of its summary.

    ``measure`` is "label" (method "cohen", threshold None) for the label certificate.
    ``accuracy`` is None when the report has no labels.
    """

    measure: str
    method: str
    threshold: float | None
    accuracy: tuple[float, ...] | None
    mean_radius: float
    inf_count: int
    interval: tuple[tuple[float, float], ...] | None = None


@dataclass(frozen=True)
class ReportSummary:
    """Everything ``onnxcert summary`` shows for one report."""

    name: str
    source: str
    model: str | None
    sigma: float
    alpha: float
    n: int
    n0: int | None
    count: int
    total: int
    complete: bool
    labelled: int
    clean_accuracy: float | None
    smoothed_accuracy: float | None
    abstain_rate: float
    radii: tuple[float, ...]
    label: Curve
    curves: tuple[Curve, ...] = field(default=())
    confidence: float = 0.95  # of the intervals beside certified accuracy
    unevaluated: int = 0  # inputs a sequential run left out once its gate was decided (not in count)

    def curve(self, measure: str, method: str, threshold: float) -> Curve | None:
        for c in self.curves:
            if (c.measure, c.method) == (measure, method) and math.isclose(c.threshold, threshold, abs_tol=1e-9):
                return c
        return None


def summarize_report(data: ReportData, *, radii: Sequence[float] | None = None, name: str | None = None,
                     measures: Sequence[str] | None = None, methods: Sequence[str] | None = None,
                     confidence: float = 0.95) -> ReportSummary:
    """The summary of one checked report at ``radii`` [default: the report's settings.radii],
    with ``confidence`` intervals beside every certified accuracy."""
    radii = tuple(float(r) for r in (data.settings["radii"] if radii is None else radii))
    s = data.settings
    total = data.report.get("total")
    total = total if isinstance(total, int) and not isinstance(total, bool) and total >= data.count else data.count
    curves = []
    for m in _pick(data.measures, measures, "measure"):
        for meth in _pick(data.methods, methods, "method"):
            for j, c in enumerate(data.thresholds(m)):
                col = data.radius[m, meth][:, j]
                acc = certified_accuracy_at(col, data, radii)
                curves.append(Curve(m, meth, c, acc, *mean_certified_radius(col, data),
                                    _intervals(acc, data, confidence)))
    acc = certified_accuracy_at(data.label_radius, data, radii)
    label = Curve(LABEL, COHEN, None, acc, *mean_certified_radius(data.label_radius, data),
                  _intervals(acc, data, confidence))
    return ReportSummary(
        name=name or data.source, source=data.source, model=data.model_path, sigma=float(s["sigma"]),
        alpha=float(s["alpha"]), n=int(s["n"]), n0=int(s["n0"]) if isinstance(s.get("n0"), int) else None,
        count=data.count, total=total,
        complete=bool(data.report.get("complete", True)), labelled=int(np.count_nonzero(data.labelled)),
        clean_accuracy=clean_accuracy(data), smoothed_accuracy=smoothed_accuracy(data),
        abstain_rate=abstain_rate(data), radii=radii, label=label, curves=tuple(curves), confidence=confidence,
        unevaluated=len(data.report.get("unevaluated") or ()),
    )


def _intervals(accuracy: tuple[float, ...] | None, data: ReportData,
               confidence: float) -> tuple[tuple[float, float], ...] | None:
    if accuracy is None:
        return None
    m = int(np.count_nonzero(data.labelled))
    return tuple(accuracy_interval(round(a * m), m, confidence) for a in accuracy)


def _pick(available: tuple[str, ...], wanted: Sequence[str] | None, what: str) -> tuple[str, ...]:
    if wanted is None:
        return available
    for w in wanted:
        if w not in available:
            raise ConfigError(f"{what} {w!r} is not in the report (it has: {', '.join(available)})")
    return tuple(wanted)


def report_names(datas: Sequence[ReportData]) -> list[str]:
    """Short labels that tell reports apart: model file name (or report file name) and sigma."""
    def base(d: ReportData, full: bool) -> str:
        if d.model_path and not full:
            return Path(d.model_path).name
        return d.source if full else Path(d.source).name

    for full in (False, True):
        names = [f"{base(d, full)} sigma={float(d.settings['sigma']):g}" for d in datas]
        if len(set(names)) == len(names):
            return names
    return [f"{name} #{i + 1}" for i, name in enumerate(names)]


def summarize_reports(paths: Sequence[str | Path], *, radii: Sequence[float] | None = None,
                      measures: Sequence[str] | None = None, methods: Sequence[str] | None = None,
                      confidence: float = 0.95) -> tuple[ReportSummary, ...]:
    """Load and summarize several reports at common radii [default: the union of their radii]."""
    if not paths:
        raise ConfigError("give at least one REPORT.json")
    return summarize_datas([load_report(p) for p in paths], radii=radii, measures=measures, methods=methods,
                           confidence=confidence)


def summarize_datas(datas: Sequence[ReportData], *, radii: Sequence[float] | None = None,
                    measures: Sequence[str] | None = None, methods: Sequence[str] | None = None,
                    confidence: float = 0.95) -> tuple[ReportSummary, ...]:
    """``summarize_reports`` for reports already loaded."""
    if not 0 < confidence < 1:
        raise ConfigError(f"the confidence level (--confidence) must be in (0, 1), got {confidence!r}")
    if radii is None:
        radii = sorted({float(r) for d in datas for r in d.settings["radii"]})
    for r in radii:
        if not math.isfinite(r) or r < 0:
            raise ConfigError(f"radii must be finite and >= 0, got {r!r}")
    return tuple(summarize_report(d, radii=radii, name=name, measures=measures, methods=methods,
                                  confidence=confidence) for d, name in zip(datas, report_names(datas)))


def default_method(methods: Sequence[str]) -> str:
    return "cdf-bj" if "cdf-bj" in methods else methods[-1]


def paper_methods(methods: Sequence[str]) -> tuple[str, ...]:
    """The pair Kumar et al.'s Figure 5 draws: the best CDF method present (cdf-bj, else cdf-dkw)
    and the naive baseline; every method when neither is there."""
    cdf = next((m for m in ("cdf-bj", "cdf-dkw") if m in methods), None)
    return tuple(m for m in (cdf, "naive") if m in methods) or tuple(methods)


def largest_certified_radius(datas: Sequence[ReportData]) -> float:
    """The largest finite radius of a correct (or, without labels, any) input over every
    certificate of the reports; 0 when there is none. Figures end just past it."""
    top = 0.0
    for data in datas:
        rows, ok = population(data)
        for col in [data.label_radius] + [c for r in data.radius.values() for c in r.T]:
            vals = col[rows & ok & np.isfinite(col)]
            if vals.size:
                top = max(top, float(vals.max()))
    return top


def certified_steps(radius: np.ndarray, data: ReportData, x_max: float) -> tuple[np.ndarray, np.ndarray]:
    """The exact certified-accuracy curve on [0, x_max], as its value at 0, at every distinct
    certified radius u <= x_max, and at x_max. Between two such points the curve is constant at
    the right point's value (an input with radius u still counts at u): draw it as a step that
    changes just after each point ("steps-pre"). Fraction certified when there are no labels."""
    rows, ok = population(data)
    rad = radius[rows]
    hits = np.sort(rad[ok[rows] & ~np.isnan(rad)])
    m = len(rad)
    drops = np.unique(hits[np.isfinite(hits) & (hits > 0) & (hits < x_max)])
    xs = np.concatenate([[0.0], drops, [x_max]])
    ys = (len(hits) - np.searchsorted(hits, xs, side="left")) / m  # #{hits >= x} / m
    return xs, ys


def accuracy_interval(hits: int, m: int, confidence: float = 0.95) -> tuple[float, float]:
    """Two-sided Clopper-Pearson interval for a rate from ``hits`` successes in ``m`` trials:
    each end is a one-sided bound at level (1 + confidence) / 2, so the interval covers the
    true rate with probability >= ``confidence``. (0, 1) ends are exact at hits = 0 and m."""
    from ..stats.bounds import clopper_pearson_lower  # SciPy, only when asked

    if m <= 0:
        return math.nan, math.nan
    half = (1.0 - confidence) / 2.0
    lo = float(clopper_pearson_lower(hits, m, half)[0])
    hi = 1.0 - float(clopper_pearson_lower(m - hits, m, half)[0])
    return lo, hi


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
    labelled = data.labelled.any()
    key = _ints(data.report["records"], "label" if labelled else "prediction")
    names = class_names(data)
    rows = []
    for k in np.unique(key[key >= 0]):
        sel = key == k
        ok = data.correct[sel] if labelled else np.ones(int(sel.sum()), bool)
        clean = None if not labelled or data.clean_correct is None else float(data.clean_correct[sel].mean())
        rows.append(ClassRow(
            label=int(k), name=names[k] if names and k < len(names) else None, count=int(sel.sum()),
            smoothed_accuracy=float(ok.mean()) if labelled else None, clean_accuracy=clean,
            abstain_rate=float(np.isnan(data.label_radius[sel]).mean()), accuracy=certified_fraction(radius[sel], ok, radii),
            **dict(zip(("mean_radius", "inf_count"), mean_radius(radius[sel], ok)))))
    return tuple(rows)


# ---------------------------------------------------------------- comparing two reports

COMPARED_SETTINGS = ("sigma", "n", "alpha")


def _inputs(data: ReportData) -> list[str | None]:
    return [r.get("input") if isinstance(r.get("input"), str) else None for r in data.report["records"]]


def _same_input(a: str | None, b: str | None) -> bool:
    """Two records name the same input when one path ends with the other (the same test set
    checked out in another folder, or named from another working directory)."""
    if a is None or b is None:
        return a is b
    pa, pb = Path(a).parts, Path(b).parts
    k = min(len(pa), len(pb))
    return pa[len(pa) - k:] == pb[len(pb) - k:]


def mismatches(a: ReportData, b: ReportData) -> list[str]:
    """What makes two reports measure different things: their inputs (count, paths, labels),
    sigma, n or alpha. [] when they are comparable."""
    out = []
    for key in COMPARED_SETTINGS:
        va, vb = float(a.settings[key]), float(b.settings[key])
        if not math.isclose(va, vb, rel_tol=1e-12, abs_tol=0.0):
            out.append(f"{key} ({va:g} vs {vb:g})")
    if a.count != b.count:
        out.append(f"inputs ({a.count} vs {b.count})")
        return out
    paths = list(zip(_inputs(a), _inputs(b)))
    labels = [(x.get("label"), y.get("label")) for x, y in zip(a.report["records"], b.report["records"])]
    for what, pairs, same in (("inputs", paths, _same_input), ("labels", labels, lambda u, v: u == v)):
        i = next((i for i, (u, v) in enumerate(pairs) if not same(u, v)), None)
        if i is not None:
            out.append(f"{what} (record {i}: {pairs[i][0]!r} vs {pairs[i][1]!r})")
            break
    return out


def check_comparable(a: ReportData, b: ReportData, *, allow: bool, what: str = "compare") -> list[str]:
    """ConfigError (one line) when ``mismatches`` finds something and ``allow`` is False; else
    the mismatches (to show as a warning)."""
    found = mismatches(a, b)
    if found and not allow:
        raise ConfigError(f"cannot {what}: {a.source} and {b.source} differ in {', '.join(found)}; "
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
    def smoothed_accuracy_delta(self) -> float | None:
        b, o = self.base.smoothed_accuracy, self.other.smoothed_accuracy
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
