"""Inline SVG charts for the HTML report: line charts of step curves and scatter plots.

Pure Python (no matplotlib), so ``onnxcert report`` works with the base install. A chart is a
string holding one ``<svg>`` element that needs nothing outside itself: no fonts, scripts or
links. Every mark carries a ``<title>``, which browsers show on hover.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape
from typing import Sequence

# Okabe-Ito, safe for colour-blind readers; dark to light so that "low c" is the darkest line
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")
DASHES = {"solid": None, "dashed": "6 4", "dotted": "2 3", "dashdot": "7 3 2 3"}
FONT = "font-family:system-ui,-apple-system,'Segoe UI',Helvetica,Arial,sans-serif"


@dataclass(frozen=True)
class Line:
    """A polyline through (xs[i], ys[i]); ``dash`` is a key of DASHES."""

    label: str
    xs: Sequence[float]
    ys: Sequence[float]
    color: str
    dash: str = "solid"
    width: float = 1.6
    legend: bool = True
    steps: bool = False  # a step function: constant at ys[i] on (xs[i-1], xs[i]] ("steps-pre")


@dataclass(frozen=True)
class Points:
    """Scatter marks; ``marker`` is "circle", "cross" or "triangle"; ``tips`` one hover text each."""

    label: str
    xs: Sequence[float]
    ys: Sequence[float]
    color: str
    marker: str = "circle"
    tips: Sequence[str] | None = None


@dataclass(frozen=True)
class Frame:
    """Axes: ranges, labels and the pixel size of the whole chart."""

    x_range: tuple[float, float]
    y_range: tuple[float, float]
    x_label: str
    y_label: str
    title: str = ""
    width: int = 560
    height: int = 360
    legend_width: int = 170


def nice_ticks(lo: float, hi: float, target: int = 6) -> list[float]:
    """Round tick values (1, 2, 2.5 or 5 times a power of ten) covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / max(target - 1, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    ticks = []
    k = 0
    while first + k * step <= hi + 1e-9 * step:
        ticks.append(round(first + k * step, 12))
        k += 1
    return ticks


def _num(v: float) -> str:
    return f"{v:.2f}".rstrip("0").rstrip(".")


class _Canvas:
    """Maps data to pixels inside the plot area of a Frame."""

    LEFT, RIGHT_PAD, TOP, BOTTOM = 58, 14, 30, 46

    def __init__(self, frame: Frame):
        self.f = frame
        self.x0, self.x1 = self.LEFT, frame.width - frame.legend_width - self.RIGHT_PAD
        self.y0, self.y1 = frame.height - self.BOTTOM, self.TOP

    def x(self, v: float) -> float:
        lo, hi = self.f.x_range
        return self.x0 + (min(max(v, lo), hi) - lo) / (hi - lo) * (self.x1 - self.x0)

    def y(self, v: float) -> float:
        lo, hi = self.f.y_range
        return self.y0 - (min(max(v, lo), hi) - lo) / (hi - lo) * (self.y0 - self.y1)


def _axes(c: _Canvas) -> list[str]:
    f = c.f
    out = [f'<rect x="{c.x0}" y="{c.y1}" width="{c.x1 - c.x0}" height="{c.y0 - c.y1}" fill="#fff" stroke="#444"/>']
    for t in nice_ticks(*f.x_range):
        px = c.x(t)
        out.append(f'<line x1="{px:.1f}" y1="{c.y1}" x2="{px:.1f}" y2="{c.y0}" stroke="#e3e3e3"/>')
        out.append(f'<text x="{px:.1f}" y="{c.y0 + 15}" text-anchor="middle">{_num(t)}</text>')
    for t in nice_ticks(*f.y_range, target=6):
        py = c.y(t)
        out.append(f'<line x1="{c.x0}" y1="{py:.1f}" x2="{c.x1}" y2="{py:.1f}" stroke="#e3e3e3"/>')
        out.append(f'<text x="{c.x0 - 6}" y="{py + 4:.1f}" text-anchor="end">{_num(t)}</text>')
    out.append(f'<rect x="{c.x0}" y="{c.y1}" width="{c.x1 - c.x0}" height="{c.y0 - c.y1}" fill="none" stroke="#444"/>')
    mid_x, mid_y = (c.x0 + c.x1) / 2, (c.y0 + c.y1) / 2
    out.append(f'<text class="xlabel" x="{mid_x:.1f}" y="{f.height - 10}" text-anchor="middle">{escape(f.x_label)}</text>')
    out.append(f'<text class="ylabel" x="14" y="{mid_y:.1f}" text-anchor="middle" '
               f'transform="rotate(-90 14 {mid_y:.1f})">{escape(f.y_label)}</text>')
    if f.title:
        out.append(f'<text x="{mid_x:.1f}" y="18" text-anchor="middle" font-weight="600">{escape(f.title)}</text>')
    return out


def _stroke(color: str, dash: str, width: float) -> str:
    pattern = DASHES.get(dash)
    extra = f' stroke-dasharray="{pattern}"' if pattern else ""
    return f'fill="none" stroke="{color}" stroke-width="{width}"{extra}'


def _corners(xs: Sequence[float], ys: Sequence[float]) -> list[tuple[float, float]]:
    """A "steps-pre" step function's polyline: up or down at each x, then across at the next y."""
    out = [(xs[0], ys[0])] if len(xs) else []
    for i in range(1, len(xs)):
        out += [(xs[i - 1], ys[i]), (xs[i], ys[i])]
    return out


def _line(c: _Canvas, line: Line) -> str:
    points = _corners(line.xs, line.ys) if line.steps else list(zip(line.xs, line.ys))
    pts = " ".join(f"{c.x(x):.2f},{c.y(y):.2f}" for x, y in points)
    return (f'<polyline class="curve" points="{pts}" {_stroke(line.color, line.dash, line.width)} '
            f'stroke-linejoin="miter"><title>{escape(line.label)}</title></polyline>')


def _marker(kind: str, px: float, py: float, color: str, tip: str | None, cls: str = "point") -> str:
    title = f"<title>{escape(tip)}</title>" if tip else ""
    if kind == "cross":
        d = f"M{px - 3.5:.1f},{py - 3.5:.1f}L{px + 3.5:.1f},{py + 3.5:.1f}M{px - 3.5:.1f},{py + 3.5:.1f}L{px + 3.5:.1f},{py - 3.5:.1f}"
        return f'<path class="{cls}" d="{d}" stroke="{color}" stroke-width="1.5">{title}</path>'
    if kind == "triangle":
        d = f"M{px + 4:.1f},{py:.1f}L{px - 3:.1f},{py - 4:.1f}L{px - 3:.1f},{py + 4:.1f}Z"
        return f'<path class="{cls}" d="{d}" fill="{color}" fill-opacity="0.75">{title}</path>'
    return f'<circle class="{cls}" cx="{px:.1f}" cy="{py:.1f}" r="3" fill="{color}" fill-opacity="0.6">{title}</circle>'


def _legend(c: _Canvas, entries: Sequence[Line | Points]) -> list[str]:
    x = c.x1 + 16
    out = []
    for i, e in enumerate(entries):
        y = c.y1 + 8 + 17 * i
        if isinstance(e, Line):
            out.append(f'<line x1="{x}" y1="{y}" x2="{x + 26}" y2="{y}" {_stroke(e.color, e.dash, e.width)}/>')
        else:
            out.append(_marker(e.marker, x + 13, y, e.color, None, "key"))
        out.append(f'<text x="{x + 32}" y="{y + 4}">{escape(e.label)}</text>')
    return out


def _svg(frame: Frame, body: list[str], role_label: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" aria-label="{escape(role_label)}" '
            f'width="{frame.width}" height="{frame.height}" viewBox="0 0 {frame.width} {frame.height}" '
            f'style="{FONT};font-size:11px">' + "".join(body) + "</svg>")


def line_chart(frame: Frame, lines: Sequence[Line], legend: Sequence[Line | Points] | None = None,
               notes: Sequence[str] = ()) -> str:
    """Curves over axes; at the right the legend (default: the lines with ``legend`` set) and
    ``notes``. Legend entries need not be drawn lines (e.g. one entry per line style)."""
    c = _Canvas(frame)
    body = _axes(c) + [_line(c, ln) for ln in lines]
    shown = [ln for ln in lines if ln.legend] if legend is None else list(legend)
    body += _legend(c, shown)
    body += _notes(c, notes, len(shown))
    return _svg(frame, body, frame.title or frame.y_label)


def scatter_chart(frame: Frame, groups: Sequence[Points], notes: Sequence[str] = ()) -> str:
    """Scatter marks over axes, one legend entry per group."""
    c = _Canvas(frame)
    body = _axes(c)
    for g in groups:
        tips = g.tips or [None] * len(g.xs)
        body += [_marker(g.marker, c.x(x), c.y(y), g.color, t) for x, y, t in zip(g.xs, g.ys, tips)]
    body += _legend(c, groups)
    body += _notes(c, notes, len(groups))
    return _svg(frame, body, frame.title or frame.y_label)


def _notes(c: _Canvas, notes: Sequence[str], after: int) -> list[str]:
    y = c.y1 + 8 + 17 * after + 10
    return [f'<text x="{c.x1 + 16}" y="{y + 14 * i}" fill="#555">{escape(n)}</text>' for i, n in enumerate(notes)]
