"""Reading reports back: the ``onnxcert.report/1`` schema, parsing, and the checks that turn a
malformed report into one-line InputErrors. The numbers computed from a report live in
``reports.metrics``; how they are shown lives in ``reports.render``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import ConfigError, InputError
from ..untrusted import input_file, parse_json, quote, shown
from ..values import finite_number

SCHEMA = "onnxcert.report/1"
LABEL = "label"  # the pseudo-measure of the label certificate
COHEN = "cohen"  # its pseudo-method
RADIUS_UNITS = "L2 radius ([0, 1] pixel space)"

@dataclass(frozen=True, eq=False)
class ReportData:
    """A checked report with its radii as arrays: NaN where the report says null, inf for "inf".

    ``radius[(measure, method)]`` is [N, T] (one column per threshold of the measure);
    ``correct`` is True/False per record (the smoothed, n0-vote prediction), and ``labelled``
    marks records whose label is known. ``clean_correct`` is the same for the noise-free
    prediction (``clean_prediction``), or None when a labelled record lacks one (reports from
    certify-scores or from before clean predictions were recorded).
    """

    source: str
    report: Mapping[str, Any]
    labelled: np.ndarray
    correct: np.ndarray
    label_radius: np.ndarray
    means: Mapping[str, np.ndarray]
    radius: Mapping[tuple[str, str], np.ndarray]
    clean_correct: np.ndarray | None = None

    @property
    def settings(self) -> Mapping[str, Any]:
        return self.report["settings"]

    @property
    def measures(self) -> tuple[str, ...]:
        return tuple(self.settings["measures"])

    @property
    def methods(self) -> tuple[str, ...]:
        return tuple(self.settings["methods"])

    def thresholds(self, measure: str) -> tuple[float, ...]:
        return tuple(float(c) for c in self.settings["thresholds"][measure])

    @property
    def count(self) -> int:
        return len(self.correct)

    @property
    def model_path(self) -> str | None:
        model = self.report.get("model")
        return model.get("path") if isinstance(model, Mapping) else None


def load_report(path: str | Path) -> ReportData:
    """Read and check an ``onnxcert.report/1`` JSON file; InputError (one line) when unusable."""
    path = input_file(path, "report")  # a FIFO would block the read forever
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise InputError(f"report {shown(path)} cannot be read ({exc.strerror or type(exc).__name__})") from None
    return parse_report(parse_json(text, f"report {shown(path)}"), str(path))


def parse_report(report: Any, source: str = "report") -> ReportData:
    """Check a report dict against the contract and convert its radii to arrays."""
    if not isinstance(report, Mapping) or "schema" not in report:
        raise InputError(f"{source}: not an onnxcert report (no 'schema' key)")
    if report["schema"] != SCHEMA:
        raise InputError(f"{source}: unsupported schema {quote(report['schema'])}; expected {SCHEMA!r}")
    settings = _check_settings(report.get("settings"), source)
    records = report.get("records")
    if not isinstance(records, list):
        raise InputError(f"{source}: 'records' must be a list")
    if not records:
        raise InputError(f"{source}: the report holds no records")
    n = len(records)
    labelled, correct, clean_correct = np.zeros(n, bool), np.zeros(n, bool), np.zeros(n, bool)
    clean_known = True
    label_radius = np.empty(n)
    means = {m: np.empty(n) for m in settings["measures"]}
    radius = {(m, meth): np.empty((n, len(settings["thresholds"][m])))
              for m in settings["measures"] for meth in settings["methods"]}
    for i, rec in enumerate(records):
        where = f"{source}: record {i}"
        if not isinstance(rec, Mapping):
            raise InputError(f"{where} is not an object")
        ok = rec.get("correct")
        if ok is not None and not isinstance(ok, bool):
            raise InputError(f"{where}: 'correct' must be true, false or null, got {quote(ok)}")
        _check_correct(rec, ok, where)
        labelled[i], correct[i] = ok is not None, ok is True
        clean = rec.get("clean_prediction")
        if clean is not None and (not isinstance(clean, int) or isinstance(clean, bool)):
            raise InputError(f"{where}: 'clean_prediction' must be an integer or null, got {clean!r}")
        if ok is not None:
            clean_known = clean_known and clean is not None
            clean_correct[i] = clean is not None and clean == rec.get("label")
        cert = _get(rec, ("label_certificate",), where, Mapping)
        label_radius[i] = _radius(cert.get("radius"), f"{where}: label_certificate.radius")
        for m in settings["measures"]:
            means[m][i] = _number(_get(rec, ("confidence", m, "mean"), where), f"{where}: confidence.{m}.mean")
            for meth in settings["methods"]:
                radii = _get(rec, ("confidence", m, meth, "radius"), where, list)
                want = radius[m, meth].shape[1]
                if len(radii) != want:
                    raise InputError(f"{where}: confidence.{m}.{meth}.radius has {len(radii)} values, "
                                     f"expected {want} (one per threshold)")
                radius[m, meth][i] = [_radius(r, f"{where}: confidence.{m}.{meth}.radius") for r in radii]
    return ReportData(source, report, labelled, correct, label_radius, means, radius,
                      clean_correct if clean_known else None)


def _check_correct(rec: Mapping, ok: bool | None, where: str) -> None:
    """``correct`` is derived data: it must be what the record's label and prediction say (null
    when the label is). A report edited by hand, or corrupted, is refused rather than trusted:
    certified accuracy counts ``correct``."""
    for key in ("label", "prediction"):
        if key not in rec:
            raise InputError(f"{where} has no {key!r}")
    label, prediction = rec["label"], rec["prediction"]
    if isinstance(prediction, bool) or not isinstance(prediction, int):
        raise InputError(f"{where}: 'prediction' must be a class index, got {quote(prediction)}")
    if label is not None and (isinstance(label, bool) or not isinstance(label, int)):
        raise InputError(f"{where}: 'label' must be a class index or null, got {quote(label)}")
    expected = None if label is None else label == prediction
    if ok != expected:
        raise InputError(f"{where} says correct={quote(ok).lower().replace('none', 'null')} but its label "
                         f"{'null' if label is None else label} and prediction {prediction} say "
                         f"{'null' if expected is None else str(expected).lower()}; the report was edited or is "
                         "corrupt")


def _check_settings(settings: Any, source: str) -> Mapping:
    if not isinstance(settings, Mapping):
        raise InputError(f"{source}: 'settings' must be an object")
    for key in ("sigma", "alpha", "n", "measures", "methods", "thresholds", "radii"):
        if key not in settings:
            raise InputError(f"{source}: settings has no {key!r}")
    for key in ("sigma", "alpha", "n"):
        _number(settings[key], f"{source}: settings.{key}")
    for key in ("measures", "methods"):
        if not isinstance(settings[key], list) or not all(isinstance(v, str) for v in settings[key]):
            raise InputError(f"{source}: settings.{key} must be a list of names")
    thresholds = settings["thresholds"]
    if not isinstance(thresholds, Mapping):
        raise InputError(f"{source}: settings.thresholds must be an object")
    for m in settings["measures"]:
        if not isinstance(thresholds.get(m), list):
            raise InputError(f"{source}: settings.thresholds has no list for measure {quote(m)}")
        for c in thresholds[m]:
            _number(c, f"{source}: settings.thresholds.{m}")
    if not isinstance(settings["radii"], list):
        raise InputError(f"{source}: settings.radii must be a list")
    for r in settings["radii"]:
        if _number(r, f"{source}: settings.radii") < 0:
            raise InputError(f"{source}: settings.radii must be >= 0, got {quote(r)}")
    return settings


def _get(obj: Mapping, keys: Sequence[str], where: str, kind: type | None = None) -> Any:
    for depth, key in enumerate(keys):
        if not isinstance(obj, Mapping) or key not in obj:
            raise InputError(f"{where} has no {'.'.join(keys[:depth + 1])}")
        obj = obj[key]
    if kind is not None and not isinstance(obj, kind):
        raise InputError(f"{where}: {'.'.join(keys)} has the wrong type ({type(obj).__name__})")
    return obj


def _number(value: Any, what: str) -> float:
    return finite_number(value, what, InputError)


def radius_to_json(r: float | None) -> float | str | None:
    """A radius as the report writes it: None -> null, inf -> "inf"."""
    if r is None:
        return None
    return "inf" if math.isinf(r) else float(r)


def radius_from_json(r: Any) -> float | None:
    """The inverse of ``radius_to_json`` for an already checked value."""
    if r is None:
        return None
    return math.inf if r == "inf" else float(r)


def _radius(value: Any, what: str) -> float:
    """null -> NaN (not certified), "inf" -> inf, a number >= 0 -> itself."""
    if value is None:
        return math.nan
    if value == "inf":
        return math.inf
    if _number(value, what) < 0:
        raise InputError(f"{what} must be >= 0, null or \"inf\", got {quote(value)}")
    return float(value)



def radius_column(data: ReportData, measure: str, method: str, threshold: float | None) -> np.ndarray:
    """One radius per record: the label certificate's, or a confidence certificate's at ``threshold``.

    ConfigError naming the allowed values when the report lacks the measure, method or threshold.
    """
    if measure == LABEL:
        return data.label_radius
    if measure not in data.measures:
        raise ConfigError(f"{data.source}: measure {quote(measure)} is not in the report "
                          f"(it has: {', '.join(data.measures + (LABEL,))})")
    if method not in data.methods:
        raise ConfigError(f"{data.source}: method {quote(method)} is not in the report (it has: {', '.join(data.methods)})")
    thresholds = data.thresholds(measure)
    for j, c in enumerate(thresholds):
        if threshold is not None and math.isclose(c, threshold, rel_tol=0, abs_tol=1e-9):
            return data.radius[measure, method][:, j]
    raise ConfigError(f"{data.source}: threshold {quote(threshold)} is not one of the report's {measure} thresholds "
                      f"({', '.join(f'{c:g}' for c in thresholds)})")
