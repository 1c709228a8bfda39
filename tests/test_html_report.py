"""The HTML report: exact step curves, per-class numbers and the test-set interval checked against
values recomputed here from the records; the page is self-contained; and a real headless Chromium
opens the page built from the README's main command with no console errors and no network."""

from __future__ import annotations

import json
import math
import os
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import stats

import report_factory
from browser import find_chromium, open_page
from onnxcert.reports.html import Source, render_html
from onnxcert.reports.metrics import accuracy_interval, by_class, certified_steps
from onnxcert.reports.read import parse_report

ROOT = Path(__file__).resolve().parents[1]
RADII = report_factory.RADII
THRESHOLDS = report_factory.THRESHOLDS
_r = report_factory.radius_value
synthetic_report = report_factory.synthetic_report


# ---------------------------------------------------------------- the numbers, recomputed here


def test_step_curve_corners_match_a_recount_of_the_records():
    report = synthetic_report(m=80, seed=1)
    data = parse_report(report)
    recs = [r for r in report["records"] if r["correct"] is not None]
    for meas, meth, j in (("score", "cdf-bj", 0), ("margin", "naive", 1)):
        radius = data.radius[meas, meth][:, j]
        xs, ys = certified_steps(radius, data, x_max=1.2)
        exact = sorted({_r(r["confidence"][meas][meth]["radius"][j]) for r in recs} - {math.nan, math.inf},
                       key=float)
        probes = [0.0, 1.2] + [u for u in exact if not math.isnan(u)] + [u + 1e-9 for u in exact] + \
                 [float(x) for x in np.linspace(0, 1.2, 97)]
        for r in probes:
            want = sum(1 for rec in recs if rec["correct"] and not math.isnan(_r(
                rec["confidence"][meas][meth]["radius"][j])) and _r(rec["confidence"][meas][meth]["radius"][j]) >= r)
            k = int(np.flatnonzero(xs >= r - 1e-15)[0])  # the curve's value at r: its first corner at x >= r
            assert ys[k] == pytest.approx(want / len(recs), abs=1e-12), (meas, meth, j, r)
        assert np.all(np.diff(xs) >= 0) and np.all(np.diff(ys) <= 1e-15)  # a staircase going down


def test_per_class_numbers_match_a_recount_of_the_records():
    report = synthetic_report(m=90, seed=2)
    data = parse_report(report)
    rows = by_class(data, data.label_radius, RADII)
    recs = report["records"]
    assert [r.label for r in rows] == sorted({r["label"] for r in recs if r["label"] is not None})
    for row in rows:
        mine = [r for r in recs if r["label"] == row.label]
        assert row.count == len(mine)
        assert row.smoothed_accuracy == pytest.approx(sum(r["correct"] for r in mine) / len(mine))
        assert row.clean_accuracy == pytest.approx(sum(r["clean_prediction"] == row.label for r in mine) / len(mine))
        assert row.abstain_rate == pytest.approx(sum(r["label_certificate"]["radius"] is None for r in mine) / len(mine))
        for r, acc in zip(RADII, row.accuracy):
            hits = sum(1 for x in mine if x["correct"] and x["label_certificate"]["radius"] is not None
                       and _r(x["label_certificate"]["radius"]) >= r)
            assert acc == pytest.approx(hits / len(mine)), (row.label, r)
        radii = [0.0 if not x["correct"] or x["label_certificate"]["radius"] is None
                 else _r(x["label_certificate"]["radius"]) for x in mine]
        finite = [v for v in radii if math.isfinite(v)]
        assert row.inf_count == len(radii) - len(finite)
        assert row.mean_radius == pytest.approx(sum(finite) / len(finite))
    assert rows[0].name == "cat" and rows[2].name == "3"


def test_per_class_table_in_the_page_shows_those_numbers(tmp_path):
    report = synthetic_report(m=90, seed=2)
    page = render_html([Source(report, "toy.json")])
    tables = _tables(page, "by-class")
    assert len(tables) == 1 + len(THRESHOLDS)  # label certificate, then one per measure
    head, *body = tables[0]
    recs = report["records"]
    col = head.index("r=0.25")
    for row in body:
        label = int(row[0].split()[0])
        mine = [r for r in recs if r["label"] == label]
        hits = sum(1 for x in mine if x["correct"] and _r(x["label_certificate"]["radius"]) >= 0.25)
        assert row[col] == f"{hits / len(mine):.3f}"
    assert any("(&lt;b&gt;bird&lt;/b&gt;)" in line for line in page.splitlines())  # class names escaped


def test_accuracy_interval_is_clopper_pearson():
    # closed form: the Beta quantiles of Clopper & Pearson (1934)
    for k, m in ((0, 20), (3, 20), (20, 20), (237, 250), (1, 1)):
        lo, hi = accuracy_interval(k, m, 0.95)
        want_lo = 0.0 if k == 0 else stats.beta.ppf(0.025, k, m - k + 1)
        want_hi = 1.0 if k == m else stats.beta.ppf(0.975, k + 1, m - k)
        assert lo == pytest.approx(want_lo, abs=1e-12) and hi == pytest.approx(want_hi, abs=1e-12)


@pytest.mark.parametrize("p", [0.05, 0.5, 0.93])
def test_accuracy_interval_covers_at_its_level(p):
    """Monte Carlo: 4000 test sets of m = 40; the 95% interval misses p in at most 5% of them,
    up to the binomial 0.999 quantile. (A one-sided 0.95 bound on each end, a planted bug, misses
    about 10% and fails this.)"""
    rng = np.random.default_rng(7)
    reps, m = 4000, 40
    misses = 0
    for k in rng.binomial(m, p, size=reps):
        lo, hi = accuracy_interval(int(k), m, 0.95)
        misses += not lo <= p <= hi
    assert misses <= stats.binom.ppf(0.999, reps, 0.05), misses


# ---------------------------------------------------------------- the page itself


class _TableGrabber(HTMLParser):
    def __init__(self, cls):
        super().__init__()
        self.cls, self.tables, self.depth, self.row, self.cell = cls, [], 0, None, None

    def handle_starttag(self, tag, attrs):
        if tag == "table" and self.cls in (dict(attrs).get("class") or "").split():
            self.tables.append([])
            self.depth = 1
        elif self.depth and tag == "tr":
            self.row = []
        elif self.depth and tag in ("td", "th"):
            self.cell = ""

    def handle_endtag(self, tag):
        if tag == "table":
            self.depth = 0
        elif self.depth and tag in ("td", "th"):
            self.row.append(self.cell)
            self.cell = None
        elif self.depth and tag == "tr":
            self.tables[-1].append(self.row)

    def handle_data(self, data):
        if self.cell is not None:
            self.cell += data


def _tables(page: str, cls: str) -> list[list[list[str]]]:
    p = _TableGrabber(cls)
    p.feed(page)
    return p.tables


def test_page_is_self_contained_and_escapes_report_text(tmp_path):
    img = tmp_path / "a.png"
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).save(img)
    paths = [str(img)] * 14 + ["missing/nowhere.png", "<script>alert(1)</script>.png"]
    report = synthetic_report(m=16, images=paths)  # 16 inputs: all are among the 8 smallest and 8 largest
    page = render_html([Source(report, "toy.json")])
    assert "<script" not in page.lower()
    urls = set(re.findall(r"""(?:src|href)\s*=\s*["']?([^"' >]+)""", page))
    assert urls and all(u.startswith("data:image/png;base64,") for u in urls), urls
    assert set(re.findall(r"https?://[^\s\"'<>]+", page)) <= {"http://www.w3.org/2000/svg"}
    assert "&lt;script&gt;alert(1)&lt;/script&gt;.png" in page
    assert page.count('class="missing"') == 2  # missing and unreadable files show "no image"
    assert page.count("<img ") == 14
    assert "onnxcert run models/toy.onnx data --n 1000" in page  # the command line
    assert "Content-Security-Policy" in page


def test_several_reports_and_a_gate_result():
    from onnxcert.gate import Rule, evaluate_rules

    a, b = synthetic_report(seed=3), synthetic_report(seed=4)
    b["settings"]["sigma"] = 0.5
    gate = evaluate_rules(a, [Rule(measure="label", radius=0.25, min_accuracy=0.99)])
    page = render_html([Source(a, "a.json"), Source(b, "b.json")], gate=gate)
    assert 'id="gate" class="gate fail"' in page and "FAIL  label certificate r=0.25" in page
    assert 'id="overlay"' in page
    assert page.count('class="report-name"') == 4 * 2  # figures, classes, inputs, settings per report


def test_report_command_with_rules_and_errors(tmp_path):
    from cli_helpers import cli, error_line

    a = tmp_path / "a.json"
    a.write_text(json.dumps(synthetic_report(seed=5)))
    rules = tmp_path / "rules.yaml"
    rules.write_text("- {measure: label, radius: 0, min_accuracy: 0.01}\n")
    res = cli("report", a, a, "-o", tmp_path / "p.html", "--rules", rules, "--title", "two <runs>")
    assert res.exit_code == 0, res.output  # the gate passes here; report never sets the exit code
    page = (tmp_path / "p.html").read_text()
    assert "<title>two &lt;runs&gt;</title>" in page and 'class="gate pass"' in page
    for args, msg in (([a, "-o", tmp_path / "p.png"], "must end in .html or .htm"),
                      ([tmp_path / "none.json", "-o", tmp_path / "q.html"], "does not exist")):
        res = cli("report", *args)
        assert res.exit_code == 2 and msg in error_line(res)
    assert not (tmp_path / "q.html").exists()


# ---------------------------------------------------------------- in a real browser


def _chromium():
    path = find_chromium()
    if path is None:
        if os.environ.get("ONNXCERT_REQUIRE_BROWSER"):
            pytest.fail("ONNXCERT_REQUIRE_BROWSER is set but no chromium is on PATH")
        pytest.skip("headless Chromium is not installed (Debian: apt-get install chromium; .ci/run installs it)")
    return path


PAGE_FACTS = """JSON.stringify({
  title: document.title,
  h2: [...document.querySelectorAll('h2')].map(h => h.textContent),
  fig5: [...document.querySelectorAll('figure.fig5 svg')].map(s => s.querySelectorAll('polyline.curve').length),
  fig3_points: [...document.querySelectorAll('figure.fig3 .point')].length,
  chart_sizes: [...document.querySelectorAll('svg.chart')].map(s => s.getBoundingClientRect().width),
  class_rows: [...document.querySelectorAll('table.by-class')].map(t => t.querySelectorAll('tbody tr').length),
  thumbs: [...document.querySelectorAll('.thumbs img')].map(i => i.complete && i.naturalWidth > 0),
  cards: document.querySelectorAll('.thumbs .card').length,
  summary_rows: document.querySelectorAll('#summary table.label tbody tr').length,
  ci_rows: document.querySelectorAll('tr.ci').length,
  command: (document.querySelector('pre.command') || {}).textContent || null,
})"""


@pytest.mark.slow
def test_readme_run_then_report_opens_in_headless_chromium(tmp_path, monkeypatch):
    """The README's main command (at n = 1000 for speed), then `onnxcert report`, in a real browser."""
    from cli_helpers import cli

    chromium = _chromium()
    monkeypatch.chdir(ROOT)  # the README's command runs from the repository root, with relative paths
    out = tmp_path / "report.json"
    res = cli("run", "sample_models/digits_sigma0.25.onnx", "sample_models/digits_test", "--n", "1000",
              "-o", out, "--force", "-q")
    assert res.exit_code == 0, res.output
    page = tmp_path / "report.html"
    res = cli("report", out, "-o", page)
    assert res.exit_code == 0, res.output
    shot = tmp_path / "report.png"
    result = open_page(page, PAGE_FACTS, screenshot=shot, chromium=chromium)
    assert result.errors() == []
    assert result.foreign_requests(page.resolve().as_uri()) == []
    facts = json.loads(result.value)
    assert facts["title"].startswith("onnxcert report: digits_sigma0.25.onnx")
    assert facts["h2"][:2] == ["Summary", "Figures"] and "Per class" in facts["h2"]
    # score and margin: (5 thresholds x (cdf-bj, naive)) + the label certificate
    assert facts["fig5"] == [11, 11]
    assert facts["fig3_points"] == 250
    assert all(w > 300 for w in facts["chart_sizes"])
    assert facts["class_rows"] == [10, 10, 10]
    assert facts["cards"] == 16 and len(facts["thumbs"]) == 16 and all(facts["thumbs"])
    assert facts["summary_rows"] == 2 and facts["ci_rows"] == 1 + 2 * 3 * 5  # label; measures x methods x c
    assert facts["command"].startswith("onnxcert run sample_models/digits_sigma0.25.onnx sample_models/digits_test")
    png = Image.open(shot)
    assert png.size[0] == 1280 and png.size[1] > 2000
    assert len(np.unique(np.asarray(png.convert("L").resize((64, 256))))) > 20  # not a blank page


def test_run_html_writes_the_page_with_the_gate_and_the_run_in_it(tmp_path, monkeypatch):
    from cli_helpers import cli, error_line

    monkeypatch.chdir(ROOT)
    rules = tmp_path / "rules.yaml"
    rules.write_text("- {measure: label, radius: 0.25, min_accuracy: 0.99}\n")
    args = ["run", "sample_models/digits_sigma0.25.onnx", "sample_models/digits_test", "--n", "200", "--n0", "20",
            "--measures", "score", "--methods", "cdf-bj", "-o", tmp_path / "r.json", "-q"]
    res = cli(*args, "--html", tmp_path / "r.txt")
    assert res.exit_code == 2 and "must end in .html" in error_line(res)
    assert not (tmp_path / "r.json").exists()  # refused before any work
    res = cli(*args, "--html", tmp_path / "r.html", "--gate", rules)
    assert res.exit_code == 1, res.output  # the gate fails (label certified accuracy < 0.99 at n = 200)
    page = (tmp_path / "r.html").read_text()
    assert 'class="gate fail"' in page and "FAIL  label certificate r=0.25" in page
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["command"][:4] == ["onnxcert", "run", "sample_models/digits_sigma0.25.onnx",
                                     "sample_models/digits_test"]
    assert report["config"]["smoothing"]["n"] == 200 and report["config"]["certify"]["methods"] == ["cdf-bj"]
    assert report["config"]["preprocess"]["size"] == [8, 8]
    res = cli(*args, "--html", tmp_path / "r.html", "--force")
    assert res.exit_code == 0  # no gate: exit 0, page rewritten without one
    assert 'id="gate"' not in (tmp_path / "r.html").read_text()
    res = cli(*args[:-3], "-o", tmp_path / "s.json", "-q", "--html", tmp_path / "r.html")
    assert res.exit_code == 2 and "exists; pass --force" in error_line(res)


def test_the_reports_config_runs_again_to_the_same_settings(tmp_path, monkeypatch):
    """`config` holds every resolved setting in the config file's sections: `-c` takes it back."""
    import yaml
    from cli_helpers import cli

    monkeypatch.chdir(ROOT)
    args = ["sample_models/digits_sigma0.50.onnx", "sample_models/digits_test", "-q", "--force"]
    res = cli("run", *args, "--n", "150", "--n0", "12", "--seed", "3", "--radii", "0,0.3", "--methods", "naive",
              "--score-thresholds", "0.6", "-o", tmp_path / "a.json")
    assert res.exit_code == 0, res.output
    first = json.loads((tmp_path / "a.json").read_text())
    (tmp_path / "used.yaml").write_text(yaml.safe_dump(first["config"]))
    res = cli("run", *args, "-c", tmp_path / "used.yaml", "-o", tmp_path / "b.json")
    assert res.exit_code == 0, res.output
    second = json.loads((tmp_path / "b.json").read_text())
    assert second["settings"] == first["settings"] and second["config"] == first["config"]
    assert [r["label_certificate"] for r in second["records"]] == [r["label_certificate"] for r in first["records"]]


def test_the_console_script_records_the_command_as_typed(tmp_path):
    import subprocess
    import sys

    args = ["run", "sample_models/digits_sigma0.25.onnx", "sample_models/digits_test", "--n", "100", "--n0", "10",
            "--measures=score", "-q", "-o", str(tmp_path / "r.json")]
    proc = subprocess.run([sys.executable, "-m", "onnxcert.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "r.json").read_text())["command"] == ["onnxcert", *args]


@pytest.mark.slow
def test_the_browser_check_catches_requests_and_console_errors(tmp_path):
    """The detector itself: a page that fetches from the network and logs an error is caught."""
    chromium = _chromium()
    page = tmp_path / "bad.html"
    page.write_text('<!DOCTYPE html><html><head><title>x</title></head><body>'
                    '<img src="http://127.0.0.1:9/pixel.png"><script>console.error("boom")</script></body></html>')
    result = open_page(page, "document.title", chromium=chromium)
    assert result.value == "x"
    assert result.foreign_requests(page.resolve().as_uri()) == ["http://127.0.0.1:9/pixel.png"]
    assert any("boom" in e for e in result.errors())
