"""`onnxcert gate`: every exit code through Typer's CliRunner (0 pass, 1 fail, 2 bad input), JUnit
XML parsed back, baseline comparison, and the Python API that `run --gate` calls. Golden values
come from a hand-written report (counted on paper) or are recounted here from the records."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from typer.testing import CliRunner

from onnxcert.cli import app
from onnxcert.api import certify_scores
from onnxcert.errors import ConfigError
from onnxcert.gate import GateResult, Rule, evaluate_rules, load_rules

runner = CliRunner()


def hand_report() -> dict:
    """Four labelled records (three correct) and one without a label."""
    def rec(i, correct, label_r, score_rs):
        return {"index": i, "input": f"img{i}.png", "label": None if correct is None else 0,
                "prediction": 0 if correct else 1, "correct": correct,
                "label_certificate": {"p_lower": 0.9, "radius": label_r},
                "confidence": {"score": {"mean": 0.8, "naive": {"lower_bounds": [0.7, 0.5], "upper_bounds": [0.9, 1],
                                                                "radius": score_rs}}}}
    return {
        "schema": "onnxcert.report/1", "complete": True, "count": 5, "total": 5, "model": None,
        "settings": {"sigma": 0.25, "alpha": 0.001, "n0": 100, "n": 1000, "measures": ["score"],
                     "methods": ["naive"], "thresholds": {"score": [0.6, 0.8]}, "radii": [0.0, 0.5]},
        "records": [
            rec(0, True, 0.5, [0.30, 0.10]),
            rec(1, True, 0.3, [0.25, None]),
            rec(2, False, 0.9, [0.90, 0.90]),
            rec(3, True, None, [None, None]),
            rec(4, None, 0.4, [0.50, 0.50]),
        ],
    }


@pytest.fixture
def hand_file(tmp_path):
    path = tmp_path / "hand.json"
    path.write_text(json.dumps(hand_report()))
    return path


def gate(*args):
    return runner.invoke(app, ["gate", *map(str, args)])


# ---------------------------------------------------------------- exit 0 and 1


def test_pass_exit_0_and_fail_exit_1_at_exact_bars(hand_file):
    # score/naive c=0.6: correct and radius >= r -> rec 0 (0.30), rec 1 (0.25); 4 labelled
    res = gate(hand_file, "--method", "naive", "--threshold", "0.6", "--radius", "0.25", "--min-accuracy", "0.5")
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines()[0] == "PASS  score/naive c=0.6 r=0.25: certified accuracy 0.5000 (bar >= 0.5)"
    # any radius works: at r = 0.26 only rec 0 is left
    res = gate(hand_file, "--method", "naive", "--threshold", "0.6", "--radius", "0.26", "--min-accuracy", "0.5")
    assert res.exit_code == 1
    assert res.stdout.splitlines()[0].startswith("FAIL  score/naive c=0.6 r=0.26: certified accuracy 0.2500")
    assert "gate FAILED: 0 of 1 checks hold" in res.stdout


def test_label_certificate_abstain_rate_and_mean_radius(hand_file):
    # label: correct & radius >= 0.3 -> rec 0, rec 1 -> 2/4; abstain: rec 3 of 5
    assert gate(hand_file, "--measure", "label", "--radius", "0.3", "--min-accuracy", "0.5").exit_code == 0
    assert gate(hand_file, "--measure", "label", "--radius", "0.31", "--min-accuracy", "0.5").exit_code == 1
    assert gate(hand_file, "--max-abstain-rate", "0.2").exit_code == 0
    res = gate(hand_file, "--max-abstain-rate", "0.19")
    assert res.exit_code == 1 and "abstain rate 0.2000 (bar <= 0.19)" in res.stdout
    # mean radius, score/naive c=0.8: (0.10 + 0 + 0 + 0) / 4 = 0.025
    assert gate(hand_file, "--method", "naive", "--threshold", "0.8", "--min-mean-radius", "0.025").exit_code == 0
    assert gate(hand_file, "--method", "naive", "--threshold", "0.8", "--min-mean-radius", "0.026").exit_code == 1


def test_rules_file_one_line_per_check(hand_file, tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "- {measure: score, method: naive, threshold: 0.6, radius: 0.2, min_accuracy: 0.5}\n"
        "- {measure: label, radius: 0.0, min_accuracy: 0.8}\n"  # 2/4 certified at r=0 -> fails
        "- max_abstain_rate: 0.5\n"
        "- {method: naive, threshold: 0.8, min_mean_radius: 0.01, radius: 0.1, min_accuracy: 0.25}\n")
    res = gate(hand_file, "--rules", rules)
    assert res.exit_code == 1, res.output
    lines = res.stdout.splitlines()
    assert [line[:4] for line in lines[:-1]] == ["PASS", "FAIL", "PASS", "PASS", "PASS"]
    assert lines[-1].startswith("gate FAILED: 4 of 5 checks hold")


def test_values_match_independent_count_on_a_certified_report(tmp_path):
    rng = np.random.default_rng(11)
    concs = [[a, 1, 1] for a in np.linspace(8, 40, 20)]
    est = np.array([rng.dirichlet(a, size=1000) for a in concs])
    sel = np.array([rng.dirichlet(a, size=30) for a in concs])
    labels = np.where(rng.random(20) < 0.8, 0, 1)
    report = certify_scores(est, sel, labels, sigma=0.25).report
    c, r = 0.7, 0.3137
    j = report["settings"]["thresholds"]["score"].index(c)
    hits = sum(1 for x in report["records"] if x["correct"]
               and x["confidence"]["score"]["cdf-bj"]["radius"][j] not in (None,)
               and (x["confidence"]["score"]["cdf-bj"]["radius"][j] == "inf"
                    or x["confidence"]["score"]["cdf-bj"]["radius"][j] >= r))
    result = evaluate_rules(report, [Rule(threshold=c, radius=r, min_accuracy=0.0)])
    assert result.checks[0].measured == hits / 20
    assert 0 < hits < 20


# ---------------------------------------------------------------- exit 2


@pytest.mark.parametrize("args, message", [
    (["--method", "naive", "--threshold", "0.7", "--radius", "0", "--min-accuracy", "0.5"],
     "threshold 0.7 is not one of the report's score thresholds (0.6, 0.8)"),
    (["--measure", "scor", "--threshold", "0.6", "--radius", "0", "--min-accuracy", "0.5"], "did you mean 'score'"),
    (["--method", "cdf-bj", "--threshold", "0.6", "--radius", "0", "--min-accuracy", "0.5"], "not in the report"),
    (["--method", "cdf-bk", "--threshold", "0.6", "--radius", "0", "--min-accuracy", "0.5"], "did you mean 'cdf-bj'"),
    (["--measure", "margin", "--threshold", "0.6", "--radius", "0", "--min-accuracy", "0.5"], "not in the report"),
    (["--method", "naive", "--threshold", "0.6", "--radius", "0", "--min-accuracy", "1.5"], "must lie in [0, 1]"),
    (["--method", "naive", "--threshold", "0.6", "--min-accuracy", "0.5"], "needs a radius"),
    (["--method", "naive", "--radius", "0.1", "--min-accuracy", "0.5"], "needs a threshold"),
    (["--measure", "label", "--threshold", "0.6", "--radius", "0", "--min-accuracy", "0.5"], "no threshold"),
    ([], "no rules"),
    (["--threshold", "0.6"], "needs a bar"),
    (["--max-abstain-rate", "0.1", "--tolerance", "0.1"], "--tolerance needs --baseline"),
])
def test_bad_usage_exits_2_with_one_line(hand_file, args, message):
    res = gate(hand_file, *args)
    assert res.exit_code == 2, res.output
    assert message in res.stderr
    assert res.stderr.startswith("onnxcert: error: ") and res.stderr.count("\n") == 1
    assert res.stdout == "" and "Traceback" not in res.output


def test_missing_and_malformed_reports_exit_2(tmp_path):
    ok = ["--max-abstain-rate", "1"]
    assert "does not exist" in gate(tmp_path / "nope.json", *ok).stderr
    assert gate(tmp_path / "nope.json", *ok).exit_code == 2
    bad = tmp_path / "bad.json"
    for text in ('{"schema": ', '{"schema": "onnxcert.report/1"}', "[]", "\xff"):
        bad.write_text(text, encoding="latin-1")
        res = gate(bad, *ok)
        assert res.exit_code == 2, (text, res.output)
        assert res.stderr.startswith("onnxcert: error: ") and res.stderr.count("\n") == 1
    rep = hand_report()
    rep["records"][0]["confidence"]["score"]["naive"]["radius"] = [0.1]  # one per threshold: 2 expected
    bad.write_text(json.dumps(rep))
    res = gate(bad, *ok)
    assert res.exit_code == 2 and "expected 2 (one per threshold)" in res.stderr


@pytest.mark.parametrize("text, message", [
    ("- {threshold: 0.6, radius: 0, min_acuracy: 0.5}\n", "unknown key 'min_acuracy' (did you mean 'min_accuracy'?)"),
    ("- {threshold: 0.6, radius: 0, min_accuracy: high}\n", "min_accuracy must be a number, got 'high'"),
    ("- {threshold: 0.6, radius: 0, min_accuracy: [0.5}\n", "not valid YAML at line 1"),
    ("threshold: 0.6\n", "must hold a non-empty YAML list of rules, got dict"),
    ("", "got nothing"),
    ("- 0.5\n", "rule 1 must be a mapping"),
    ("- {max_abstain_rate: 0.5}\n- {measure: logit, threshold: 0, radius: 0, min_accuracy: 0}\n",
     "rule 2: unknown measure 'logit'"),
])
def test_bad_rules_file_exits_2(hand_file, tmp_path, text, message):
    rules = tmp_path / "rules.yaml"
    rules.write_text(text)
    res = gate(hand_file, "--rules", rules)
    assert res.exit_code == 2, res.output
    assert message in res.stderr and res.stderr.count("\n") == 1


def test_rules_file_missing_or_mixed_with_flags_exits_2(hand_file, tmp_path):
    assert gate(hand_file, "--rules", tmp_path / "none.yaml").exit_code == 2
    rules = tmp_path / "r.yaml"
    rules.write_text("- {max_abstain_rate: 0.5}\n")
    res = gate(hand_file, "--rules", rules, "--max-abstain-rate", "0.1")
    assert res.exit_code == 2 and "not both" in res.stderr


def test_unlabelled_and_incomplete_reports(tmp_path):
    rep = hand_report()
    for x in rep["records"]:
        x["correct"] = x["label"] = None
    path = tmp_path / "u.json"
    path.write_text(json.dumps(rep))
    res = gate(path, "--method", "naive", "--threshold", "0.6", "--radius", "0", "--min-accuracy", "0")
    assert res.exit_code == 2 and "no labels" in res.stderr
    assert gate(path, "--max-abstain-rate", "0.2").exit_code == 0  # the abstain rate needs no labels

    rep = hand_report()
    rep["complete"], rep["total"] = False, 50
    path.write_text(json.dumps(rep))
    res = gate(path, "--max-abstain-rate", "0.5")
    assert res.exit_code == 2 and "incomplete" in res.stderr
    assert gate(path, "--max-abstain-rate", "0.5", "--allow-incomplete").exit_code == 0


# ---------------------------------------------------------------- JUnit and baseline


def test_junit_xml_one_testcase_per_check(hand_file, tmp_path):
    xml_path = tmp_path / "out" / "gate.xml"
    res = gate(hand_file, "--method", "naive", "--threshold", "0.6", "--radius", "0.26", "--min-accuracy", "0.5",
               "--max-abstain-rate", "0.5", "--junit", xml_path)
    assert res.exit_code == 1
    root = ET.parse(xml_path).getroot()
    assert root.tag == "testsuites"
    suite = root.find("testsuite")
    cases = suite.findall("testcase")
    assert suite.get("tests") == "2" and suite.get("failures") == "1" and len(cases) == 2
    failed = [c for c in cases if c.find("failure") is not None]
    assert len(failed) == 1
    assert failed[0].get("name") == "score/naive c=0.6 r=0.26: certified accuracy >= 0.5"
    assert "0.2500" in failed[0].find("failure").get("message")
    assert cases[1].get("name") == "abstain rate <= 0.5" and cases[1].find("failure") is None


def _pair(tmp_path):
    """Two models on the same inputs at the same sigma, n and alpha: a confident baseline and a
    less confident candidate, whose radii shrink."""
    rng = np.random.default_rng(5)
    labels = np.zeros(12, int)
    paths = []
    for name, tops in (("base", [40] * 12), ("cand", [40] * 6 + [8] * 6)):  # half the inputs weaker
        est = np.stack([rng.dirichlet([top, 1, 1], size=1000) for top in tops])
        sel = rng.dirichlet([8, 1, 1], size=(12, 30))
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(certify_scores(est, sel, labels, sigma=0.25).report))
        paths.append(path)
    return paths


def test_baseline_regression(tmp_path):
    base, cand = _pair(tmp_path)
    rule = ["--threshold", "0.7", "--radius", "0.25"]
    res = gate(cand, *rule, "--baseline", base)
    assert res.exit_code == 1, res.output
    measured = json.loads(cand.read_text())
    j = measured["settings"]["thresholds"]["score"].index(0.7)
    def acc(rep):
        rs = [x["confidence"]["score"]["cdf-bj"]["radius"][j] for x in rep["records"]]
        return sum(r is not None and (r == "inf" or r >= 0.25) for r in rs) / len(rs)
    drop = acc(json.loads(base.read_text())) - acc(measured)
    assert drop > 0.1  # the test must see a real regression
    assert gate(cand, *rule, "--baseline", base, "--tolerance", f"{drop - 0.01:.4f}").exit_code == 1
    assert gate(cand, *rule, "--baseline", base, "--tolerance", f"{drop + 1e-6:.6f}").exit_code == 0
    assert gate(base, *rule, "--baseline", base).exit_code == 0  # no drop against itself
    res = gate(cand, *rule, "--min-accuracy", "0", "--baseline", base, "--tolerance", "1")
    assert res.exit_code == 0 and len(res.stdout.splitlines()) == 3  # bar, baseline, verdict


def test_baseline_of_another_sigma_is_refused(tmp_path):
    """The same scores certified at sigma 0.5 and 0.25 measure different things: refused (exit 2)
    with one line unless --allow-mismatch, which compares them (radii halve: a regression)."""
    rng = np.random.default_rng(5)
    est, sel = rng.dirichlet([8, 1, 1], size=(12, 1000)), rng.dirichlet([8, 1, 1], size=(12, 30))
    paths = []
    for sigma in (0.5, 0.25):
        paths.append(tmp_path / f"s{sigma}.json")
        paths[-1].write_text(json.dumps(certify_scores(est, sel, np.zeros(12, int), sigma=sigma).report))
    rule = ["--threshold", "0.7", "--radius", "0.25"]
    res = gate(paths[1], *rule, "--baseline", paths[0])
    assert res.exit_code == 2
    assert res.stderr.strip().splitlines() == [
        f"onnxcert: error: cannot gate against the baseline: {paths[0]} and {paths[1]} differ in sigma "
        "(0.5 vs 0.25); pass --allow-mismatch to do it anyway"]
    assert gate(paths[1], *rule, "--baseline", paths[0], "--allow-mismatch").exit_code == 1


def test_baseline_lacking_the_threshold_exits_2(tmp_path, hand_file):
    base, cand = _pair(tmp_path)
    res = gate(cand, "--threshold", "0.7", "--radius", "0.1", "--baseline", hand_file)
    assert res.exit_code == 2 and "differ in inputs (5 vs 12)" in res.stderr
    res = gate(cand, "--threshold", "0.7", "--radius", "0.1", "--baseline", hand_file, "--allow-mismatch")
    assert res.exit_code == 2
    assert res.stderr.startswith(f"onnxcert: error: baseline {hand_file}: method 'cdf-bj' is not in the report")


# ---------------------------------------------------------------- the Python API for `run --gate`


def test_python_api_returns_frozen_results(tmp_path):
    rules_path = tmp_path / "rules.yaml"
    rules_path.write_text("- {method: naive, threshold: 0.6, radius: 0.25, min_accuracy: 0.5}\n"
                          "- {max_abstain_rate: 0.1}\n")
    rules = load_rules(rules_path)
    assert rules == (Rule(method="naive", threshold=0.6, radius=0.25, min_accuracy=0.5), Rule(max_abstain_rate=0.1))
    result = evaluate_rules(hand_report(), rules)
    assert isinstance(result, GateResult)
    assert [c.passed for c in result.checks] == [True, False] and result.exit_code == 1
    assert result.checks[1].measured == 0.2 and result.checks[1].bar == 0.1
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.checks[0].passed = False
    with pytest.raises(dataclasses.FrozenInstanceError):
        rules[0].radius = 1.0
    with pytest.raises(ConfigError, match="unknown method"):
        Rule(method="cdf", threshold=0.5, radius=0, min_accuracy=0)
    rep = copy.deepcopy(hand_report())
    rep["records"][0]["confidence"]["score"]["naive"]["radius"][0] = "inf"
    result = evaluate_rules(rep, [Rule(method="naive", threshold=0.6, radius=1e9, min_accuracy=0.25)])
    assert result.passed and math.isclose(result.checks[0].measured, 0.25)


def test_help_shows_the_contract_defaults():
    res = runner.invoke(app, ["gate", "--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0
    assert "[default: score]" in res.stdout and "[default: cdf-bj]" in res.stdout
