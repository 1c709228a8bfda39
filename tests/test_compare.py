"""`summary --by-class`, `summary A B --diff`, `--allow-mismatch`, `gate --baseline` refusals,
`min_accuracy_lower`, `--intervals` and `-f latex`. Every number is recomputed here from the
records with plain loops; intervals against scipy's Beta quantiles (Clopper & Pearson 1934)."""

from __future__ import annotations

import json
import math

import pytest
from scipy import stats

from cli_helpers import cli, error_line
from report_factory import RADII, THRESHOLDS, radius_value, synthetic_report


def _write(tmp_path, name, report):
    path = tmp_path / name
    path.write_text(json.dumps(report))
    return path


def _radius(rec, measure, method, j):
    if measure == "label":
        return radius_value(rec["label_certificate"]["radius"])
    return radius_value(rec["confidence"][measure][method]["radius"][j])


def _hits(recs, measure, method, j, r):
    return sum(1 for x in recs if x["correct"] and not math.isnan(_radius(x, measure, method, j))
               and _radius(x, measure, method, j) >= r)


def _mean_radius(recs, measure, method, j):
    vals = [0.0 if not x["correct"] or math.isnan(_radius(x, measure, method, j)) else _radius(x, measure, method, j)
            for x in recs]
    finite = [v for v in vals if math.isfinite(v)]
    return sum(finite) / len(finite)


# ---------------------------------------------------------------- --by-class


def test_by_class_json_matches_a_recount(tmp_path):
    report = synthetic_report(m=120, seed=11)
    path = _write(tmp_path, "a.json", report)
    res = cli("summary", path, "--by-class", "-f", "json", "--methods", "naive,cdf-bj")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    tables = doc["tables"]
    # label certificate, then every measure x method x threshold
    assert len(tables) == 1 + 2 * sum(len(t) for t in THRESHOLDS.values())
    recs = report["records"]
    for t in tables:
        if t["certificate"].startswith("label"):
            measure, method, j = "label", None, None
        else:
            what, method = t["certificate"].rstrip(")").split(" (")
            measure, c = what.split(" >= ")
            j = THRESHOLDS[measure].index(float(c))
        for row in t["classes"]:
            mine = [x for x in recs if x["label"] == row["class"]]
            assert row["inputs"] == len(mine)
            assert row["smoothed_accuracy"] == pytest.approx(sum(x["correct"] for x in mine) / len(mine))
            assert row["clean_accuracy"] == pytest.approx(
                sum(x["clean_prediction"] == row["class"] for x in mine) / len(mine))
            assert row["abstain_rate"] == pytest.approx(
                sum(x["label_certificate"]["radius"] is None for x in mine) / len(mine))
            for r, acc in zip(RADII, row["certified_accuracy"]):
                assert acc == pytest.approx(_hits(mine, measure, method, j, r) / len(mine)), (t["certificate"], r)
            assert row["mean_radius"] == pytest.approx(_mean_radius(mine, measure, method, j))
    names = {row["class"]: row["name"] for row in tables[0]["classes"]}
    assert names[0] == "cat" and names[3] == "<b>bird</b>"


def test_by_class_without_labels_groups_by_prediction(tmp_path):
    report = synthetic_report(m=40, seed=12, labelled=False)
    res = cli("summary", _write(tmp_path, "a.json", report), "--by-class", "-f", "markdown", "--measures", "score")
    assert res.exit_code == 0, res.output
    assert "fraction certified (no labels: by predicted class)" in res.stdout
    counts = {}
    for x in report["records"]:
        counts[x["prediction"]] = counts.get(x["prediction"], 0) + 1
    rows = [ln.split("|")[1:3] for ln in res.stdout.splitlines() if ln.startswith("| ") and "class" not in ln]
    assert {int(c.split()[0]): int(n) for c, n in rows[:len(counts)]} == counts


# ---------------------------------------------------------------- --diff


def _other(report, seed):
    """The same inputs, settings and labels, different certificates (another model)."""
    b = synthetic_report(m=len(report["records"]), seed=seed)
    for xa, xb in zip(report["records"], b["records"]):
        xb["label"], xb["input"] = xa["label"], xa["input"]
        xb["correct"] = None if xa["label"] is None else xb["prediction"] == xa["label"]
    b["model"] = {"path": "models/other.onnx", "sha256": "1" * 64}
    return b


def test_diff_json_matches_a_recount(tmp_path):
    a = synthetic_report(m=80, seed=21)
    b = _other(a, 22)
    res = cli("summary", _write(tmp_path, "a.json", a), _write(tmp_path, "b.json", b), "--diff", "-f", "json",
              "--radii", "0,0.1,0.33,0.5")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    radii = [0, 0.1, 0.33, 0.5]
    assert doc["radii"] == radii and doc["mismatches"] == []
    la = [x for x in a["records"] if x["correct"] is not None]
    lb = [x for x in b["records"] if x["correct"] is not None]
    assert doc["smoothed_accuracy_delta"] == pytest.approx(
        sum(x["correct"] for x in lb) / len(lb) - sum(x["correct"] for x in la) / len(la))
    assert doc["clean_accuracy_delta"] == pytest.approx(
        sum(x["clean_prediction"] == x["label"] for x in lb) / len(lb)
        - sum(x["clean_prediction"] == x["label"] for x in la) / len(la))
    certs = doc["certificates"]
    assert len(certs) == 1 + 2 * sum(len(t) for t in THRESHOLDS.values())
    for c in certs:
        j = None if c["threshold"] is None else THRESHOLDS[c["measure"]].index(c["threshold"])
        for i, r in enumerate(radii):
            want_a = _hits(la, c["measure"], c["method"], j, r) / len(la)
            want_b = _hits(lb, c["measure"], c["method"], j, r) / len(lb)
            assert c["a"][i] == pytest.approx(want_a) and c["b"][i] == pytest.approx(want_b)
            assert c["delta"][i] == pytest.approx(want_b - want_a)
        assert c["mean_radius_delta"] == pytest.approx(
            _mean_radius(lb, c["measure"], c["method"], j) - _mean_radius(la, c["measure"], c["method"], j))


def test_diff_tables_show_both_and_the_change(tmp_path):
    a = synthetic_report(m=50, seed=23)
    b = _other(a, 24)
    for fmt in ("rich", "markdown", "latex", "csv"):
        res = cli("summary", _write(tmp_path, "a.json", a), _write(tmp_path, "b.json", b), "--diff", "-f", fmt)
        assert res.exit_code == 0, res.output
        assert "B - A" in res.stdout or "delta@0" in res.stdout
    res = cli("summary", _write(tmp_path, "a.json", a), "--diff")
    assert res.exit_code == 2 and "exactly two reports" in error_line(res)


# ---------------------------------------------------------------- mismatches are refused


def _mismatched(report):
    """(what differs, a changed copy) for each kind of mismatch."""
    def changed(fn):
        b = json.loads(json.dumps(report))
        fn(b)
        return b

    return [
        ("sigma (0.25 vs 0.5)", changed(lambda b: b["settings"].update(sigma=0.5))),
        ("n (1000 vs 10000)", changed(lambda b: b["settings"].update(n=10000))),
        ("alpha (0.001 vs 0.01)", changed(lambda b: b["settings"].update(alpha=0.01))),
        ("inputs (40 vs 39)", changed(lambda b: b.update(records=b["records"][:-1]))),
        ("inputs (record 5:", changed(lambda b: b["records"][5].update(input="data/x/other.png"))),
        # the label changes and `correct` with it: a report whose `correct` contradicts its label and
        # prediction is refused as corrupt (issue 15) before any comparison
        ("labels (record 7:", changed(lambda b: b["records"][7].update(
            label=(b["records"][7]["label"] + 1) % 4,
            correct=(b["records"][7]["label"] + 1) % 4 == b["records"][7]["prediction"]))),
    ]


def test_mismatched_reports_are_refused_unless_allowed(tmp_path):
    paths = [f"data/test/{i % 4}/{i:04d}.png" for i in range(40)]
    a = synthetic_report(m=40, seed=31, images=paths)
    pa = _write(tmp_path, "a.json", a)
    for what, b in _mismatched(a):
        pb = _write(tmp_path, "b.json", b)
        res = cli("summary", pa, pb, "--diff")
        assert res.exit_code == 2, what
        line = error_line(res)
        assert what in line and "--allow-mismatch" in line, line
        res = cli("gate", pb, "--threshold", "0.7", "--radius", "0.1", "--baseline", pa)
        assert res.exit_code == 2 and what in error_line(res), what
        res = cli("summary", pa, pb, "--diff", "--allow-mismatch")
        assert res.exit_code == 0 and "warning: the reports differ in" in res.stdout, what
        res = cli("gate", pb, "--threshold", "0.7", "--radius", "0.1", "--baseline", pa, "--tolerance", "1",
                  "--allow-mismatch")
        assert res.exit_code == 0, (what, res.output)


def test_the_same_inputs_checked_out_elsewhere_compare_fine(tmp_path):
    a = synthetic_report(m=40, seed=32, images=[f"data/test/{i % 4}/{i:04d}.png" for i in range(40)])
    b = json.loads(json.dumps(a))
    for x in b["records"]:
        x["input"] = "/home/ci/checkout/" + x["input"]
    res = cli("gate", _write(tmp_path, "b.json", b), "--threshold", "0.7", "--radius", "0.1",
              "--baseline", _write(tmp_path, "a.json", a))
    assert res.exit_code == 0, res.output
    res = cli("summary", tmp_path / "a.json", "--allow-mismatch")
    assert res.exit_code == 2 and "--allow-mismatch only applies to --diff" in error_line(res)


# ---------------------------------------------------------------- intervals and the gate's lower end


def _cp(k, m, level=0.95):
    lo = 0.0 if k == 0 else stats.beta.ppf((1 - level) / 2, k, m - k + 1)
    hi = 1.0 if k == m else stats.beta.ppf(1 - (1 - level) / 2, k + 1, m - k)
    return lo, hi


def test_summary_intervals_are_clopper_pearson_over_the_labelled_inputs(tmp_path):
    report = synthetic_report(m=70, seed=41)
    path = _write(tmp_path, "a.json", report)
    res = cli("summary", path, "-f", "json", "--confidence", "0.9")
    doc = json.loads(res.stdout)
    assert doc["interval_level"] == 0.9
    rep = doc["reports"][0]
    la = [x for x in report["records"] if x["correct"] is not None]
    for i, r in enumerate(RADII):
        want = _cp(_hits(la, "label", None, None, r), len(la), 0.9)
        assert rep["label_certificate"]["interval"][i] == pytest.approx(want, abs=1e-12)
        j = THRESHOLDS["score"].index(0.7)
        want = _cp(_hits(la, "score", "cdf-bj", j, r), len(la), 0.9)
        assert rep["confidence"]["score"]["cdf-bj"]["interval"][j][i] == pytest.approx(want, abs=1e-12)
    res = cli("summary", path, "--intervals", "-f", "markdown")
    k = _hits(la, "label", None, None, 0.25)
    lo, hi = _cp(k, len(la))
    assert f"[{lo:.3f}, {hi:.3f}]" in res.stdout and "95% CI" in res.stdout
    assert "95% CI" not in cli("summary", path, "-f", "markdown").stdout


def test_gate_on_the_lower_end_of_the_interval(tmp_path):
    report = synthetic_report(m=70, seed=42)
    path = _write(tmp_path, "a.json", report)
    la = [x for x in report["records"] if x["correct"] is not None]
    j = THRESHOLDS["score"].index(0.5)
    k = _hits(la, "score", "cdf-bj", j, 0.2)
    lo, _ = _cp(k, len(la))
    point = k / len(la)
    assert lo < point - 0.05  # 70 inputs: the interval is wide
    flags = ["--threshold", "0.5", "--radius", "0.2"]
    res = cli("gate", path, *flags, "--min-accuracy-lower", f"{lo - 1e-6:.8f}")
    assert res.exit_code == 0, res.output
    assert f"lower end of its 95% interval over the test set {lo:.4f}" in res.stdout
    res = cli("gate", path, *flags, "--min-accuracy-lower", f"{(lo + point) / 2:.6f}",
              "--min-accuracy", f"{(lo + point) / 2:.6f}")
    assert res.exit_code == 1 and "FAIL" in res.stdout.splitlines()[1] and "PASS" in res.stdout.splitlines()[0]
    rules = tmp_path / "rules.yaml"
    rules.write_text("- {threshold: 0.5, radius: 0.2, min_accuracy_lower: 0.99}\n")
    res = cli("gate", path, "--rules", rules)
    assert res.exit_code == 1
    rules.write_text("- {threshold: 0.5, min_accuracy_lower: 0.5}\n")
    res = cli("gate", path, "--rules", rules)
    assert res.exit_code == 2 and "min_accuracy_lower needs a radius" in error_line(res)


# ---------------------------------------------------------------- LaTeX


def test_latex_tables_are_booktabs_with_escaped_text(tmp_path):
    report = synthetic_report(m=30, seed=51)
    report["model"]["path"] = "models/my_model#2.onnx"
    res = cli("summary", _write(tmp_path, "a.json", report), "-f", "latex", "--radii", "0,0.5")
    assert res.exit_code == 0, res.output
    tex = res.stdout
    assert tex.count("\\begin{tabular}") == tex.count("\\end{tabular}") == 2 + len(THRESHOLDS)
    assert "\\toprule" in tex and "\\bottomrule" in tex and "my\\_model\\#2.onnx" in tex
    assert "score $\\geq$ c" in tex
    la = [x for x in report["records"] if x["correct"] is not None]
    row = next(ln for ln in tex.splitlines() if ln.startswith("my\\_model\\#2.onnx sigma=0.25 & ") and "\\\\" in ln
               and ln.count("&") == 4)  # the label certificate's row: name, r=0, r=0.5, mean R, inf
    cells = [c.strip() for c in row.rstrip("\\ ").split("&")]
    assert cells[1] == f"{_hits(la, 'label', None, None, 0.0) / len(la):.3f}"
    assert cells[2] == f"{_hits(la, 'label', None, None, 0.5) / len(la):.3f}"
