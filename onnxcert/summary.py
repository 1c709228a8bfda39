"""Read reports back: certified-accuracy tables (Kumar et al. 2020, Figure 5), the label
certificate's certified accuracy (Cohen et al. 2019), clean accuracy, abstain rate and mean
certified radius, for one report or several side by side.

Every number is recomputed from the records; the report's stored ``summary`` section is ignored.

Definitions (``docs/results.md`` explains them for readers):

- *certified accuracy* at radius r: the fraction of labelled inputs whose prediction is correct
  and whose certified radius is >= r. A null radius (not certified) never counts; ``"inf"``
  counts at every r. Because the records hold the exact radii, any r can be asked for.
- *clean accuracy*: the fraction of labelled inputs whose prediction equals the label, whatever
  their certificates say.
- *abstain rate*: the fraction of all inputs whose label certificate has a null radius.
- *mean certified radius*: the average over labelled inputs of the radius, counting 0 for an
  incorrect prediction or a null radius (the "average certified radius" of Zhai et al. 2020).
  Without labels it averages over every input and only a null radius counts 0. Inputs whose
  radius is ``"inf"`` are left out of the average and counted in ``inf_count``; when every input
  is left out that way the mean is ``inf``.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .errors import ConfigError, InputError

SCHEMA = "onnxcert.report/1"
LABEL = "label"  # the pseudo-measure of the label certificate
COHEN = "cohen"  # its pseudo-method
FORMATS = ("rich", "markdown", "csv", "json")
RADIUS_UNITS = "L2 radius ([0, 1] pixel space)"


# ---------------------------------------------------------------- reading and checking reports


@dataclass(frozen=True, eq=False)
class ReportData:
    """A checked report with its radii as arrays: NaN where the report says null, inf for "inf".

    ``radius[(measure, method)]`` is [N, T] (one column per threshold of the measure);
    ``correct`` is True/False per record, and ``labelled`` marks records whose label is known.
    """

    source: str
    report: Mapping[str, Any]
    labelled: np.ndarray
    correct: np.ndarray
    label_radius: np.ndarray
    means: Mapping[str, np.ndarray]
    radius: Mapping[tuple[str, str], np.ndarray]

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
    path = Path(path)
    if not path.is_file():
        raise InputError(f"report {str(path)!r} does not exist")
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise InputError(f"report {str(path)!r} is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"report {str(path)!r} is not valid JSON (line {exc.lineno}: {exc.msg})") from None
    return parse_report(report, str(path))


def parse_report(report: Any, source: str = "report") -> ReportData:
    """Check a report dict against the contract and convert its radii to arrays."""
    if not isinstance(report, Mapping) or "schema" not in report:
        raise InputError(f"{source}: not an onnxcert report (no 'schema' key)")
    if report["schema"] != SCHEMA:
        raise InputError(f"{source}: unsupported schema {report['schema']!r}; expected {SCHEMA!r}")
    settings = _check_settings(report.get("settings"), source)
    records = report.get("records")
    if not isinstance(records, list):
        raise InputError(f"{source}: 'records' must be a list")
    if not records:
        raise InputError(f"{source}: the report holds no records")
    n = len(records)
    labelled, correct = np.zeros(n, bool), np.zeros(n, bool)
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
            raise InputError(f"{where}: 'correct' must be true, false or null, got {ok!r}")
        labelled[i], correct[i] = ok is not None, ok is True
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
    return ReportData(source, report, labelled, correct, label_radius, means, radius)


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
            raise InputError(f"{source}: settings.thresholds has no list for measure {m!r}")
        for c in thresholds[m]:
            _number(c, f"{source}: settings.thresholds.{m}")
    if not isinstance(settings["radii"], list):
        raise InputError(f"{source}: settings.radii must be a list")
    for r in settings["radii"]:
        if _number(r, f"{source}: settings.radii") < 0:
            raise InputError(f"{source}: settings.radii must be >= 0, got {r!r}")
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
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(f"{what} must be a finite number, got {value!r}")
    return float(value)


def _radius(value: Any, what: str) -> float:
    """null -> NaN (not certified), "inf" -> inf, a number >= 0 -> itself."""
    if value is None:
        return math.nan
    if value == "inf":
        return math.inf
    if _number(value, what) < 0:
        raise InputError(f"{what} must be >= 0, null or \"inf\", got {value!r}")
    return float(value)


# ---------------------------------------------------------------- the numbers


def certified_accuracy_at(radius: np.ndarray, data: ReportData, radii: Iterable[float]) -> tuple[float, ...] | None:
    """Fraction of labelled records with correct == true and radius >= r, for each r.

    ``radius`` holds one value per record (NaN = not certified). None when no record has a label.
    """
    if not data.labelled.any():
        return None
    hits = data.correct[data.labelled] & ~np.isnan(radius[data.labelled])
    rad = radius[data.labelled]
    return tuple(float(np.count_nonzero(hits & (rad >= r))) / len(rad) for r in radii)


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


def clean_accuracy(data: ReportData) -> float | None:
    if not data.labelled.any():
        return None
    return float(np.count_nonzero(data.correct[data.labelled])) / int(np.count_nonzero(data.labelled))


def abstain_rate(data: ReportData) -> float:
    return float(np.count_nonzero(np.isnan(data.label_radius))) / data.count


def radius_column(data: ReportData, measure: str, method: str, threshold: float | None) -> np.ndarray:
    """One radius per record: the label certificate's, or a confidence certificate's at ``threshold``.

    ConfigError naming the allowed values when the report lacks the measure, method or threshold.
    """
    if measure == LABEL:
        return data.label_radius
    if measure not in data.measures:
        raise ConfigError(f"{data.source}: measure {measure!r} is not in the report "
                          f"(it has: {', '.join(data.measures + (LABEL,))})")
    if method not in data.methods:
        raise ConfigError(f"{data.source}: method {method!r} is not in the report (it has: {', '.join(data.methods)})")
    thresholds = data.thresholds(measure)
    for j, c in enumerate(thresholds):
        if threshold is not None and math.isclose(c, threshold, rel_tol=0, abs_tol=1e-9):
            return data.radius[measure, method][:, j]
    raise ConfigError(f"{data.source}: threshold {threshold!r} is not one of the report's {measure} thresholds "
                      f"({', '.join(f'{c:g}' for c in thresholds)})")


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
        clean_accuracy=clean_accuracy(data), abstain_rate=abstain_rate(data), radii=radii, label=label,
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


# ---------------------------------------------------------------- formatting


def _fmt(x: float | None, digits: int = 3) -> str:
    if x is None:
        return "—"
    return "inf" if math.isinf(x) else f"{x:.{digits}f}"


DEFINITIONS = ("Certified accuracy at r: fraction of labelled inputs that are predicted correctly and "
               "certified at radius >= r (L2, [0, 1] pixel space). Mean R: average certified radius, "
               "0 for incorrect or uncertified inputs; inputs certified at every radius are left out "
               "and counted under 'inf'. Abstain: label certificate has no radius.")


def _numeric(header: str) -> bool:
    return header.startswith("r=") or header in ("sigma", "alpha", "n", "c", "clean acc", "abstain", "mean R", "inf")


def _overview_rows(summaries: Sequence[ReportSummary]) -> tuple[list[str], list[list[str]]]:
    head = ["report", "model", "sigma", "alpha", "n", "inputs", "clean acc", "abstain"]
    rows = []
    for s in summaries:
        inputs = f"{s.count}" if s.count == s.total and s.complete else f"{s.count}/{s.total} (incomplete)"
        if s.labelled < s.count:
            inputs += f", {s.labelled} labelled"
        rows.append([s.name, s.model or "—", f"{s.sigma:g}", f"{s.alpha:g}", str(s.n), inputs,
                     _fmt(s.clean_accuracy), _fmt(s.abstain_rate)])
    return head, rows


def _curve_cells(curve: Curve, radii: Sequence[float]) -> list[str]:
    acc = curve.accuracy or (None,) * len(radii)
    return [_fmt(a) for a in acc] + [_fmt(curve.mean_radius), str(curve.inf_count)]


def _label_rows(summaries: Sequence[ReportSummary]) -> tuple[list[str], list[list[str]]]:
    radii = summaries[0].radii
    head = ["report"] + [f"r={r:g}" for r in radii] + ["mean R", "inf"]
    return head, [[s.name] + _curve_cells(s.label, radii) for s in summaries]


def _measure_rows(summaries: Sequence[ReportSummary], measure: str) -> tuple[list[str], list[list[list[str]]]]:
    """Header, then rows grouped by method (one group per method), each row a threshold x report."""
    radii = summaries[0].radii
    multi = len(summaries) > 1
    head = (["report"] if multi else []) + ["method", "c"] + [f"r={r:g}" for r in radii] + ["mean R", "inf"]
    methods = list(dict.fromkeys(c.method for s in summaries for c in s.curves if c.measure == measure))
    thresholds = sorted({c.threshold for s in summaries for c in s.curves if c.measure == measure})
    groups = []
    for meth in methods:
        rows = []
        for t in thresholds:
            for s in summaries:
                curve = s.curve(measure, meth, t)
                if curve is not None:
                    rows.append(([s.name] if multi else []) + [meth, f"{t:g}"] + _curve_cells(curve, radii))
        groups.append(rows)
    return head, groups


def _measures(summaries: Sequence[ReportSummary]) -> list[str]:
    return list(dict.fromkeys(c.measure for s in summaries for c in s.curves))


def _no_labels_note(summaries: Sequence[ReportSummary]) -> str | None:
    names = [s.name for s in summaries if s.labelled == 0]
    if not names:
        return None
    return f"No labels in {', '.join(names)}: certified accuracy needs labels (shown as —); mean R covers every input."


def _console(console):
    """Off a terminal, rich would wrap at 80 columns: give tables their natural width instead."""
    if console.is_terminal:
        return console
    from rich.console import Console

    return Console(file=console.file, width=1000, color_system=None)


def render_rich(summaries: Sequence[ReportSummary], console=None) -> None:
    """Print the summary as rich tables (plain, space-aligned columns when not a terminal)."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    console = console or _console(Console())
    fancy = console.is_terminal
    style = box.SIMPLE_HEAVY if fancy else box.ASCII2

    def table(title: str, head: list[str], groups: list[list[list[str]]]) -> None:
        console.print(title, style="bold" if fancy else None, highlight=False)
        t = Table(box=style, header_style="bold" if fancy else None)
        for h in head:
            t.add_column(h, justify="right" if _numeric(h) else "left")
        for g, rows in enumerate(groups):
            if g:
                t.add_section()
            for row in rows:
                t.add_row(*row)
        console.print(t)

    head, rows = _overview_rows(summaries)
    table("Reports", head, [rows])
    head, rows = _label_rows(summaries)
    table("Label certificate (Cohen et al. 2019): certified accuracy", head, [rows])
    for m in _measures(summaries):
        head, groups = _measure_rows(summaries, m)
        table(f"Certified confidence: {m} >= c, certified accuracy (Kumar et al. 2020)", head, groups)
    for line in filter(None, [_no_labels_note(summaries), DEFINITIONS]):
        console.print(line, style="dim" if fancy else None, highlight=False)


def to_markdown(summaries: Sequence[ReportSummary]) -> str:
    out = []

    def table(title: str, head: list[str], rows: list[list[str]]) -> None:
        out.append(f"### {title}\n")
        out.append("| " + " | ".join(head) + " |")
        out.append("|" + "|".join("---:" if _numeric(h) else "---" for h in head) + "|")
        out.extend("| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows)
        out.append("")

    head, rows = _overview_rows(summaries)
    table("Reports", head, rows)
    head, rows = _label_rows(summaries)
    table("Label certificate (Cohen et al. 2019): certified accuracy", head, rows)
    for m in _measures(summaries):
        head, groups = _measure_rows(summaries, m)
        table(f"Certified confidence: {m} >= c, certified accuracy", head, [r for g in groups for r in g])
    out.extend(line + "\n" for line in filter(None, [_no_labels_note(summaries), DEFINITIONS]))
    return "\n".join(out)


def to_csv(summaries: Sequence[ReportSummary]) -> str:
    """One row per curve (label certificate first), radii as columns; full precision."""
    radii = summaries[0].radii
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["report", "model", "sigma", "alpha", "n", "inputs", "labelled", "clean_accuracy", "abstain_rate",
                "measure", "method", "threshold", "mean_radius", "inf_count"] + [f"acc@{r:g}" for r in radii])
    blank = lambda v: "" if v is None else v  # noqa: E731
    for s in summaries:
        for c in (s.label,) + s.curves:
            acc = c.accuracy or (None,) * len(radii)
            w.writerow([s.name, blank(s.model), s.sigma, s.alpha, s.n, s.count, s.labelled, blank(s.clean_accuracy),
                        s.abstain_rate, c.measure, c.method, blank(c.threshold), _json_num(c.mean_radius),
                        c.inf_count] + [blank(a) for a in acc])
    return buf.getvalue()


def _json_num(x: float | None):
    return "inf" if x is not None and math.isinf(x) else x


def to_json(summaries: Sequence[ReportSummary]) -> str:
    def curve(c: Curve) -> dict:
        return {"certified_accuracy": None if c.accuracy is None else list(c.accuracy),
                "mean_radius": _json_num(c.mean_radius), "inf_count": c.inf_count}

    reports = []
    for s in summaries:
        conf: dict[str, dict] = {}
        for c in s.curves:
            entry = conf.setdefault(c.measure, {}).setdefault(
                c.method, {"thresholds": [], "certified_accuracy": [], "mean_radius": [], "inf_count": []})
            entry["thresholds"].append(c.threshold)
            entry["certified_accuracy"].append(None if c.accuracy is None else list(c.accuracy))
            entry["mean_radius"].append(_json_num(c.mean_radius))
            entry["inf_count"].append(c.inf_count)
        reports.append({
            "name": s.name, "source": s.source, "model": s.model, "sigma": s.sigma, "alpha": s.alpha, "n": s.n,
            "n0": s.n0, "count": s.count, "total": s.total, "complete": s.complete, "labelled": s.labelled,
            "clean_accuracy": s.clean_accuracy, "abstain_rate": s.abstain_rate,
            "label_certificate": curve(s.label), "confidence": conf,
        })
    doc = {"schema": "onnxcert.summary/1", "radii": list(summaries[0].radii),
           "radius_units": RADIUS_UNITS, "reports": reports}
    return json.dumps(doc, indent=1, allow_nan=False) + "\n"


def render(summaries: Sequence[ReportSummary], fmt: str = "rich", console=None) -> str | None:
    """Markdown / CSV / JSON as a string; "rich" prints to ``console`` (stdout) and returns None."""
    if fmt == "rich":
        render_rich(summaries, console)
        return None
    writers = {"markdown": to_markdown, "csv": to_csv, "json": to_json}
    if fmt not in writers:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    return writers[fmt](summaries)


# ---------------------------------------------------------------- after a certification


def default_method(methods: Sequence[str]) -> str:
    return "cdf-bj" if "cdf-bj" in methods else methods[-1]


def print_run_summary(report: Mapping, console=None) -> None:
    """A short table on stderr after ``run`` / ``certify-scores``: certified accuracy at the
    report's radii for the label certificate and each measure's default method (cdf-bj)."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    console = console or _console(Console(stderr=True))
    try:
        data = parse_report(report, "report")
    except InputError as exc:  # the report is written already; a summary must not fail the run
        console.print(f"no summary: {exc}", highlight=False)
        return
    s = summarize_report(data)
    method = default_method(data.methods)
    fancy = console.is_terminal
    line = (f"{s.count} inputs, clean accuracy {_fmt(s.clean_accuracy)}, abstain rate {_fmt(s.abstain_rate)}"
            if s.labelled else f"{s.count} inputs (no labels), abstain rate {_fmt(s.abstain_rate)}")
    console.print(line, highlight=False)
    console.print(f"certified accuracy at L2 radius r ({method}; label = Cohen et al.)" if s.labelled
                  else f"mean certified radius ({method}; no labels, so no certified accuracy)", highlight=False)
    t = Table(box=box.SIMPLE if fancy else None, header_style="bold" if fancy else None)
    t.add_column("certificate")
    cols = [f"r={r:g}" for r in s.radii] if s.labelled else []
    for h in cols + ["mean R"]:
        t.add_column(h, justify="right")
    rows = [("label", s.label)] + [(f"{c.measure} >= {c.threshold:g}", c) for c in s.curves if c.method == method]
    for name, c in rows:
        cells = [_fmt(a) for a in c.accuracy] if s.labelled else []
        t.add_row(name, *cells, _fmt(c.mean_radius))
    console.print(t)
