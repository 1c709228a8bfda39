"""Figures of a report (``onnxcert plot``; needs the ``[plot]`` extra, matplotlib).

- Certified accuracy vs L2 radius, one panel per measure and one line per threshold c and method
  (Kumar et al. 2020, Figure 5): colour = threshold; the CDF methods solid, ``naive`` dashed,
  ``cdf-bj`` thick with markers. The label certificate's certified accuracy (Cohen et al. 2019)
  is the black dotted reference line.
- The prediction score (the mean of the measure over the n noisy samples) vs the label
  certificate's radius, one point per input (Kumar et al. 2020, Figure 3): a large label radius
  does not mean a confident prediction.

The figure is drawn on a bare ``matplotlib.figure.Figure`` (Agg canvas): no pyplot state, no
display. Without labels the curves show the fraction certified instead of certified accuracy.
"""

from __future__ import annotations

import importlib
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .errors import ConfigError, DependencyError
from .files import atomic_write, write_error
from .reports.metrics import certified_curve, population
from .reports.read import LABEL, RADIUS_UNITS, ReportData, load_report

INSTALL_HINT = "pip install 'onnxcert[plot]'"
FORMATS = (".png", ".svg", ".pdf")
METHOD_STYLE = {  # the paper: CDF solid, naive dashed; cdf-bj (the default) stands out
    "naive": {"linestyle": "--", "linewidth": 1.3},
    "cdf-dkw": {"linestyle": "-", "linewidth": 1.3},
    "cdf-bj": {"linestyle": "-", "linewidth": 2.6, "marker": "o", "markersize": 3.5},
}
LABEL_STYLE = {"color": "black", "linestyle": ":", "linewidth": 1.8}
MEASURE_TITLES = {"score": "score: softmax probability of the predicted class",
                  "margin": "margin: top-class probability minus the runner-up's"}
GRID_POINTS = 301


def _matplotlib():
    """The Figure class and the Agg canvas, or DependencyError with the install hint."""
    try:
        figure = importlib.import_module("matplotlib.figure")
        agg = importlib.import_module("matplotlib.backends.backend_agg")
    except ImportError:
        raise DependencyError(f"plotting needs matplotlib: {INSTALL_HINT}") from None
    return figure.Figure, agg.FigureCanvasAgg


def plot_report(data: ReportData, *, radii_max: float | None = None) -> Any:
    """The figure for one report: a certified-accuracy panel per measure, then the Figure 3
    scatter. Returns the matplotlib Figure (axes in that order)."""
    Figure, Canvas = _matplotlib()
    measures = list(data.measures)
    fig = Figure(figsize=(5.4 * (len(measures) + 1), 4.8), layout="constrained")
    Canvas(fig)
    axes = fig.subplots(1, len(measures) + 1, squeeze=False)[0]
    grid = np.linspace(0.0, radii_max or _x_max(data), GRID_POINTS)
    for ax, measure in zip(axes, measures):
        _accuracy_panel(ax, data, measure, grid)
    _score_panel(axes[-1], data)
    _method_legend(fig, data.methods)
    s = data.settings
    who = Path(data.model_path).name if data.model_path else Path(data.source).name
    fig.suptitle(f"{who}: sigma = {float(s['sigma']):g}, n = {int(s['n'])}, alpha = {float(s['alpha']):g}, "
                 f"{data.count} inputs", fontsize=12)
    return fig


def save_figure(fig: Any, path: str | Path) -> Path:
    """Write PNG / SVG / PDF by suffix, atomically (temporary file beside it, then rename)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ConfigError(f"-o must end in {', '.join(FORMATS)}, got {str(path)!r}")
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, format=suffix[1:], dpi=150), suffix=suffix)
    except OSError as exc:
        raise write_error(exc, path, "the figure") from None


def plot(report_path: str | Path, output: str | Path, *, radii_max: float | None = None) -> Path:
    """``onnxcert plot``: load, draw, save."""
    if radii_max is not None and not (math.isfinite(radii_max) and radii_max > 0):
        raise ConfigError(f"--max-radius must be a positive number, got {radii_max!r}")
    if Path(output).suffix.lower() not in FORMATS:
        raise ConfigError(f"-o must end in {', '.join(FORMATS)}, got {str(output)!r}")
    _matplotlib()
    return save_figure(plot_report(load_report(report_path), radii_max=radii_max), output)


# ---------------------------------------------------------------- panels


def _x_max(data: ReportData) -> float:
    """Just past the largest finite certified radius, so every curve reaches its last drop."""
    rows, ok = population(data)
    cols = [data.label_radius] + [r for r in data.radius.values() for r in r.T]
    finite = [c[rows & ok & np.isfinite(c)] for c in cols]
    top = max((float(f.max()) for f in finite if f.size), default=0.0)
    return 1.08 * top if top > 0 else max(float(max(data.settings["radii"], default=1.0)), 1.0)


def _accuracy_panel(ax, data: ReportData, measure: str, grid: np.ndarray) -> None:
    from matplotlib.lines import Line2D

    thresholds = data.thresholds(measure)
    colors = _colors(len(thresholds))
    for method in data.methods:
        style = dict(METHOD_STYLE.get(method, {"linestyle": "-.", "linewidth": 1.3}))
        if "marker" in style:
            style["markevery"] = max(1, GRID_POINTS // 12)
        for j, c in enumerate(thresholds):
            ax.plot(grid, certified_curve(data.radius[measure, method][:, j], data, grid), color=colors[j],
                    label=f"{method}, c = {c:g}", **style)
    ax.plot(grid, certified_curve(data.label_radius, data, grid), label=f"{LABEL} (Cohen et al.)", **LABEL_STYLE)
    ax.set_xlabel(f"{RADIUS_UNITS}")
    ax.set_ylabel("certified accuracy" if data.labelled.any() else "fraction certified (no labels)")
    ax.set_title(MEASURE_TITLES.get(measure, measure), fontsize=10)
    ax.set_xlim(0, grid[-1])
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    by_c = [Line2D([], [], color=colors[j], linewidth=2, label=f"{measure} >= {c:g}")
            for j, c in enumerate(thresholds)]
    ax.legend(handles=by_c, loc="upper right", fontsize=8, title="threshold c", title_fontsize=8)


def _method_legend(fig, methods: Sequence[str]) -> None:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color="0.3", label=m, **METHOD_STYLE.get(m, {"linestyle": "-."})) for m in methods]
    handles.append(Line2D([], [], label="label certificate (Cohen et al.)", **LABEL_STYLE))
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=9,
               title="method (line style)", title_fontsize=9, frameon=False)


def _score_panel(ax, data: ReportData) -> None:
    """Figure 3: prediction score vs the label certificate's radius."""
    measure = "score" if "score" in data.means else next(iter(data.means))
    y = data.means[measure]
    x = data.label_radius
    finite_x = x[np.isfinite(x)]
    top = 1.05 * float(finite_x.max()) if finite_x.size and finite_x.max() > 0 else 1.0
    groups = [("correct", data.labelled & data.correct, "tab:blue"),
              ("wrong", data.labelled & ~data.correct, "tab:red"),
              ("no label", ~data.labelled, "tab:gray")]
    for name, rows, color in groups:
        finite = rows & np.isfinite(x)
        if finite.any():
            ax.scatter(x[finite], y[finite], s=14, alpha=0.7, color=color, label=f"{name} ({finite.sum()})")
        inf = rows & np.isposinf(x)
        if inf.any():
            ax.scatter(np.full(inf.sum(), top), y[inf], marker=">", s=22, color=color,
                       label=f"{name}, unbounded radius ({inf.sum()})")
    abstain = np.isnan(x)
    if abstain.any():
        ax.scatter(np.zeros(abstain.sum()), y[abstain], marker="x", s=22, color="black", linewidths=1,
                   label=f"abstain, no label radius ({abstain.sum()})", zorder=3)
    ax.set_xlabel(f"label certificate radius (Cohen et al.), {RADIUS_UNITS}")
    ax.set_ylabel(f"prediction {measure} (mean over the n noisy samples)")
    ax.set_title("prediction score vs certified radius", fontsize=10)
    ax.set_xlim(-0.02 * top, top * 1.03)
    lo, hi = (0.0, 1.0) if measure == "score" else (-1.0, 1.0)
    ax.set_ylim(lo - 0.02 * (hi - lo), hi + 0.02 * (hi - lo))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)


def _colors(k: int) -> Sequence:
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    return [cmap(0.78 * j / max(k - 1, 1)) for j in range(k)]
