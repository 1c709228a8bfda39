"""One self-contained HTML page from one or more reports (``onnxcert report``, ``run --html``).

The page needs no network: CSS is inline, the figures are inline SVG (``reports.svg``), the input
thumbnails are ``data:`` URIs, and a Content-Security-Policy forbids loading anything else. It
holds, for every report:

- the gate's result, when there is one;
- the summary tables (as ``onnxcert summary`` prints them);
- Figure 5 of Kumar et al. (2020): certified accuracy vs L2 radius, one panel per measure, exact
  step curves through the certified radii (solid: the CDF method, dashed: ``naive``; the label
  certificate of Cohen et al. dotted), and with several reports the label certificate overlaid;
- Figure 3: the prediction score vs the label certificate's radius, one point per input;
- per-class tables;
- Figure 4: the inputs with the smallest and the largest label radii, as thumbnails with their
  prediction, label and certified confidence;
- the settings and provenance, including the command line and the config used.
"""

from __future__ import annotations

import base64
import io
import json
import math
import shlex
from dataclasses import dataclass, replace
from html import escape
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ..errors import ConfigError
from ..files import atomic_write_text
from . import svg
from .metrics import (ClassTable, by_class, certified_steps, class_names, default_method, largest_certified_radius,
                      paper_methods, report_names, summarize_datas)
from .read import RADIUS_UNITS, ReportData, load_report, parse_report
from .render import DEFINITIONS, TEXT_COLUMNS, Block, class_blocks, summary_blocks, summary_notes

THUMBS = 8  # inputs shown at each end of the radius ranking
THUMB_PX = 96  # thumbnails are encoded at most this large; small images are scaled up by CSS
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


@dataclass(frozen=True)
class Source:
    """A report dict with the name it is shown under and the folders its input paths may be
    relative to (the working directory first, then the report's own folder)."""

    report: Mapping[str, Any]
    name: str
    base_dirs: tuple[Path, ...] = (Path("."),)


def render_html(sources: Sequence[Source], *, gate: Any = None, title: str | None = None) -> str:
    """The page as a string. ``gate``: a ``gate.GateResult`` (anything with ``checks``, each
    with ``passed`` and ``line()``, and ``lines()``), shown first."""
    datas = [parse_report(s.report, s.name) for s in sources]
    names = report_names(datas)
    summaries = [replace(s, name=n) for s, n in zip(summarize_datas(datas), names)]
    title = title or "onnxcert report: " + ", ".join(names)
    several = len(datas) > 1

    def per_report(section_id: str, heading: str, body) -> str:
        parts = [f'<section id="{section_id}"><h2>{escape(heading)}</h2>']
        for data, name, source in zip(datas, names, sources):
            if several:
                parts.append(f'<h3 class="report-name">{escape(name)}</h3>')
            parts.append(body(data, source))
        return "\n".join(parts + ["</section>"])

    parts = [f"<h1>{escape(title)}</h1>", _lede(datas)]
    if gate is not None:
        parts.append(_gate_section(gate))
    parts.append(_summary_section(summaries))
    if several:
        parts.append(_overlay_section(datas, names))
    parts.append(per_report("figures", "Figures", lambda d, s: _figures(d)))
    parts.append(_confidence_section(summaries))
    parts.append(per_report("by-class", "Per class", lambda d, s: _class_section(d)))
    parts.append(per_report("inputs", "Inputs with the smallest and the largest label radii (Figure 4)",
                            lambda d, s: _thumbs_section(d, s.base_dirs)))
    parts.append(per_report("settings", "Settings and provenance", lambda d, s: _settings_section(d)))
    parts.append(f'<footer><p>{escape(DEFINITIONS)}</p><p>{escape(summary_notes(summaries, True)[-1])}</p></footer>')
    return _page(title, "\n".join(parts))


def _page(title: str, body: str) -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{escape(title)}</title><style>{STYLE}</style></head>\n<body><main>\n{body}\n</main></body></html>\n")


def _lede(datas: Sequence[ReportData]) -> str:
    d = datas[0]
    created = d.report.get("created", "")
    version = d.report.get("onnxcert_version", "")
    return (f'<p class="lede">Certified with onnxcert {escape(str(version))} on {escape(str(created))}. '
            "Radii are L2 norms in [0, 1] pixel space (the units of sigma): noise is added after resize/crop, "
            "before (x - mean) / std. Each certificate holds with probability at least 1 - alpha over the "
            "sampling noise; the intervals under certified accuracy (95%, Clopper-Pearson) are about the "
            "finite test set.</p>")


# ---------------------------------------------------------------- gate and summary


def _gate_section(gate: Any) -> str:
    passed = all(c.passed for c in gate.checks)
    rows = "".join(f'<li class="{"pass" if c.passed else "fail"}">{escape(c.line())}</li>' for c in gate.checks)
    verdict = gate.lines()[-1]
    return (f'<section id="gate" class="gate {"pass" if passed else "fail"}"><h2>Gate: '
            f'{"passed" if passed else "FAILED"}</h2><ul>{rows}</ul><p>{escape(verdict)}</p></section>')


def _table(head: Sequence[str], groups: Sequence[Sequence[Sequence[str]]], cls: str = "") -> str:
    num = ["" if h in TEXT_COLUMNS else "num" for h in head]
    th = "".join(f'<th class="{n}">{escape(h)}</th>' for h, n in zip(head, num))
    bodies = []
    for rows in groups:
        trs = "".join(f'<tr{_row_class(row)}>' + "".join(f'<td class="{n}">{escape(v)}</td>' for n, v in zip(num, row))
                      + "</tr>" for row in rows)
        bodies.append(f"<tbody>{trs}</tbody>")
    return f'<table class="{cls}"><thead><tr>{th}</tr></thead>{"".join(bodies)}</table>'


def _row_class(row: Sequence[str]) -> str:
    return ' class="ci"' if any(c.endswith("% CI") for c in row[:3]) else ""


def _block(b: Block, cls: str, level: str = "h3") -> str:
    return f"<{level}>{escape(b.title)}</{level}>" + _table(b.head, b.groups, cls)


def _summary_section(summaries: Sequence[Any]) -> str:
    overview, label, *_ = summary_blocks(summaries, intervals=True)
    return "\n".join(['<section id="summary"><h2>Summary</h2>', _table(overview.head, overview.groups, "overview"),
                      _block(label, "label"), "</section>"])


def _confidence_section(summaries: Sequence[Any]) -> str:
    _, _, *measures = summary_blocks(summaries, intervals=True)
    out = ['<section id="confidence"><h2>Certified confidence (Kumar et al. 2020)</h2>']
    out += [_block(replace(b, title=b.title.replace("Certified confidence: ", "").replace(" (Kumar et al. 2020)", "")),
                   f"measure measure-{escape(b.title.split(':')[1].split()[0])}") for b in measures]
    out += [f'<p class="note">{escape(line)}</p>' for line in summary_notes(summaries, intervals=True)[:-1]]
    out.append("</section>")
    return "\n".join(out)


# ---------------------------------------------------------------- figures


def _x_max(datas: Sequence[ReportData]) -> float:
    """Just past the largest finite certified radius, so every curve reaches its last drop."""
    top = largest_certified_radius(datas)
    if top <= 0:
        return max(float(max((max(d.settings["radii"], default=1.0) for d in datas))), 1.0)
    ticks = svg.nice_ticks(0.0, 1.08 * top)
    step = ticks[1] - ticks[0] if len(ticks) > 1 else top
    return ticks[-1] if ticks[-1] >= 1.04 * top else ticks[-1] + step


def _accuracy_axis(data: ReportData) -> str:
    return "certified accuracy" if data.labelled.any() else "fraction certified (no labels)"


def figure5(data: ReportData, measure: str, x_max: float) -> str:
    """Certified accuracy vs radius for one measure: colour = threshold c; the CDF method solid,
    naive dashed; the label certificate black dotted (Kumar et al. 2020, Figure 5)."""
    styles = [(m, "dashed", 1.4) if m == "naive" else (m, "solid", 2.0) for m in paper_methods(data.methods)]
    lines, legend = [], []
    for j, c in enumerate(data.thresholds(measure)):
        color = svg.PALETTE[j % len(svg.PALETTE)]
        for method, dash, width in styles:
            xs, ys = certified_steps(data.radius[measure, method][:, j], data, x_max)
            lines.append(svg.Line(f"{measure} >= {c:g}, {method}", xs, ys, color, dash, width, steps=True))
        legend.append(svg.Line(f"c = {c:g}", (), (), color, "solid", 2.0))
    xs, ys = certified_steps(data.label_radius, data, x_max)
    label = svg.Line("label certificate (Cohen et al.)", xs, ys, "#000", "dotted", 1.8, steps=True)
    lines.append(label)
    legend += [svg.Line(f"{m} ({d})", (), (), "#555", d, w) for m, d, w in styles] + [
        svg.Line("label (Cohen et al.)", (), (), "#000", "dotted", 1.8)]
    frame = svg.Frame((0.0, x_max), (0.0, 1.0), RADIUS_UNITS, _accuracy_axis(data), f"{measure} >= c")
    others = [m for m in data.methods if m not in {s[0] for s in styles}]
    notes = [f"not drawn: {', '.join(others)}", "(see the tables)"] if others else []
    return svg.line_chart(frame, lines, legend, notes)


def figure3(data: ReportData) -> str:
    """Prediction score (mean over the n samples) vs the label certificate's radius, one point per
    input; abstentions at R = 0 as crosses, unbounded radii as triangles at the right edge."""
    measure = "score" if "score" in data.means else data.measures[0]
    y, x = data.means[measure], data.label_radius
    finite = x[np.isfinite(x)]
    top = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
    ticks = svg.nice_ticks(0.0, 1.05 * top)
    x_max = ticks[-1] if ticks[-1] >= 1.02 * top else ticks[-1] + (ticks[1] - ticks[0])
    records = data.report["records"]
    groups = []
    for name, rows, color in (("correct", data.labelled & data.correct, "#0072B2"),
                              ("wrong", data.labelled & ~data.correct, "#D55E00"),
                              ("no label", ~data.labelled, "#888")):
        for suffix, sel, marker, xv in (("", rows & np.isfinite(x), "circle", None),
                                        (", R unbounded", rows & np.isposinf(x), "triangle", x_max)):
            idx = np.flatnonzero(sel)
            if idx.size:
                groups.append(svg.Points(f"{name}{suffix} ({idx.size})", [xv if xv is not None else x[i] for i in idx],
                                         y[idx], color, marker, [_tip(records[i], x[i], y[i], measure) for i in idx]))
    idx = np.flatnonzero(np.isnan(x))
    if idx.size:
        groups.append(svg.Points(f"abstain ({idx.size})", [0.0] * idx.size, y[idx], "#000", "cross",
                                 [_tip(records[i], x[i], y[i], measure) for i in idx]))
    lo = 0.0 if measure == "score" else -1.0
    frame = svg.Frame((0.0, x_max), (lo, 1.0), f"label certificate radius, {RADIUS_UNITS}",
                      f"prediction {measure} (mean over n samples)", "prediction score vs certified radius")
    return svg.scatter_chart(frame, groups)


def _tip(rec: Mapping, r: float, score: float, measure: str) -> str:
    where = rec.get("input") or f"input {rec.get('index')}"
    radius = "abstain" if math.isnan(r) else f"R={r:.3f}"
    return f"{where}: {radius}, {measure} {score:.3f}, prediction {rec.get('prediction')}, label {rec.get('label')}"


def _overlay_section(datas: Sequence[ReportData], names: Sequence[str]) -> str:
    x_max = _x_max(datas)
    lines = []
    for i, (d, n) in enumerate(zip(datas, names)):
        xs, ys = certified_steps(d.label_radius, d, x_max)
        lines.append(svg.Line(n, xs, ys, svg.PALETTE[i % len(svg.PALETTE)], "solid", 2.0, steps=True))
    frame = svg.Frame((0.0, x_max), (0.0, 1.0), RADIUS_UNITS, "certified accuracy",
                      "label certificate, every report", width=760, legend_width=330)
    return ('<section id="overlay"><h2>Reports compared</h2>'
            f'<figure>{svg.line_chart(frame, lines)}</figure></section>')


# ---------------------------------------------------------------- one report


def _figures(data: ReportData) -> str:
    x_max = _x_max([data])
    out = ["<h3>Certified accuracy vs radius (Kumar et al. 2020, Figure 5)</h3><div class=\"figures\">"]
    out += [f'<figure class="fig5">{figure5(data, m, x_max)}</figure>' for m in data.measures]
    out.append("</div><p class=\"note\">Exact step curves: each drops at the certified radius of an input. "
               "Solid: the CDF method (Theorem 2); dashed: naive (Theorem 1); dotted: the label certificate.</p>")
    out.append("<h3>Prediction score vs certified radius (Kumar et al. 2020, Figure 3)</h3>")
    out.append(f'<figure class="fig3">{figure3(data)}</figure>')
    return "\n".join(out)


def _class_section(data: ReportData) -> str:
    """The label certificate's per-class table, and each measure's at its middle threshold with
    the default method (``summary --by-class`` prints every threshold)."""
    radii = tuple(float(r) for r in data.settings["radii"])
    method = default_method(data.methods)
    tables = [ClassTable("", "label certificate (Cohen et al.)", radii, by_class(data, data.label_radius, radii))]
    for m in data.measures:
        j = len(data.thresholds(m)) // 2
        rows = by_class(data, data.radius[m, method][:, j], radii)
        tables.append(ClassTable("", f"{m} >= {data.thresholds(m)[j]:g} ({method})", radii, rows))
    return "\n".join(_block(replace(b, title=b.title.lstrip(": ")), "by-class", "h4") for b in class_blocks(tables))


# ---------------------------------------------------------------- thumbnails (Figure 4)


def _thumbs_section(data: ReportData, base_dirs: Sequence[Path]) -> str:
    k = min(THUMBS, data.count // 2) or data.count
    key = np.where(np.isnan(data.label_radius), -1.0, data.label_radius)
    order = np.argsort(key, kind="stable")
    out = ['<p class="note">A large radius secures the label, not the confidence: compare the certified '
           "score under each image.</p>"]
    for what, idx in (("smallest", order[:k]), ("largest", order[::-1][:k])):
        cards = "".join(_card(data, int(i), base_dirs) for i in idx)
        out.append(f'<h4>{what} radii</h4><div class="thumbs {what}">{cards}</div>')
    return "\n".join(out)


def _class_name(data: ReportData, k: Any) -> str:
    names = class_names(data)
    if isinstance(k, int) and names and 0 <= k < len(names) and names[k] != str(k):
        return f"{k} ({names[k]})"
    return "—" if k is None else str(k)


def _card(data: ReportData, i: int, base_dirs: Sequence[Path]) -> str:
    rec = data.report["records"][i]
    r = data.label_radius[i]
    radius = "abstain" if math.isnan(r) else ("R = inf" if math.isinf(r) else f"R = {r:.3f}")
    uri = _thumbnail(rec.get("input"), base_dirs)
    where = escape(str(rec.get("input") or f"input {rec.get('index')}"))
    img = (f'<img src="{uri}" alt="{where}" title="{where}">' if uri
           else f'<div class="missing" title="{where}">no image</div>')
    mark = "" if rec.get("correct") is None else (" ✓" if rec.get("correct") else " ✗")
    lines = [radius, f"pred {_class_name(data, rec.get('prediction'))}{mark}", f"label {_class_name(data, rec.get('label'))}"]
    lines += _certified_confidence(data, rec)
    text = "".join(f"<span>{escape(t)}</span>" for t in lines)
    ok = {True: "correct", False: "wrong"}.get(rec.get("correct"), "unlabelled")
    return f'<div class="card {ok}">{img}{text}</div>'


def _certified_confidence(data: ReportData, rec: Mapping) -> list[str]:
    """The certified lower bound on the expected score at the smallest radius of the report."""
    measure = "score" if "score" in data.measures else data.measures[0]
    method = default_method(data.methods)
    radii = [float(r) for r in data.settings["radii"]]
    conf = rec.get("confidence", {}).get(measure, {})
    try:
        j = int(np.argmin(radii))
        low = float(conf[method]["lower_bounds"][j])
    except (KeyError, IndexError, TypeError, ValueError):
        return [f"{measure} mean {float(conf.get('mean', math.nan)):.3f}"]
    return [f"{measure} mean {float(conf['mean']):.3f}", f"certified {measure} \u2265 {low:.3f}", f"(r = {radii[j]:g}, {method})"]


def _thumbnail(path: Any, base_dirs: Sequence[Path]) -> str | None:
    """A PNG data URI of the input image, at most THUMB_PX on a side; None when it cannot be read."""
    if not isinstance(path, str):
        return None
    candidates = [Path(path)] if Path(path).is_absolute() else [b / path for b in base_dirs]
    for p in candidates:
        if not p.is_file():
            continue
        try:
            from PIL import Image

            with Image.open(p) as img:
                img.thumbnail((THUMB_PX, THUMB_PX))
                buf = io.BytesIO()
                img.convert("RGBA" if img.mode in ("RGBA", "LA", "P") else "RGB").save(buf, "PNG")
        except Exception:  # a thumbnail is decoration: an unreadable file shows as "no image"
            return None
        return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
    return None


# ---------------------------------------------------------------- settings and provenance


def _flatten(obj: Any, prefix: str = "") -> Iterable[tuple[str, str]]:
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            yield from _flatten(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(obj, list) and obj and all(isinstance(v, Mapping) for v in obj):
        for i, v in enumerate(obj):
            yield from _flatten(v, f"{prefix}[{i}]")
    else:
        yield prefix, obj if isinstance(obj, str) else json.dumps(obj)


def _kv_table(obj: Mapping, cls: str) -> str:
    rows = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in _flatten(obj))
    return f'<table class="kv {cls}">{rows}</table>'


def _settings_section(data: ReportData) -> str:
    rep = data.report
    out = []
    command = rep.get("command")
    if isinstance(command, list) and all(isinstance(a, str) for a in command):
        out.append(f'<h4>Command line</h4><pre class="command">{escape(shlex.join(command))}</pre>')
    config = rep.get("config")
    if isinstance(config, Mapping):
        import yaml

        text = yaml.safe_dump(dict(config), sort_keys=False, default_flow_style=None, width=100)
        out.append(f'<h4>Config used</h4><pre class="config">{escape(text)}</pre>')
    model = rep.get("model")
    if isinstance(model, Mapping):
        out.append("<h4>Model</h4>" + _kv_table(model, "model"))
    out.append("<h4>Settings</h4>" + _kv_table(data.settings, "settings"))
    prov = rep.get("provenance")
    if isinstance(prov, Mapping):
        out.append("<h4>Provenance</h4>" + _kv_table(prov, "provenance"))
    skipped = rep.get("skipped")
    if skipped:
        out.append(f"<h4>Skipped inputs ({len(skipped)})</h4>" + _kv_table({"skipped": skipped}, "skipped"))
    return "\n".join(out)


STYLE = """
:root{color-scheme:light}
body{margin:0;background:#f6f7f9;color:#1b1f24;font:14px/1.45 system-ui,-apple-system,'Segoe UI',Helvetica,Arial,sans-serif}
main{max-width:1240px;margin:0 auto;padding:18px 28px 40px}
h1{font-size:22px;margin:8px 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #d0d4da;padding-bottom:4px}
h3{font-size:15px;margin:20px 0 6px}h4{font-size:13px;margin:14px 0 4px;color:#333}
.lede,.note{color:#4a5360;max-width:980px}.note{font-size:12.5px}
table{border-collapse:collapse;background:#fff;margin:4px 0 10px;font-size:12.5px}
th,td{border:1px solid #dde1e6;padding:3px 8px;text-align:left;vertical-align:top}
thead th{background:#eef1f4}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
tbody+tbody{border-top:2px solid #9aa3ad}tr.ci td{color:#66707c;font-size:11px;padding-top:0;border-top:none}
table.kv th{background:#f3f5f7;font-weight:500;white-space:nowrap}table.kv td{font-family:ui-monospace,monospace;word-break:break-all}
pre{background:#fff;border:1px solid #dde1e6;padding:8px 10px;overflow-x:auto;font-size:12px;white-space:pre-wrap}
.figures{display:flex;flex-wrap:wrap;gap:12px}figure{margin:0;background:#fff;border:1px solid #dde1e6;display:inline-block}
.gate{border-radius:6px;padding:4px 16px;margin:14px 0}.gate.pass{background:#e7f6ec;border:1px solid #7cc793}
.gate.fail{background:#fde8e6;border:1px solid #e48a80}.gate ul{padding-left:18px;font-family:ui-monospace,monospace;font-size:12.5px}
li.fail{color:#a61b0f;font-weight:600}
.thumbs{display:flex;flex-wrap:wrap;gap:8px}
.card{background:#fff;border:1px solid #dde1e6;border-top:3px solid #888;padding:6px;width:128px;font-size:11.5px;display:flex;flex-direction:column;align-items:center}
.card.correct{border-top-color:#0072B2}.card.wrong{border-top-color:#D55E00}
.card img,.card .missing{width:72px;height:72px;object-fit:contain;image-rendering:pixelated;margin-bottom:4px;background:#eee}
.card .missing{display:flex;align-items:center;justify-content:center;color:#777}
.card span{display:block;text-align:center}
ul.intervals{font-size:12.5px;margin-top:0}
footer{margin-top:30px;color:#4a5360;font-size:12px}
"""


# ---------------------------------------------------------------- files

SUFFIXES = (".html", ".htm")


def check_output(path: str | Path) -> Path:
    """The page's path, refused (ConfigError) unless it ends in .html or .htm."""
    path = Path(path)
    if path.suffix.lower() not in SUFFIXES:
        raise ConfigError(f"the HTML page must end in .html or .htm, got {str(path)!r}")
    if path.is_dir():
        raise ConfigError(f"{str(path)!r} is a directory")
    return path


def write_html(path: str | Path, sources: Sequence[Source], *, gate: Any = None, title: str | None = None) -> Path:
    """Render and write the page atomically."""
    return atomic_write_text(check_output(path), render_html(sources, gate=gate, title=title))


def report_page(paths: Sequence[str | Path], output: str | Path, *, gate: Any = None,
                title: str | None = None) -> Path:
    """``onnxcert report``: load the reports and write the page (with ``gate``, a GateResult, first).
    Input paths in a report are looked up from the working directory, then from the report's folder."""
    check_output(output)
    if not paths:
        raise ConfigError("give at least one REPORT.json")
    datas = [load_report(p) for p in paths]
    sources = [Source(d.report, d.source, (Path("."), Path(d.source).parent)) for d in datas]
    return write_html(output, sources, gate=gate, title=title)
