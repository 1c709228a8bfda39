"""How a summary is shown: rich tables, Markdown, CSV and JSON (``onnxcert summary -f``), and
the short table printed after ``run`` / ``certify-scores``. Every number comes from
``reports.metrics``."""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Mapping, Sequence

from ..errors import ConfigError, InputError
from .metrics import Curve, ReportSummary, default_method, summarize_report
from .read import RADIUS_UNITS, parse_report

FORMATS = ("rich", "markdown", "csv", "json")


def _fmt(x: float | None, digits: int = 3) -> str:
    if x is None:
        return "—"
    return "inf" if math.isinf(x) else f"{x:.{digits}f}"


DEFINITIONS = ("Certified accuracy at r: fraction of labelled inputs that are predicted correctly and "
               "certified at radius >= r (L2, [0, 1] pixel space). Mean R: average certified radius, "
               "0 for incorrect or uncertified inputs; inputs certified at every radius are left out "
               "and counted under 'inf'. Abstain: label certificate has no radius.")


def _numeric(header: str) -> bool:
    return header.startswith("r=") or header in ("sigma", "alpha", "n", "c", "clean acc", "smoothed acc", "abstain", "mean R",
                                                                  "inf")


def _overview_rows(summaries: Sequence[ReportSummary]) -> tuple[list[str], list[list[str]]]:
    head = ["report", "model", "sigma", "alpha", "n", "inputs", "clean acc", "smoothed acc", "abstain"]
    rows = []
    for s in summaries:
        inputs = f"{s.count}" if s.count == s.total and s.complete else f"{s.count}/{s.total} (incomplete)"
        if s.labelled < s.count:
            inputs += f", {s.labelled} labelled"
        rows.append([s.name, s.model or "—", f"{s.sigma:g}", f"{s.alpha:g}", str(s.n), inputs,
                     _fmt(s.clean_accuracy), _fmt(s.smoothed_accuracy), _fmt(s.abstain_rate)])
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
    w.writerow(["report", "model", "sigma", "alpha", "n", "inputs", "labelled", "clean_accuracy", "smoothed_accuracy",
                "abstain_rate",
                "measure", "method", "threshold", "mean_radius", "inf_count"] + [f"acc@{r:g}" for r in radii])
    blank = lambda v: "" if v is None else v  # noqa: E731
    for s in summaries:
        for c in (s.label,) + s.curves:
            acc = c.accuracy or (None,) * len(radii)
            w.writerow([s.name, blank(s.model), s.sigma, s.alpha, s.n, s.count, s.labelled, blank(s.clean_accuracy),
                        blank(s.smoothed_accuracy), s.abstain_rate, c.measure, c.method, blank(c.threshold), _json_num(c.mean_radius),
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
            "clean_accuracy": s.clean_accuracy, "smoothed_accuracy": s.smoothed_accuracy,
            "abstain_rate": s.abstain_rate,
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
    clean = f"clean accuracy {_fmt(s.clean_accuracy)} (no noise), " if s.clean_accuracy is not None else ""
    line = (f"{s.count} inputs, {clean}smoothed accuracy {_fmt(s.smoothed_accuracy)} (n0 vote), "
            f"abstain rate {_fmt(s.abstain_rate)}"
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
