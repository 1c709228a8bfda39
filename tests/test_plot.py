"""`onnxcert plot`: the figure is inspected as matplotlib objects (lines, styles, labels, data),
then written to PNG / SVG without a display. Curve values are checked against certified accuracy
recounted here from the records."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from onnxcert.cli import app
from onnxcert.api import certify_scores
from onnxcert.reports.read import parse_report

pytest.importorskip("matplotlib")

from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402

from onnxcert.plot import plot_report  # noqa: E402

runner = CliRunner()


@pytest.fixture(scope="module")
def report() -> dict:
    rng = np.random.default_rng(7)
    k, n, n0, B = 3, 1000, 30, 16
    est, sel, lab = [], [], []
    for b in range(B):
        conc = np.full(k, 0.7)
        conc[b % k] = rng.uniform(1.0, 20.0)
        est.append(rng.dirichlet(conc, size=n))
        sel.append(rng.dirichlet(conc, size=n0))
        lab.append(b % k if b % 5 else (b + 1) % k)
    return certify_scores(np.array(est), np.array(sel), np.array(lab), sigma=0.25,
                          thresholds={"score": [0.5, 0.7], "margin": [0.0, 0.4]},
                          ).report


@pytest.fixture(scope="module")
def fig(report):
    return plot_report(parse_report(report))


def _accuracy(records, radius_of, r):
    labelled = [x for x in records if x["correct"] is not None]
    ok = 0
    for x in labelled:
        rad = radius_of(x)
        rad = None if rad is None else (math.inf if rad == "inf" else rad)
        ok += bool(x["correct"] and rad is not None and rad >= r)
    return ok / len(labelled)


def test_one_panel_per_measure_plus_the_score_scatter(fig, report):
    axes = fig.get_axes()
    assert len(axes) == len(report["settings"]["measures"]) + 1
    assert isinstance(fig.canvas, FigureCanvasAgg)
    title = fig.get_suptitle()
    assert "sigma = 0.25" in title and "n = 1000" in title
    for ax in axes:
        assert "L2 radius ([0, 1] pixel space)" in ax.get_xlabel()
    assert axes[0].get_ylabel() == "certified accuracy"
    assert "score" in axes[0].get_title() and "margin" in axes[1].get_title()


ALL_METHODS = ["naive", "cdf-dkw", "cdf-bj"]


def test_by_default_the_papers_pair_cdf_bj_solid_and_naive_dashed(fig, report):
    for ax, measure in zip(fig.get_axes(), report["settings"]["measures"]):
        labels = sorted(line.get_label() for line in ax.get_lines())
        want = sorted([f"{m}, c = {c:g}" for m in ("cdf-bj", "naive") for c in report["settings"]["thresholds"][measure]]
                      + ["label (Cohen et al.)"])
        assert labels == want


def test_lines_styles_and_labels(report):
    fig = plot_report(parse_report(report), methods=ALL_METHODS)
    settings = report["settings"]
    for ax, measure in zip(fig.get_axes(), settings["measures"]):
        lines = {line.get_label(): line for line in ax.get_lines()}
        thresholds = settings["thresholds"][measure]
        assert len(lines) == len(settings["methods"]) * len(thresholds) + 1
        for c in thresholds:
            naive, dkw, bj = (lines[f"{m}, c = {c:g}"] for m in ("naive", "cdf-dkw", "cdf-bj"))
            assert naive.get_linestyle() == "--"
            assert dkw.get_linestyle() == "-" and bj.get_linestyle() == "-"
            assert bj.get_linewidth() > dkw.get_linewidth() and bj.get_marker() == "o"
            assert dkw.get_marker() in ("None", None, "")
            assert naive.get_color() == dkw.get_color() == bj.get_color()  # colour = threshold
        label = lines["label (Cohen et al.)"]
        assert label.get_linestyle() == ":" and label.get_color() == "black"
        colours = {lines[f"cdf-bj, c = {c:g}"].get_color() for c in thresholds}
        assert len(colours) == len(thresholds)
    legend_texts = [t.get_text() for leg in fig.legends for t in leg.get_texts()]
    assert legend_texts[:3] == ["naive", "cdf-dkw", "cdf-bj"]


def test_curves_carry_the_certified_accuracy_of_the_records(fig, report):
    records = report["records"]
    ax = fig.get_axes()[0]  # score
    line = next(x for x in ax.get_lines() if x.get_label() == "cdf-bj, c = 0.5")
    xs, ys = line.get_xdata(), line.get_ydata()
    j = report["settings"]["thresholds"]["score"].index(0.5)
    for i in range(0, len(xs), 25):
        want = _accuracy(records, lambda x: x["confidence"]["score"]["cdf-bj"]["radius"][j], xs[i])
        assert ys[i] == pytest.approx(want, abs=1e-12)
    assert ys[0] > 0 and ys[-1] == 0  # the axis reaches past the last certified radius
    label = next(x for x in ax.get_lines() if x.get_label().startswith("label"))
    want = [_accuracy(records, lambda x: x["label_certificate"]["radius"], r) for r in label.get_xdata()[::30]]
    assert list(label.get_ydata()[::30]) == pytest.approx(want, abs=1e-12)


def test_score_vs_label_radius_scatter_has_every_input(fig, report):
    ax = fig.get_axes()[-1]
    records = report["records"]
    assert "label certificate radius" in ax.get_xlabel() and "pixel space" in ax.get_xlabel()
    assert "score" in ax.get_ylabel()
    points = np.concatenate([c.get_offsets() for c in ax.collections])
    assert len(points) == len(records)
    want = sorted((0.0 if x["label_certificate"]["radius"] is None else x["label_certificate"]["radius"],
                   x["confidence"]["score"]["mean"]) for x in records)
    np.testing.assert_allclose(np.array(sorted(map(tuple, points))), np.array(want), rtol=1e-9)


def test_plot_command_writes_png_and_svg(report, tmp_path):
    path = tmp_path / "r.json"
    path.write_text(json.dumps(report))
    for name, magic in (("c.png", b"\x89PNG\r\n\x1a\n"), ("c.svg", b"<?xml")):
        res = runner.invoke(app, ["plot", str(path), "-o", str(tmp_path / name)])
        assert res.exit_code == 0, res.output
        data = (tmp_path / name).read_bytes()
        assert data.startswith(magic) and len(data) > 10_000
    assert b"<svg" in (tmp_path / "c.svg").read_bytes()
    res = runner.invoke(app, ["plot", str(path), "-o", str(tmp_path / "c.jpg")])
    assert res.exit_code == 2 and "-o must end in" in res.stderr
    assert not (tmp_path / "c.jpg").exists()


def test_plot_unlabelled_report_shows_fraction_certified(report):
    rep = json.loads(json.dumps(report))
    for x in rep["records"]:
        x["correct"] = x["label"] = None
    fig = plot_report(parse_report(rep))
    assert "no labels" in fig.get_axes()[0].get_ylabel()


def test_without_matplotlib_prints_the_install_hint_and_exits_2(report, tmp_path, monkeypatch):
    path = tmp_path / "r.json"
    path.write_text(json.dumps(report))
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    res = runner.invoke(app, ["plot", str(path), "-o", str(tmp_path / "c.png")])
    assert res.exit_code == 2
    assert "pip install 'onnxcert[plot]'" in res.stderr and "Traceback" not in res.output
    assert not (tmp_path / "c.png").exists()


# ---------------------------------------------------------------- exact steps, filters, overlays, sizes


def test_curves_are_exact_steps_through_every_certified_radius(report):
    fig = plot_report(parse_report(report), methods=["cdf-bj"])
    ax = fig.get_axes()[0]
    records = report["records"]
    j = report["settings"]["thresholds"]["score"].index(0.7)
    line = next(x for x in ax.get_lines() if x.get_label() == "cdf-bj, c = 0.7")
    assert line.get_drawstyle() == "steps-pre"
    xs = line.get_xdata()
    radii = {x["confidence"]["score"]["cdf-bj"]["radius"][j] for x in records if x["correct"]}
    finite = {r for r in radii if r not in (None, "inf") and 0 < r < xs[-1]}
    assert finite <= set(xs.tolist())  # a corner at every certified radius, no grid
    for x, y in zip(xs, line.get_ydata()):  # each corner's value is the accuracy at that radius
        assert y == pytest.approx(_accuracy(records, lambda z: z["confidence"]["score"]["cdf-bj"]["radius"][j], x))


def test_filters_pick_measures_methods_and_thresholds(report):
    data = parse_report(report)
    fig = plot_report(data, measures=["margin"], methods=["cdf-dkw"], thresholds=[0.4])
    axes = fig.get_axes()
    assert len(axes) == 2  # margin, then the scatter
    assert sorted(x.get_label() for x in axes[0].get_lines()) == ["cdf-dkw, c = 0.4", "label (Cohen et al.)"]
    fig = plot_report(data, thresholds=[0.5])  # only score has c = 0.5: margin is left out
    assert len(fig.get_axes()) == 2 and "score" in fig.get_axes()[0].get_title()
    for bad, msg in ((dict(methods=["cdf-xx"]), "method 'cdf-xx' is not in the report"),
                     (dict(measures=["margin"], thresholds=[0.5]), "measure 'margin' has none of the thresholds 0.5"),
                     (dict(thresholds=[0.33]), "no measure has the thresholds 0.33")):
        with pytest.raises(Exception, match=msg):
            plot_report(data, **bad)


def test_several_reports_overlaid_one_panel_per_threshold(report):
    other = json.loads(json.dumps(report))
    other["settings"]["sigma"] = 0.5
    from onnxcert.plot import plot_reports

    fig = plot_reports([parse_report(report, "a.json"), parse_report(other, "b.json")], thresholds=[0.7, 0.4])
    axes = [ax for ax in fig.get_axes() if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == ["score >= 0.7", "margin >= 0.4"]  # no scatter
    for ax in axes:
        lines = ax.get_lines()
        assert len(lines) == 2 * (2 + 1)  # per report: cdf-bj, naive, label certificate
        colours = {ln.get_color() for ln in lines}
        assert len(colours) == 2  # colour = report
        legend = [t.get_text() for t in ax.get_legend().get_texts()]
        assert legend == ["a.json sigma=0.25", "b.json sigma=0.5"]


def test_single_column_preset_and_pdf(report, tmp_path):
    fig = plot_report(parse_report(report), size="column")
    w, h = fig.get_size_inches()
    assert w == pytest.approx(3.4) and h > w  # one column, panels stacked
    path = tmp_path / "r.json"
    path.write_text(json.dumps(report))
    res = runner.invoke(app, ["plot", str(path), str(path), "-o", str(tmp_path / "c.pdf"), "--size", "column",
                              "--measures", "score", "--thresholds", "0.5,0.7"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "c.pdf").read_bytes().startswith(b"%PDF")
    res = runner.invoke(app, ["plot", str(path), "-o", str(tmp_path / "d.png"), "--size", "poster"])
    assert res.exit_code == 2 and "--size must be one of full, column" in res.stderr
