"""How a summary is shown: rich tables, Markdown, LaTeX, CSV and JSON (``onnxcert summary -f``),
per class (``--by-class``), two reports compared (``--diff``), and the short table printed after
``run`` / ``certify-scores``. Every number comes from ``reports.metrics``.

A table is a Block (title, header, groups of rows of strings), written out by one emitter per
format: rich, Markdown or LaTeX (booktabs). CSV and JSON get flat, full-precision records.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from ..errors import ConfigError, InputError
from .metrics import ClassRow, ClassTable, Curve, ReportSummary, SummaryDiff, default_method, summarize_report
from .read import RADIUS_UNITS, parse_report

FORMATS = ("rich", "markdown", "latex", "csv", "json")


def _fmt(x: float | None, digits: int = 3) -> str:
    if x is None:
        return "—"
    return "inf" if math.isinf(x) else f"{x:.{digits}f}"


DEFINITIONS = ("Certified accuracy at r: fraction of labelled inputs that are predicted correctly and "
               "certified at radius >= r (L2, [0, 1] pixel space). Mean R: average certified radius, "
               "0 for incorrect or uncertified inputs; inputs certified at every radius are left out "
               "and counted under 'inf'. Abstain: label certificate has no radius.")


def _overview_rows(summaries: Sequence[ReportSummary]) -> tuple[list[str], list[list[str]]]:
    head = ["report", "model", "sigma", "alpha", "n", "inputs", "clean acc", "smoothed acc", "abstain"]
    rows = []
    for s in summaries:
        inputs = f"{s.count}" if s.count == s.total and s.complete else f"{s.count}/{s.total} (incomplete)"
        if s.unevaluated:
            inputs += f" (+{s.unevaluated} unevaluated)"
        if s.labelled < s.count:
            inputs += f", {s.labelled} labelled"
        rows.append([s.name, s.model or "—", f"{s.sigma:g}", f"{s.alpha:g}", str(s.n), inputs,
                     _fmt(s.clean_accuracy), _fmt(s.smoothed_accuracy), _fmt(s.abstain_rate)])
    return head, rows


def _curve_cells(curve: Curve, radii: Sequence[float]) -> list[str]:
    acc = curve.accuracy or (None,) * len(radii)
    return [_fmt(a) for a in acc] + [_fmt(curve.mean_radius), str(curve.inf_count)]


def _interval_cells(curve: Curve, radii: Sequence[float]) -> list[str] | None:
    """The interval under each certified accuracy, e.g. "[0.861, 0.938]"; None without labels."""
    if curve.interval is None:
        return None
    return [f"[{lo:.3f}, {hi:.3f}]" for lo, hi in curve.interval] + ["", ""]


def _interval_tag(s: ReportSummary) -> str:
    return f"{100 * s.confidence:g}% CI"


def _label_rows(summaries: Sequence[ReportSummary], intervals: bool = False) -> tuple[list[str], list[list[str]]]:
    radii = summaries[0].radii
    head = ["report"] + [f"r={r:g}" for r in radii] + ["mean R", "inf"]
    rows = []
    for s in summaries:
        rows.append([s.name] + _curve_cells(s.label, radii))
        ci = _interval_cells(s.label, radii) if intervals else None
        if ci:
            rows.append([_interval_tag(s)] + ci)
    return head, rows


def _measure_rows(summaries: Sequence[ReportSummary], measure: str,
                  intervals: bool = False) -> tuple[list[str], list[list[list[str]]]]:
    """Header, then rows grouped by method (one group per method), each row a threshold x report,
    each followed by its intervals' row when ``intervals``."""
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
                    ci = _interval_cells(curve, radii) if intervals else None
                    if ci:
                        rows.append(([""] if multi else []) + ["", _interval_tag(s)] + ci)
        groups.append(rows)
    return head, groups


def _measures(summaries: Sequence[ReportSummary]) -> list[str]:
    return list(dict.fromkeys(c.measure for s in summaries for c in s.curves))


def _no_labels_note(summaries: Sequence[ReportSummary]) -> str | None:
    names = [s.name for s in summaries if s.labelled == 0]
    if not names:
        return None
    return f"No labels in {', '.join(names)}: certified accuracy needs labels (shown as —); mean R covers every input."


def _unevaluated_note(summaries: Sequence[ReportSummary]) -> str | None:
    """A sequential run that stopped once its gate was decided: say what the accuracies are over."""
    parts = [f"{s.name}: {s.unevaluated} input(s) unevaluated" for s in summaries if s.unevaluated]
    if not parts:
        return None
    return (f"{'; '.join(parts)} (run --sequential stopped once its gate was decided). Accuracies here are over "
            "the evaluated inputs only; `onnxcert gate` counts the unevaluated ones as not certified.")


def _console(console):
    """Off a terminal, rich would wrap at 80 columns: give tables their natural width instead."""
    if console.is_terminal:
        return console
    from rich.console import Console

    return Console(file=console.file, width=1000, color_system=None)


TEXT_COLUMNS = ("report", "model", "method", "class", "certificate", "measure")


@dataclass(frozen=True)
class Block:
    title: str
    head: tuple[str, ...]
    groups: tuple[tuple[tuple[str, ...], ...], ...]


def _block(title: str, head: Sequence[str], groups: Sequence[Sequence[Sequence[str]]]) -> Block:
    return Block(title, tuple(head), tuple(tuple(tuple(r) for r in g) for g in groups))


# ---------------------------------------------------------------- emitters


def emit(blocks: Sequence[Block], fmt: str, notes: Sequence[str] = (), console=None) -> str | None:
    """"rich" prints to ``console`` (stdout) and returns None; "markdown" and "latex" return text."""
    if fmt == "rich":
        _emit_rich(blocks, notes, console)
        return None
    return (_emit_markdown if fmt == "markdown" else _emit_latex)(blocks, notes)


def _emit_rich(blocks: Sequence[Block], notes: Sequence[str], console) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    console = console or _console(Console())
    fancy = console.is_terminal
    for b in blocks:
        console.print(b.title, style="bold" if fancy else None, highlight=False)
        t = Table(box=box.SIMPLE_HEAVY if fancy else box.ASCII2, header_style="bold" if fancy else None)
        for h in b.head:
            t.add_column(h, justify="left" if h in TEXT_COLUMNS else "right")
        for g, rows in enumerate(b.groups):
            if g:
                t.add_section()
            for row in rows:
                t.add_row(*row)
        console.print(t)
    for line in notes:
        console.print(line, style="dim" if fancy else None, highlight=False)


def _emit_markdown(blocks: Sequence[Block], notes: Sequence[str]) -> str:
    out = []
    for b in blocks:
        out.append(f"### {b.title}\n")
        out.append("| " + " | ".join(b.head) + " |")
        out.append("|" + "|".join("---" if h in TEXT_COLUMNS else "---:" for h in b.head) + "|")
        out.extend("| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for g in b.groups for row in g)
        out.append("")
    out.extend(line + "\n" for line in notes)
    return "\n".join(out)


LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                 "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "—": "--",
                 ">=": r"$\geq$"}


def latex_escape(text: str) -> str:
    out, i = [], 0
    while i < len(text):
        if text.startswith(">=", i):
            out.append(LATEX_SPECIAL[">="])
            i += 2
            continue
        out.append(LATEX_SPECIAL.get(text[i], text[i]))
        i += 1
    return "".join(out)


def _emit_latex(blocks: Sequence[Block], notes: Sequence[str]) -> str:
    out = ["% onnxcert summary: needs \\usepackage{booktabs}"]
    for b in blocks:
        cols = "".join("l" if h in TEXT_COLUMNS else "r" for h in b.head)
        out += ["\\begin{table}[t]", "\\centering", f"\\caption{{{latex_escape(b.title)}}}",
                f"\\begin{{tabular}}{{{cols}}}", "\\toprule",
                " & ".join(latex_escape(h) for h in b.head) + " \\\\", "\\midrule"]
        for g, rows in enumerate(b.groups):
            if g:
                out.append("\\midrule")
            out += [" & ".join(latex_escape(c) for c in row) + " \\\\" for row in rows]
        out += ["\\bottomrule", "\\end{tabular}", "\\end{table}", ""]
    out += [f"% {line}" for line in notes]
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- the summary as blocks (for LaTeX)


def summary_blocks(summaries: Sequence[ReportSummary], intervals: bool = False) -> list[Block]:
    head, rows = _overview_rows(summaries)
    blocks = [_block("Reports", head, [rows])]
    head, rows = _label_rows(summaries, intervals)
    blocks.append(_block("Label certificate (Cohen et al. 2019): certified accuracy", head, [rows]))
    for m in _measures(summaries):
        head, groups = _measure_rows(summaries, m, intervals)
        blocks.append(_block(f"Certified confidence: {m} >= c, certified accuracy (Kumar et al. 2020)", head, groups))
    return blocks


def summary_notes(summaries: Sequence[ReportSummary], intervals: bool = False) -> list[str]:
    ci = (f"{_interval_tag(summaries[0])}: two-sided Clopper-Pearson interval for certified accuracy over the "
          "test set (its finite size), not the sampling noise that alpha covers.") if intervals else None
    return [line for line in (_no_labels_note(summaries), _unevaluated_note(summaries), DEFINITIONS, ci) if line]


def render_rich(summaries: Sequence[ReportSummary], console=None, intervals: bool = False) -> None:
    """Print the summary as rich tables (plain ASCII boxes when not a terminal)."""
    emit(summary_blocks(summaries, intervals), "rich", summary_notes(summaries, intervals), console)


def to_markdown(summaries: Sequence[ReportSummary], intervals: bool = False) -> str:
    return emit(summary_blocks(summaries, intervals), "markdown", summary_notes(summaries, intervals))


def to_latex(summaries: Sequence[ReportSummary], intervals: bool = False) -> str:
    """booktabs tables, one per summary table, for a paper."""
    return emit(summary_blocks(summaries, intervals), "latex", summary_notes(summaries, intervals))


def to_csv(summaries: Sequence[ReportSummary]) -> str:
    """One row per curve (label certificate first), radii as columns; full precision."""
    radii = summaries[0].radii
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["report", "model", "sigma", "alpha", "n", "inputs", "labelled", "clean_accuracy", "smoothed_accuracy",
                "abstain_rate", "measure", "method", "threshold", "mean_radius", "inf_count"]
               + [f"acc@{r:g}" for r in radii] + [f"{end}@{r:g}" for end in ("ci_low", "ci_high") for r in radii]
               + ["ci_level"])
    blank = lambda v: "" if v is None else v  # noqa: E731
    for s in summaries:
        for c in (s.label,) + s.curves:
            acc = c.accuracy or (None,) * len(radii)
            ci = c.interval or ((None, None),) * len(radii)
            w.writerow([s.name, blank(s.model), s.sigma, s.alpha, s.n, s.count, s.labelled, blank(s.clean_accuracy),
                        blank(s.smoothed_accuracy), s.abstain_rate, c.measure, c.method, blank(c.threshold),
                        _json_num(c.mean_radius), c.inf_count] + [blank(a) for a in acc] + [blank(lo) for lo, _ in ci]
                       + [blank(hi) for _, hi in ci] + [s.confidence])
    return buf.getvalue()


def _json_num(x: float | None):
    return "inf" if x is not None and math.isinf(x) else x


def to_json(summaries: Sequence[ReportSummary]) -> str:
    def curve(c: Curve) -> dict:
        return {"certified_accuracy": None if c.accuracy is None else list(c.accuracy),
                "interval": None if c.interval is None else [list(i) for i in c.interval],
                "mean_radius": _json_num(c.mean_radius), "inf_count": c.inf_count}

    reports = []
    for s in summaries:
        conf: dict[str, dict] = {}
        for c in s.curves:
            entry = conf.setdefault(c.measure, {}).setdefault(
                c.method, {"thresholds": [], "certified_accuracy": [], "interval": [], "mean_radius": [],
                           "inf_count": []})
            entry["thresholds"].append(c.threshold)
            entry["certified_accuracy"].append(None if c.accuracy is None else list(c.accuracy))
            entry["interval"].append(None if c.interval is None else [list(i) for i in c.interval])
            entry["mean_radius"].append(_json_num(c.mean_radius))
            entry["inf_count"].append(c.inf_count)
        reports.append({
            "name": s.name, "source": s.source, "model": s.model, "sigma": s.sigma, "alpha": s.alpha, "n": s.n,
            "n0": s.n0, "count": s.count, "total": s.total, "complete": s.complete, "unevaluated": s.unevaluated,
            "labelled": s.labelled,
            "clean_accuracy": s.clean_accuracy, "smoothed_accuracy": s.smoothed_accuracy,
            "abstain_rate": s.abstain_rate,
            "label_certificate": curve(s.label), "confidence": conf,
        })
    doc = {"schema": "onnxcert.summary/1", "radii": list(summaries[0].radii),
           "radius_units": RADIUS_UNITS, "interval_level": summaries[0].confidence, "reports": reports}
    return json.dumps(doc, indent=1, allow_nan=False) + "\n"


def render(summaries: Sequence[ReportSummary], fmt: str = "rich", console=None,
           intervals: bool = False) -> str | None:
    """Markdown / LaTeX / CSV / JSON as a string; "rich" prints to ``console`` (stdout) and
    returns None. ``intervals`` adds a row of confidence intervals under every certified-accuracy
    row of the tables (CSV and JSON always carry them)."""
    _check_format(fmt)
    if fmt in ("csv", "json"):
        return (to_csv if fmt == "csv" else to_json)(summaries)
    return emit(summary_blocks(summaries, intervals), fmt, summary_notes(summaries, intervals), console)


def render_diff(diff: SummaryDiff, fmt: str = "rich", console=None) -> str | None:
    """``summary A B --diff`` in any format."""
    _check_format(fmt)
    if fmt in ("csv", "json"):
        return (diff_csv if fmt == "csv" else diff_json)(diff)
    return emit(diff_blocks(diff), fmt, diff_notes(diff), console)


def render_by_class(tables: Sequence[ClassTable], fmt: str = "rich", console=None) -> str | None:
    """``summary --by-class`` in any format."""
    _check_format(fmt)
    if fmt in ("csv", "json"):
        return (class_csv if fmt == "csv" else class_json)(tables)
    return emit(class_blocks(tables), fmt, [DEFINITIONS], console)


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")


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


# ---------------------------------------------------------------- --diff


def _signed(x: float | None, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    return f"{x:+.{digits}f}"


def _certificate(c: Any) -> str:
    return "label (Cohen et al.)" if c.threshold is None else f"{c.measure} >= {c.threshold:g} ({c.method})"


def diff_blocks(d: SummaryDiff) -> list[Block]:
    b, o = d.base, d.other
    head, rows = _overview_rows([b, o])
    deltas = {"clean acc": d.clean_accuracy_delta, "smoothed acc": d.smoothed_accuracy_delta,
              "abstain": d.abstain_rate_delta}
    delta = ["B - A"] + [_signed(deltas[h]) if h in deltas else "" for h in head[1:]]
    blocks = [_block(f"Comparison: A = {b.name}, B = {o.name}", head, [rows, [delta]])]
    radii_head = [f"r={r:g}" for r in b.radii]
    head = ["certificate", "report"] + radii_head + ["mean R"]
    groups = []
    for c in d.curves:
        acc_b = c.base.accuracy or (None,) * len(b.radii)
        acc_o = c.other.accuracy or (None,) * len(b.radii)
        dl = c.delta or (None,) * len(b.radii)
        name = _certificate(c)
        groups.append([[name, "A"] + [_fmt(a) for a in acc_b] + [_fmt(c.base.mean_radius)],
                       ["", "B"] + [_fmt(a) for a in acc_o] + [_fmt(c.other.mean_radius)],
                       ["", "B - A"] + [_signed(x) for x in dl] + [_signed(c.mean_radius_delta)]])
    blocks.append(_block("Certified accuracy, A and B, and the change", head, groups))
    return blocks


def diff_notes(d: SummaryDiff) -> list[str]:
    notes = []
    if d.mismatches:
        notes.append(f"warning: the reports differ in {', '.join(d.mismatches)} (--allow-mismatch)")
    return notes + [DEFINITIONS]


def diff_csv(d: SummaryDiff) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    radii = d.base.radii
    w.writerow(["measure", "method", "threshold"] + [f"{k}@{r:g}" for k in ("a", "b", "delta") for r in radii]
               + ["mean_radius_a", "mean_radius_b", "mean_radius_delta"])
    blank = lambda v: "" if v is None else v  # noqa: E731
    for c in d.curves:
        none = (None,) * len(radii)
        w.writerow([c.measure, c.method, blank(c.threshold)]
                   + [blank(v) for v in (c.base.accuracy or none) + (c.other.accuracy or none) + (c.delta or none)]
                   + [_json_num(c.base.mean_radius), _json_num(c.other.mean_radius), blank(c.mean_radius_delta)])
    return buf.getvalue()


def diff_json(d: SummaryDiff) -> str:
    doc = {"schema": "onnxcert.summary-diff/1", "radii": list(d.base.radii), "radius_units": RADIUS_UNITS,
           "a": {"name": d.base.name, "source": d.base.source}, "b": {"name": d.other.name, "source": d.other.source},
           "mismatches": list(d.mismatches), "clean_accuracy_delta": d.clean_accuracy_delta,
           "smoothed_accuracy_delta": d.smoothed_accuracy_delta,
           "abstain_rate_delta": d.abstain_rate_delta,
           "certificates": [{"measure": c.measure, "method": c.method, "threshold": c.threshold,
                             "a": None if c.base.accuracy is None else list(c.base.accuracy),
                             "b": None if c.other.accuracy is None else list(c.other.accuracy),
                             "delta": None if c.delta is None else list(c.delta),
                             "mean_radius_a": _json_num(c.base.mean_radius),
                             "mean_radius_b": _json_num(c.other.mean_radius),
                             "mean_radius_delta": c.mean_radius_delta} for c in d.curves]}
    return json.dumps(doc, indent=1, allow_nan=False) + "\n"


# ---------------------------------------------------------------- --by-class


def _class_label(r: ClassRow) -> str:
    return f"{r.label}" + (f" ({r.name})" if r.name and r.name != str(r.label) else "")


def class_blocks(tables: Sequence[ClassTable]) -> list[Block]:
    blocks = []
    for t in tables:
        labelled = any(r.smoothed_accuracy is not None for r in t.rows)
        clean = any(r.clean_accuracy is not None for r in t.rows)
        head = ["class", "inputs"] + (["smoothed acc"] if labelled else []) + (["clean acc"] if clean else [])
        head += ["abstain"] + [f"r={r:g}" for r in t.radii] + ["mean R", "inf"]
        rows = []
        for r in t.rows:
            row = [_class_label(r), str(r.count)] + ([_fmt(r.smoothed_accuracy)] if labelled else [])
            row += [_fmt(r.clean_accuracy)] if clean else []
            row += [_fmt(r.abstain_rate)] + [_fmt(a) for a in r.accuracy] + [_fmt(r.mean_radius), str(r.inf_count)]
            rows.append(row)
        what = "certified accuracy" if labelled else "fraction certified (no labels: by predicted class)"
        blocks.append(_block(f"{t.report}: {t.certificate}, {what} by class", head, [rows]))
    return blocks


def class_csv(tables: Sequence[ClassTable]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    radii = tables[0].radii if tables else ()
    w.writerow(["report", "certificate", "class", "name", "inputs", "smoothed_accuracy", "clean_accuracy",
                "abstain_rate", "mean_radius", "inf_count"] + [f"acc@{r:g}" for r in radii])
    blank = lambda v: "" if v is None else v  # noqa: E731
    for t in tables:
        for r in t.rows:
            w.writerow([t.report, t.certificate, r.label, blank(r.name), r.count, blank(r.smoothed_accuracy),
                        blank(r.clean_accuracy), r.abstain_rate, _json_num(r.mean_radius), r.inf_count]
                       + list(r.accuracy))
    return buf.getvalue()


def class_json(tables: Sequence[ClassTable]) -> str:
    doc = {"schema": "onnxcert.by-class/1", "radius_units": RADIUS_UNITS,
           "tables": [{"report": t.report, "certificate": t.certificate, "radii": list(t.radii),
                       "classes": [{"class": r.label, "name": r.name, "inputs": r.count,
                                    "smoothed_accuracy": r.smoothed_accuracy, "clean_accuracy": r.clean_accuracy,
                                    "abstain_rate": r.abstain_rate, "certified_accuracy": list(r.accuracy),
                                    "mean_radius": _json_num(r.mean_radius), "inf_count": r.inf_count}
                                   for r in t.rows]} for t in tables]}
    return json.dumps(doc, indent=1, allow_nan=False) + "\n"
