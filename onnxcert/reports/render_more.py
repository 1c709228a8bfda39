"""Tables for ``summary --by-class``, ``summary A B --diff`` and ``summary -f latex`` (to be folded
into ``reports.render``).

Every table is a Block (title, header, groups of rows of strings), written out by one emitter per
format: rich, markdown or LaTeX (booktabs). CSV and JSON get flat, full-precision records.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from typing import Any, Sequence

from ..summary import (DEFINITIONS, RADIUS_UNITS, ReportSummary, _console, _fmt, _label_rows, _measure_rows,
                       _measures, _no_labels_note, _overview_rows)
from .metrics_more import ClassRow, ClassTable, SummaryDiff

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


def summary_blocks(summaries: Sequence[ReportSummary]) -> list[Block]:
    head, rows = _overview_rows(summaries)
    blocks = [_block("Reports", head, [rows])]
    head, rows = _label_rows(summaries)
    blocks.append(_block("Label certificate (Cohen et al. 2019): certified accuracy", head, [rows]))
    for m in _measures(summaries):
        head, groups = _measure_rows(summaries, m)
        blocks.append(_block(f"Certified confidence: {m} >= c, certified accuracy (Kumar et al. 2020)", head, groups))
    return blocks


def summary_notes(summaries: Sequence[ReportSummary]) -> list[str]:
    return [line for line in (_no_labels_note(summaries), DEFINITIONS) if line]


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
    delta = ["B - A", "", "", "", "", "", _signed(d.clean_accuracy_delta), _signed(d.abstain_rate_delta)]
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


def _json_num(x: float | None):
    return "inf" if x is not None and math.isinf(x) else x


def diff_json(d: SummaryDiff) -> str:
    doc = {"schema": "onnxcert.summary-diff/1", "radii": list(d.base.radii), "radius_units": RADIUS_UNITS,
           "a": {"name": d.base.name, "source": d.base.source}, "b": {"name": d.other.name, "source": d.other.source},
           "mismatches": list(d.mismatches), "clean_accuracy_delta": d.clean_accuracy_delta,
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
