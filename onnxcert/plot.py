"""Figures of one or more reports (``onnxcert plot``; needs the ``[plot]`` extra, matplotlib).

- Certified accuracy vs L2 radius (Kumar et al. 2020, Figure 5), as exact step curves through the
  certified radii (``reports.metrics.certified_steps``), not a resampled grid. With one report:
  one panel per measure, colour = threshold c, line style = method (as the paper: the CDF method
  solid, ``naive`` dashed; by default those two, ``cdf-bj`` and ``naive``), and the label
  certificate's certified accuracy (Cohen et al. 2019) black dotted. With several reports (for
  example one per sigma): one panel per measure and threshold, colour = report, line style =
  method, each report's label certificate dotted in its colour.
- With one report, the prediction score (the mean of the measure over the n noisy samples) vs the
  label certificate's radius, one point per input (Kumar et al. 2020, Figure 3): a large label
  radius does not mean a confident prediction.

``size="column"`` draws for one column of a two-column paper (3.4 inches wide, panels stacked,
small type); PNG, SVG and PDF by the file's suffix. The figure is drawn on a bare
``matplotlib.figure.Figure`` (Agg canvas): no pyplot state, no display. Without labels the
curves show the fraction certified instead of certified accuracy.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .errors import ConfigError, DependencyError
from .files import atomic_write, write_error
from .reports.metrics import certified_steps, largest_certified_radius, paper_methods, report_names
from .reports.read import LABEL, RADIUS_UNITS, ReportData, load_report

INSTALL_HINT = "pip install 'onnxcert[plot]'"
FORMATS = (".png", ".svg", ".pdf")
SIZES = ("full", "column")
METHOD_STYLE = {  # the paper: CDF solid, naive dashed; cdf-bj (the default) stands out
    "naive": {"linestyle": "--", "linewidth": 1.3},
    "cdf-dkw": {"linestyle": "-", "linewidth": 1.3},
    "cdf-bj": {"linestyle": "-", "linewidth": 2.4, "marker": "o", "markersize": 3.0},
}
OTHER_STYLE = {"linestyle": "-.", "linewidth": 1.3}
LABEL_STYLE = {"color": "black", "linestyle": ":", "linewidth": 1.8}
MEASURE_TITLES = {"score": "score: softmax probability of the predicted class",
                  "margin": "margin: top-class probability minus the runner-up's"}
MARKS = 10  # markers per cdf-bj curve
# Okabe-Ito: distinguishable in colour-blind vision and in grey print
COLORS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")


@dataclass(frozen=True)
class Layout:
    """Figure size and type for a size preset."""

    panel: tuple[float, float]  # inches per panel
    columns: int  # panels per row
    font: float
    legend_font: float
    line_scale: float = 1.0

    @property
    def compact(self) -> bool:
        return self.columns == 1


LAYOUTS = {"full": Layout((5.4, 4.6), 4, 10, 8), "column": Layout((3.4, 2.5), 1, 7, 5.5, 0.6)}


def _matplotlib():
    """The Figure class and the Agg canvas, or DependencyError with the install hint."""
    try:
        figure = importlib.import_module("matplotlib.figure")
        agg = importlib.import_module("matplotlib.backends.backend_agg")
    except ImportError:
        raise DependencyError(f"plotting needs matplotlib: {INSTALL_HINT}") from None
    return figure.Figure, agg.FigureCanvasAgg


@dataclass(frozen=True)
class Selection:
    """What to draw: measures, methods, and each measure's thresholds (indices into the report's)."""

    measures: tuple[str, ...]
    methods: tuple[str, ...]
    thresholds: dict[str, tuple[float, ...]]


def select(datas: Sequence[ReportData], measures: Sequence[str] | None = None,
           methods: Sequence[str] | None = None, thresholds: Sequence[float] | None = None) -> Selection:
    """Check the filters against every report; ConfigError naming what a report lacks."""
    first = datas[0]
    ms = tuple(measures) if measures else first.measures
    meths = tuple(methods) if methods else paper_methods(first.methods)
    for d in datas:
        for m in ms:
            if m not in d.measures:
                raise ConfigError(f"{d.source}: measure {m!r} is not in the report (it has: {', '.join(d.measures)})")
        for meth in meths:
            if meth not in d.methods:
                raise ConfigError(f"{d.source}: method {meth!r} is not in the report (it has: {', '.join(d.methods)})")
    chosen = {}
    for m in ms:
        have = [c for c in first.thresholds(m) if all(_has(d, m, c) for d in datas)]
        if thresholds:
            have = [c for c in have if any(math.isclose(c, t, abs_tol=1e-9) for t in thresholds)]
        if have:
            chosen[m] = tuple(have)
        elif measures or not thresholds:  # a measure asked for by name must be drawn
            wanted = ", ".join(f"{t:g}" for t in thresholds) if thresholds else "any"
            raise ConfigError(f"measure {m!r} has none of the thresholds {wanted} in every report "
                              f"({', '.join(f'{c:g}' for c in first.thresholds(m))} in {first.source}); "
                              "choose others with --thresholds or drop it with --measures")
    if not chosen:
        raise ConfigError(f"no measure has the thresholds {', '.join(f'{t:g}' for t in thresholds)} in every "
                          f"report; the first report has "
                          + "; ".join(f"{m}: {', '.join(f'{c:g}' for c in first.thresholds(m))}" for m in ms))
    ms = tuple(chosen)
    return Selection(ms, meths, chosen)


def _has(data: ReportData, measure: str, c: float) -> bool:
    return any(math.isclose(c, t, abs_tol=1e-9) for t in data.thresholds(measure))


def _column(data: ReportData, measure: str, method: str, c: float) -> np.ndarray:
    j = next(j for j, t in enumerate(data.thresholds(measure)) if math.isclose(c, t, abs_tol=1e-9))
    return data.radius[measure, method][:, j]


def plot_report(data: ReportData, *, radii_max: float | None = None, **options: Any) -> Any:
    """The figure for one report (see ``plot_reports``)."""
    return plot_reports([data], radii_max=radii_max, **options)


def plot_reports(datas: Sequence[ReportData], *, names: Sequence[str] | None = None,
                 measures: Sequence[str] | None = None, methods: Sequence[str] | None = None,
                 thresholds: Sequence[float] | None = None, radii_max: float | None = None,
                 size: str = "full") -> Any:
    """The figure: certified-accuracy panels (then, for one report, the Figure 3 scatter).
    Returns the matplotlib Figure, axes in that order."""
    if size not in LAYOUTS:
        raise ConfigError(f"--size must be one of {', '.join(SIZES)}, got {size!r}")
    Figure, Canvas = _matplotlib()
    sel = select(datas, measures, methods, thresholds)
    names = list(names) if names else report_names(datas)
    single = len(datas) == 1
    panels = list(sel.measures) if single else [(m, c) for m in sel.measures for c in sel.thresholds[m]]
    count = len(panels) + (1 if single else 0)
    lay = LAYOUTS[size]
    cols = min(count, lay.columns)
    rows = math.ceil(count / cols)
    fig = Figure(figsize=(lay.panel[0] * cols, lay.panel[1] * rows + (0.6 if size == "full" else 0.5)),
                 layout="constrained")
    Canvas(fig)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    x_max = radii_max or _x_max(datas)
    for ax in axes[count:]:
        ax.set_visible(False)
    for ax, panel in zip(axes, panels):
        if single:
            _threshold_panel(ax, datas[0], panel, sel, x_max, lay)
        else:
            _report_panel(ax, datas, names, panel, sel, x_max, lay)
    if single:
        _score_panel(axes[len(panels)], datas[0], lay)
    _method_legend(fig, sel.methods, lay, with_label=single)
    fig.suptitle(_title(datas, names, "\n" if lay.compact else " "), fontsize=lay.font + 1)
    return fig


def _title(datas: Sequence[ReportData], names: Sequence[str], sep: str) -> str:
    if len(datas) > 1:
        return "\n".join(names) if sep == "\n" else "certified accuracy: " + ", ".join(names)
    d = datas[0]
    s = d.settings
    who = Path(d.model_path).name if d.model_path else Path(d.source).name
    return (f"{who}:{sep}sigma = {float(s['sigma']):g}, n = {int(s['n'])}, alpha = {float(s['alpha']):g}, "
            f"{d.count} inputs")


def save_figure(fig: Any, path: str | Path) -> Path:
    """Write PNG / SVG / PDF by suffix, atomically (temporary file beside it, then rename)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ConfigError(f"-o must end in {', '.join(FORMATS)}, got {str(path)!r}")
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, format=suffix[1:], dpi=200), suffix=suffix)
    except OSError as exc:
        raise write_error(exc, path, "the figure") from None


def plot(report_paths: str | Path | Sequence[str | Path], output: str | Path, *,
         radii_max: float | None = None, **options: Any) -> Path:
    """``onnxcert plot``: load, draw, save."""
    if radii_max is not None and not (math.isfinite(radii_max) and radii_max > 0):
        raise ConfigError(f"--max-radius must be a positive number, got {radii_max!r}")
    if Path(output).suffix.lower() not in FORMATS:
        raise ConfigError(f"-o must end in {', '.join(FORMATS)}, got {str(output)!r}")
    paths = [report_paths] if isinstance(report_paths, (str, Path)) else list(report_paths)
    if not paths:
        raise ConfigError("give at least one REPORT.json")
    _matplotlib()
    datas = [load_report(p) for p in paths]
    return save_figure(plot_reports(datas, radii_max=radii_max, **options), output)


# ---------------------------------------------------------------- panels


def _x_max(datas: Sequence[ReportData]) -> float:
    """Just past the largest finite certified radius, so every curve reaches its last drop."""
    top = largest_certified_radius(datas)
    if top > 0:
        return 1.08 * top
    return max(float(max((max(d.settings["radii"], default=1.0) for d in datas))), 1.0)


def _steps(ax, radius: np.ndarray, data: ReportData, x_max: float, lay: Layout, **style) -> None:
    xs, ys = certified_steps(radius, data, x_max)
    style = {**style, "linewidth": style.get("linewidth", 1.5) * lay.line_scale}
    if "marker" in style:
        style.update(markevery=max(1, len(xs) // MARKS), markersize=style.get("markersize", 3) * lay.line_scale)
    ax.plot(xs, ys, drawstyle="steps-pre", **style)


def _axes_style(ax, data: ReportData, title: str, x_max: float, lay: Layout) -> None:
    ax.set_xlabel(RADIUS_UNITS, fontsize=lay.font)
    ax.set_ylabel("certified accuracy" if data.labelled.any() else "fraction certified (no labels)",
                  fontsize=lay.font)
    ax.set_title(title, fontsize=lay.font)
    ax.tick_params(labelsize=lay.font - 1)
    ax.set_xlim(0, x_max)
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)


def _threshold_panel(ax, data: ReportData, measure: str, sel: Selection, x_max: float, lay: Layout) -> None:
    from matplotlib.lines import Line2D

    thresholds = sel.thresholds[measure]
    for method in sel.methods:
        style = METHOD_STYLE.get(method, OTHER_STYLE)
        for j, c in enumerate(thresholds):
            _steps(ax, _column(data, measure, method, c), data, x_max, lay, color=COLORS[j % len(COLORS)],
                   label=f"{method}, c = {c:g}", **style)
    _steps(ax, data.label_radius, data, x_max, lay, label=f"{LABEL} (Cohen et al.)", **LABEL_STYLE)
    _axes_style(ax, data, f"{measure} >= c" if lay.compact else MEASURE_TITLES.get(measure, measure), x_max, lay)
    by_c = [Line2D([], [], color=COLORS[j % len(COLORS)], linewidth=2 * lay.line_scale, label=f"{measure} >= {c:g}")
            for j, c in enumerate(thresholds)]
    ax.legend(handles=by_c, loc="upper right", fontsize=lay.legend_font, title="threshold c",
              title_fontsize=lay.legend_font)


def _report_panel(ax, datas: Sequence[ReportData], names: Sequence[str], panel: tuple[str, float],
                  sel: Selection, x_max: float, lay: Layout) -> None:
    from matplotlib.lines import Line2D

    measure, c = panel
    for i, data in enumerate(datas):
        color = COLORS[i % len(COLORS)]
        for method in sel.methods:
            _steps(ax, _column(data, measure, method, c), data, x_max, lay, color=color,
                   label=f"{names[i]}: {method}", **METHOD_STYLE.get(method, OTHER_STYLE))
        _steps(ax, data.label_radius, data, x_max, lay, label=f"{names[i]}: {LABEL} (Cohen et al.)",
               **{**LABEL_STYLE, "color": color, "linewidth": 1.2})
    _axes_style(ax, datas[0], f"{measure} >= {c:g}", x_max, lay)
    handles = [Line2D([], [], color=COLORS[i % len(COLORS)], linewidth=2 * lay.line_scale, label=n)
               for i, n in enumerate(names)]
    ax.legend(handles=handles, loc="upper right", fontsize=lay.legend_font, title="report",
              title_fontsize=lay.legend_font)


def _method_legend(fig, methods: Sequence[str], lay: Layout, with_label: bool) -> None:
    from matplotlib.lines import Line2D

    def scaled(style: dict) -> dict:
        return {**style, "linewidth": style.get("linewidth", 1.5) * lay.line_scale,
                **({"markersize": style["markersize"] * lay.line_scale} if "markersize" in style else {})}

    handles = [Line2D([], [], color="0.3", label=m, **scaled(METHOD_STYLE.get(m, OTHER_STYLE))) for m in methods]
    handles.append(Line2D([], [], label="label certificate (Cohen et al.)",
                          **scaled({**LABEL_STYLE, "color": "0.3"} if not with_label else LABEL_STYLE)))
    ncols = 2 if lay.compact else len(handles)
    fig.legend(handles=handles, loc="outside lower center", ncols=ncols, fontsize=lay.legend_font + 1,
               title="method (line style)", title_fontsize=lay.legend_font + 1, frameon=False)


def _score_panel(ax, data: ReportData, lay: Layout) -> None:
    """Figure 3: prediction score vs the label certificate's radius."""
    measure = "score" if "score" in data.means else next(iter(data.means))
    y = data.means[measure]
    x = data.label_radius
    finite_x = x[np.isfinite(x)]
    top = 1.05 * float(finite_x.max()) if finite_x.size and finite_x.max() > 0 else 1.0
    size = 6 if lay.compact else 14
    groups = [("correct", data.labelled & data.correct, COLORS[0]),
              ("wrong", data.labelled & ~data.correct, COLORS[1]),
              ("no label", ~data.labelled, "0.5")]
    for name, rows, color in groups:
        finite = rows & np.isfinite(x)
        if finite.any():
            ax.scatter(x[finite], y[finite], s=size, alpha=0.7, color=color, label=f"{name} ({finite.sum()})")
        inf = rows & np.isposinf(x)
        if inf.any():
            ax.scatter(np.full(inf.sum(), top), y[inf], marker=">", s=size * 1.6, color=color,
                       label=f"{name}, unbounded radius ({inf.sum()})")
    abstain = np.isnan(x)
    if abstain.any():
        ax.scatter(np.zeros(abstain.sum()), y[abstain], marker="x", s=size * 1.6, color="black", linewidths=1,
                   label=f"abstain, no label radius ({abstain.sum()})", zorder=3)
    ax.set_xlabel("label certificate radius (Cohen et al.)" + ("" if lay.compact else f", {RADIUS_UNITS}"),
                  fontsize=lay.font)
    ax.set_ylabel(f"prediction {measure}" + ("" if lay.compact else " (mean over the n noisy samples)"),
                  fontsize=lay.font)
    ax.set_title("prediction score vs certified radius", fontsize=lay.font)
    ax.tick_params(labelsize=lay.font - 1)
    ax.set_xlim(-0.02 * top, top * 1.03)
    lo, hi = (0.0, 1.0) if measure == "score" else (-1.0, 1.0)
    ax.set_ylim(lo - 0.02 * (hi - lo), hi + 0.02 * (hi - lo))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=lay.legend_font)
