"""Report records, the report's ``summary`` section (computed by ``reports.metrics``), and the
JSON / CSV writers.

The format is ``onnxcert.report/1`` (see the contract in README.md). Radii are L2 norms in [0, 1]
pixel space, the units of sigma; an unbounded radius is written as the string "inf" and an
abstained one as null.
"""

from __future__ import annotations

import csv
import io
import json
import platform
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from .config import Settings
from .files import atomic_write_all, write_error
from .reports.metrics import certified_accuracy_table, record_accuracies
from .reports.read import SCHEMA, radius_to_json
from .stats.names import METHOD_DESCRIPTIONS

if TYPE_CHECKING:
    from .stats.certify import InputCertificate

NOISE_STATEMENT = ("Gaussian noise N(0, sigma^2 I) is added to the image in [0, 1] pixel space, after "
                   "resize and crop and before (x - mean) / std; radii are L2 norms in the same units.")


@dataclass(frozen=True)
class Record:
    """One certified input."""

    index: int
    input: str | None
    label: int | None
    certificate: InputCertificate
    clean_prediction: int | None = None  # argmax of one noise-free forward pass; None without a model
    sequential: Mapping[str, Any] | None = None  # samples, stopped_at_look, decisions (run --sequential)

    @property
    def prediction(self) -> int:
        return self.certificate.prediction

    @property
    def correct(self) -> bool | None:
        return None if self.label is None else self.label == self.prediction

    def to_dict(self) -> dict[str, Any]:
        cert = self.certificate
        confidence = {}
        for measure, by_method in cert.confidence.items():
            entry: dict[str, Any] = {"mean": next(iter(by_method.values())).mean}
            for method, c in by_method.items():
                entry[method] = {"lower_bounds": list(c.lower_bounds), "upper_bounds": list(c.upper_bounds),
                                 "radius": [radius_to_json(r) for r in c.radius]}
            confidence[measure] = entry
        return {
            "index": self.index,
            "input": self.input,
            "label": self.label,
            "prediction": self.prediction,
            "correct": self.correct,
            "clean_prediction": self.clean_prediction,
            "label_certificate": {"p_lower": cert.label.p_lower, "radius": cert.label.radius},
            "confidence": confidence,
            **(dict(self.sequential) if self.sequential is not None else {}),
        }


def summarize(records: Sequence[Mapping], settings: Mapping) -> dict:
    """The report's ``summary`` section; {} when labels are unknown."""
    if not any(r.get("correct") is not None for r in records):
        return {}
    return {m: {meth: certified_accuracy_table(records, m, meth, len(settings["thresholds"][m]), settings["radii"])
                for meth in settings["methods"]}
            for m in settings["measures"]}


def settings_dict(settings: Settings, **extra: Any) -> dict[str, Any]:
    d = settings.to_dict()
    d["method_descriptions"] = {m: METHOD_DESCRIPTIONS[m] for m in settings.methods}
    d["noise"] = NOISE_STATEMENT
    d["radius_units"] = "L2 norm in [0, 1] pixel space (same units as sigma)"
    d.update(extra)
    return d


def build_report(settings: Settings, records: Iterable[Record | Mapping], *, model: Mapping | None = None,
                 complete: bool = True, total: int | None = None, provenance: Mapping | None = None,
                 command: Sequence[str] | None = None, config: Mapping | None = None,
                 **settings_extra: Any) -> dict[str, Any]:
    """The report dict. ``command``: the command line that produced it (null from the Python API);
    ``config``: the resolved configuration, in the config file's sections."""
    from . import __version__

    recs = [r.to_dict() if isinstance(r, Record) else dict(r) for r in records]
    sdict = settings_dict(settings, **settings_extra)
    clean, smoothed = record_accuracies(recs)
    report = {
        "schema": SCHEMA,
        "onnxcert_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "complete": complete,
        "count": len(recs),
        "total": len(recs) if total is None else total,
        "model": dict(model) if model else None,
        "settings": sdict,
        "command": None if command is None else [str(a) for a in command],
        "config": None if config is None else dict(config),
        "provenance": {"python": platform.python_version(), **(provenance or {})},
        "clean_accuracy": clean,
        "smoothed_accuracy": smoothed,
        "records": recs,
        "summary": summarize(recs, sdict),
    }
    return report


# ---------------------------------------------------------------- writers


def to_json(report: Mapping) -> str:
    return json.dumps(report, indent=1, allow_nan=False) + "\n"


def csv_columns(settings: Mapping) -> list[str]:
    cols = ["index", "input", "label", "prediction", "correct", "label_radius"]
    for m in settings["measures"]:
        cols.append(f"{m}_mean")
        for meth in settings["methods"]:
            cols += [f"{m}_{meth}_radius@{c:g}" for c in settings["thresholds"][m]]
    return cols + ["clean_prediction"]


def to_csv(report: Mapping) -> str:
    settings = report["settings"]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(csv_columns(settings))
    blank = lambda v: "" if v is None else v  # noqa: E731
    for rec in report["records"]:
        row = [rec["index"], blank(rec["input"]), blank(rec["label"]), rec["prediction"],
               blank(rec["correct"]), blank(rec["label_certificate"]["radius"])]
        for m in settings["measures"]:
            row.append(rec["confidence"][m]["mean"])
            for meth in settings["methods"]:
                row += [blank(r) for r in rec["confidence"][m][meth]["radius"]]
        w.writerow(row + [blank(rec.get("clean_prediction"))])
    return buf.getvalue()


def report_bytes(report: Mapping, path: str | Path) -> bytes:
    """The report as JSON or CSV by the suffix of ``path``. JSON is ASCII (names escaped); the
    CSV keeps an input name that is not UTF-8 (a file name of raw bytes) as those same bytes."""
    if Path(path).suffix.lower() == ".csv":
        return to_csv(report).encode("utf-8", "surrogateescape")
    return to_json(report).encode("ascii")


def write_report(report: Mapping, path: str | Path) -> Path:
    """Write JSON or CSV by the suffix of ``path``, atomically."""
    return write_reports(report, [path])[0]


def write_reports(report: Mapping, paths: Sequence[str | Path], hint: str = "") -> list[Path]:
    """Write the report to every path (JSON or CSV by suffix), all or none: every file is
    rendered and written to a temporary file first, and renamed into place only when all are
    (see files.atomic_write_all). An OSError (a full disk) becomes one InputError line naming
    the files, plus ``hint``."""
    items = [(Path(p), report_bytes(report, p)) for p in paths]
    try:
        return atomic_write_all(items)
    except OSError as exc:
        names = " and ".join(str(p) for p, _ in items)
        raise write_error(exc, names, "the report", hint or "no report was written") from None
