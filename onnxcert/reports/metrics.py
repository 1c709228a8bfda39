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


def certified_curve(radius: np.ndarray, data: ReportData, grid: Sequence[float]) -> np.ndarray:
    """Certified accuracy (the fraction certified, without labels) at each radius of ``grid``."""
    rows, ok = population(data)
    return np.asarray(certified_fraction(radius[rows], ok[rows], grid))


def mean_certified_radius(radius: np.ndarray, data: ReportData) -> tuple[float, int]:
    """(mean, inf_count) as the module docstring defines them."""
    if data.labelled.any():
        rad, ok = radius[data.labelled], data.correct[data.labelled]
    else:
        rad, ok = radius, np.ones(len(radius), bool)
    value = np.where(ok & ~np.isnan(rad), rad, 0.0)
    finite = np.isfinite(value)
    inf_count = int(np.count_nonzero(~finite))
    if not finite.any():
        return math.inf, inf_count
    return float(value[finite].mean()), inf_count


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

    def curve(self, measure: str, method: str, threshold: float) -> Curve | None:
        for c in self.curves:
            if (c.measure, c.method) == (measure, method) and math.isclose(c.threshold, threshold, abs_tol=1e-9):
                return c
        return None


def summarize_report(data: ReportData, *, radii: Sequence[float] | None = None, name: str | None = None,
                     measures: Sequence[str] | None = None, methods: Sequence[str] | None = None) -> ReportSummary:
    """The summary of one checked report at ``radii`` [default: the report's settings.radii]."""
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
                curves.append(Curve(m, meth, c, acc, *mean_certified_radius(col, data)))
    label = Curve(LABEL, COHEN, None, certified_accuracy_at(data.label_radius, data, radii),
                  *mean_certified_radius(data.label_radius, data))
    return ReportSummary(
        name=name or data.source, source=data.source, model=data.model_path, sigma=float(s["sigma"]),
        alpha=float(s["alpha"]), n=int(s["n"]), n0=int(s["n0"]) if isinstance(s.get("n0"), int) else None,
        count=data.count, total=total,
        complete=bool(data.report.get("complete", True)), labelled=int(np.count_nonzero(data.labelled)),
        clean_accuracy=clean_accuracy(data), smoothed_accuracy=smoothed_accuracy(data), abstain_rate=abstain_rate(data), radii=radii, label=label,
        curves=tuple(curves),
    )


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
                      measures: Sequence[str] | None = None,
                      methods: Sequence[str] | None = None) -> tuple[ReportSummary, ...]:
    """Load and summarize several reports at common radii [default: the union of their radii]."""
    if not paths:
        raise ConfigError("give at least one REPORT.json")
    datas = [load_report(p) for p in paths]
    if radii is None:
        radii = sorted({float(r) for d in datas for r in d.settings["radii"]})
    for r in radii:
        if not math.isfinite(r) or r < 0:
            raise ConfigError(f"radii must be finite and >= 0, got {r!r}")
    return tuple(summarize_report(d, radii=radii, name=name, measures=measures, methods=methods)
                 for d, name in zip(datas, report_names(datas)))


def default_method(methods: Sequence[str]) -> str:
    return "cdf-bj" if "cdf-bj" in methods else methods[-1]
