"""`onnxcert summary`: every number is recomputed here from the records with plain loops (the
contract's definitions), never by calling onnxcert.reports, and compared exactly (1e-12)."""

from __future__ import annotations

import copy
import csv
import io
import json
import math

import numpy as np
import pytest
from rich.console import Console
from typer.testing import CliRunner

from onnxcert.cli import app
from onnxcert.api import certify_scores
from onnxcert.reports.metrics import summarize_report
from onnxcert.reports.read import parse_report
from onnxcert.reports.render import print_run_summary

runner = CliRunner()
RADII = [0.0, 0.1, 0.25, 0.5]


def synthetic_report(sigma: float = 0.25, seed: int = 3, B: int = 24, labels: bool = True) -> dict:
    """Dirichlet score rows (n = 1000, a calibrated-band size), about 1 in 5 labels wrong."""
    rng = np.random.default_rng(seed)
    k, n, n0 = 4, 1000, 40
    est, sel, lab = [], [], []
    for _ in range(B):
        conc = np.full(k, 0.6)
        c = int(rng.integers(k))
        conc[c] = rng.uniform(1.0, 25.0)
        est.append(rng.dirichlet(conc, size=n))
        sel.append(rng.dirichlet(conc, size=n0))
        lab.append(c if rng.random() < 0.8 else (c + 1) % k)
    return certify_scores(np.array(est), np.array(sel), np.array(lab) if labels else None,
                          sigma=sigma, radii=RADII).report


@pytest.fixture(scope="module")
def report() -> dict:
    return synthetic_report()


@pytest.fixture(scope="module")
def report_file(report, tmp_path_factory):
    path = tmp_path_factory.mktemp("summary") / "r.json"
    path.write_text(json.dumps(report))
    return path


# ---------------------------------------------------------------- independent reference


def as_radius(r):
    return None if r is None else (math.inf if r == "inf" else float(r))


def ref_accuracy(records, get_radius, r):
    labelled = [rec for rec in records if rec["correct"] is not None]
    hits = 0
    for rec in labelled:
        rad = as_radius(get_radius(rec))
        if rec["correct"] and rad is not None and rad >= r:
            hits += 1
    return hits / len(labelled)


def ref_mean_radius(records, get_radius):
    """Mean over labelled records: radius if correct and certified else 0; inf ones left out."""
    values, infs = [], 0
    for rec in records:
        if rec["correct"] is None:
            continue
        rad = as_radius(get_radius(rec))
        value = rad if (rec["correct"] and rad is not None) else 0.0
        if math.isinf(value):
            infs += 1
        else:
            values.append(value)
    return (sum(values) / len(values) if values else math.inf), infs


def conf_radius(measure, method, j):
    return lambda rec: rec["confidence"][measure][method]["radius"][j]


def label_radius(rec):
    return rec["label_certificate"]["radius"]


# ---------------------------------------------------------------- the numbers


def test_summary_json_matches_independent_recomputation(report, report_file):
    res = runner.invoke(app, ["summary", str(report_file), "--format", "json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)["reports"][0]
    recs = report["records"]
    labelled = [r for r in recs if r["correct"] is not None]
    assert out["smoothed_accuracy"] == pytest.approx(sum(r["correct"] for r in labelled) / len(labelled), abs=1e-12)
    assert out["clean_accuracy"] is None  # certify-scores has no model, so no noise-free pass
    assert out["abstain_rate"] == pytest.approx(sum(label_radius(r) is None for r in recs) / len(recs), abs=1e-12)
    assert out["label_certificate"]["certified_accuracy"] == pytest.approx(
        [ref_accuracy(recs, label_radius, r) for r in RADII], abs=1e-12)
    checked = 0
    for m in report["settings"]["measures"]:
        for meth in report["settings"]["methods"]:
            entry = out["confidence"][m][meth]
            for j, c in enumerate(report["settings"]["thresholds"][m]):
                assert entry["thresholds"][j] == c
                want = [ref_accuracy(recs, conf_radius(m, meth, j), r) for r in RADII]
                assert entry["certified_accuracy"][j] == pytest.approx(want, abs=1e-12), (m, meth, c)
                mean, infs = ref_mean_radius(recs, conf_radius(m, meth, j))
                assert entry["mean_radius"][j] == pytest.approx(mean, abs=1e-12)
                assert entry["inf_count"][j] == infs
                checked += 1
    assert checked == 2 * 3 * 5
    # the data must exercise the interesting cases, or this test proves little
    assert 0 < out["smoothed_accuracy"] < 1
    assert any(0 < a < 1 for e in out["confidence"]["score"].values() for row in e["certified_accuracy"] for a in row)


def test_summary_ignores_the_stored_summary_section(report, tmp_path):
    tampered = copy.deepcopy(report)
    tampered["summary"] = {"score": {"cdf-bj": [[1.0] * len(RADII)] * 5}}
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(report))
    b.write_text(json.dumps(tampered))
    out_a = json.loads(runner.invoke(app, ["summary", str(a), "-f", "json"]).stdout)["reports"][0]
    out_b = json.loads(runner.invoke(app, ["summary", str(b), "-f", "json"]).stdout)["reports"][0]
    assert out_a["confidence"] == out_b["confidence"]


def hand_report() -> dict:
    """Five records by hand: golden values below are counted on paper."""
    def rec(i, correct, label_r, score_rs):
        return {"index": i, "input": None, "label": None if correct is None else 1, "prediction": 1 if correct else 2,
                "correct": correct, "label_certificate": {"p_lower": 0.9, "radius": label_r},
                "confidence": {"score": {"mean": 0.8, "cdf-bj": {"lower_bounds": [0.7], "upper_bounds": [0.9],
                                                                 "radius": score_rs}}}}
    return {
        "schema": "onnxcert.report/1", "complete": True, "count": 5, "total": 5, "model": {"path": "m.onnx"},
        "settings": {"sigma": 0.5, "alpha": 0.001, "n0": 100, "n": 1000, "measures": ["score"],
                     "methods": ["cdf-bj"], "thresholds": {"score": [0.5, 0.9]}, "radii": [0.0, 0.3]},
        "records": [
            rec(0, True, 0.4, [0.3, None]),
            rec(1, True, None, [None, None]),
            rec(2, False, 0.9, [0.8, 0.2]),
            rec(3, True, 0.2, ["inf", 0.1]),
            rec(4, None, 0.7, [0.6, 0.6]),
        ],
        "summary": {},
    }


def test_hand_written_report_golden_values():
    s = summarize_report(parse_report(hand_report()), radii=[0.0, 0.3, 0.31, 5.0])
    # 4 labelled records: 0, 1, 3 correct
    assert s.labelled == 4 and s.count == 5
    assert s.smoothed_accuracy == 0.75 and s.clean_accuracy is None  # no clean_prediction in these records
    assert s.abstain_rate == 0.2  # record 1 of 5
    assert s.label.accuracy == (0.5, 0.25, 0.25, 0.0)  # correct & label radius: 0.4 (rec 0), 0.2 (rec 3)
    assert s.label.mean_radius == pytest.approx((0.4 + 0 + 0 + 0.2) / 4)
    c05 = s.curve("score", "cdf-bj", 0.5)
    assert c05.accuracy == (0.5, 0.5, 0.25, 0.25)  # rec 0 (0.3, counts at r = 0.3 exactly) and rec 3 (inf)
    assert c05.inf_count == 1 and c05.mean_radius == pytest.approx((0.3 + 0 + 0) / 3)
    c09 = s.curve("score", "cdf-bj", 0.9)
    assert c09.accuracy == (0.25, 0.0, 0.0, 0.0)  # only rec 3 (0.1); rec 2 is wrong
    assert c09.mean_radius == pytest.approx(0.1 / 4) and c09.inf_count == 0


def test_clean_accuracy_comes_from_the_noise_free_predictions():
    rep = hand_report()
    # labels: 1 for records 0-3, none for 4. Smoothed: 0, 1, 3 correct (0.75); noise-free: 0 and 2 (0.5)
    for r, clean in zip(rep["records"], [1, 9, 1, 9, 5]):
        r["clean_prediction"] = clean
    s = summarize_report(parse_report(rep))
    assert s.clean_accuracy == 0.5 and s.smoothed_accuracy == 0.75
    from onnxcert.reports.metrics import record_accuracies

    assert record_accuracies(rep["records"]) == (0.5, 0.75)
    rep["records"][1]["clean_prediction"] = None  # a labelled record without one: unknown
    assert summarize_report(parse_report(rep)).clean_accuracy is None
    rep["records"][1]["clean_prediction"] = "3"
    from onnxcert.errors import InputError

    with pytest.raises(InputError, match="'clean_prediction' must be an integer or null"):
        parse_report(rep)


def test_unlabelled_report_has_no_accuracy_but_mean_radius_over_all():
    rep = hand_report()
    for r in rep["records"]:
        r["correct"], r["label"] = None, None
    s = summarize_report(parse_report(rep))
    assert s.smoothed_accuracy is None and s.clean_accuracy is None and s.label.accuracy is None
    assert s.label.mean_radius == pytest.approx((0.4 + 0 + 0.9 + 0.2 + 0.7) / 5)


def test_any_radius_works_and_columns_follow_radii(report_file, report):
    res = runner.invoke(app, ["summary", str(report_file), "-f", "json", "--radii", "0.1234,0.2"])
    out = json.loads(res.stdout)
    assert out["radii"] == [0.1234, 0.2]
    got = out["reports"][0]["confidence"]["score"]["naive"]["certified_accuracy"][0]
    assert got == pytest.approx([ref_accuracy(report["records"], conf_radius("score", "naive", 0), r)
                                 for r in (0.1234, 0.2)], abs=1e-12)


# ---------------------------------------------------------------- formats and side by side


def test_two_reports_side_by_side_in_every_format(tmp_path, report):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(report))
    b.write_text(json.dumps(synthetic_report(sigma=0.5)))
    res = runner.invoke(app, ["summary", str(a), str(b), "-f", "csv"])
    assert res.exit_code == 0, res.output
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    names = {r["report"] for r in rows}
    assert names == {"a.json sigma=0.25", "b.json sigma=0.5"}
    assert len(rows) == 2 * (1 + 2 * 3 * 5)  # label row + every curve, per report
    row = next(r for r in rows if r["report"] == "a.json sigma=0.25" and r["measure"] == "margin"
               and r["method"] == "cdf-dkw" and float(r["threshold"]) == 0.4)
    want = ref_accuracy(report["records"], conf_radius("margin", "cdf-dkw", 2), 0.25)
    assert float(row["acc@0.25"]) == pytest.approx(want, abs=1e-12)

    md = runner.invoke(app, ["summary", str(a), str(b), "-f", "markdown"]).stdout
    assert "| a.json sigma=0.25 |" in md and "| b.json sigma=0.5 |" in md
    assert "### Label certificate" in md and "| report | method | c | r=0 |" in md

    text = runner.invoke(app, ["summary", str(a), str(b)]).stdout
    assert "a.json sigma=0.25" in text and "b.json sigma=0.5" in text and "mean R" in text


def test_same_model_two_sigmas_labelled_by_sigma(tmp_path, report):
    reps = [copy.deepcopy(report), synthetic_report(sigma=0.5)]
    for i, rep in enumerate(reps):
        rep["model"] = {"path": "/models/resnet.onnx", "sha256": "x"}
        (tmp_path / f"{i}.json").write_text(json.dumps(rep))
    out = json.loads(runner.invoke(app, ["summary", str(tmp_path / "0.json"), str(tmp_path / "1.json"),
                                         "-f", "json"]).stdout)
    assert [r["name"] for r in out["reports"]] == ["resnet.onnx sigma=0.25", "resnet.onnx sigma=0.5"]


def test_filters_and_bad_format(report_file):
    out = json.loads(runner.invoke(app, ["summary", str(report_file), "-f", "json", "--measures", "margin",
                                         "--methods", "cdf-bj"]).stdout)
    assert list(out["reports"][0]["confidence"]) == ["margin"]
    assert list(out["reports"][0]["confidence"]["margin"]) == ["cdf-bj"]
    for args in (["-f", "html"], ["--methods", "cdf-xx"], ["--radii", "a,b"], ["--radii", "-1"]):
        res = runner.invoke(app, ["summary", str(report_file), *args])
        assert res.exit_code == 2, (args, res.output)
        assert res.stderr.startswith("onnxcert: error: ") and res.stderr.count("\n") == 1


# ---------------------------------------------------------------- malformed reports


def _malformed(report):
    def drop_schema(r):
        del r["schema"]

    def wrong_schema(r):
        r["schema"] = "onnxcert.report/9"

    def short_radius(r):
        r["records"][2]["confidence"]["score"]["cdf-bj"]["radius"].pop()

    def string_radius(r):
        r["records"][0]["label_certificate"]["radius"] = "big"

    def negative_radius(r):
        r["records"][0]["confidence"]["margin"]["naive"]["radius"][0] = -0.5

    def no_records(r):
        r["records"] = []

    def no_measure(r):
        del r["records"][1]["confidence"]["margin"]

    def bad_correct(r):
        r["records"][1]["correct"] = "yes"

    def no_settings(r):
        del r["settings"]["radii"]

    for f in (drop_schema, wrong_schema, short_radius, string_radius, negative_radius, no_records, no_measure,
              bad_correct, no_settings):
        r = copy.deepcopy(report)
        f(r)
        yield f.__name__, json.dumps(r)
    yield "not_json", '{"schema": "onnxcert.report/1", '
    yield "a_list", "[1, 2]"


def test_malformed_reports_exit_2_with_one_line(report, tmp_path):
    for name, text in _malformed(report):
        path = tmp_path / f"{name}.json"
        path.write_text(text)
        res = runner.invoke(app, ["summary", str(path)])
        assert res.exit_code == 2, (name, res.output)
        assert res.stderr.startswith("onnxcert: error: ") and res.stderr.count("\n") == 1, (name, res.stderr)
        assert "Traceback" not in res.output
    res = runner.invoke(app, ["summary", str(tmp_path / "missing.json")])
    assert res.exit_code == 2 and "does not exist" in res.stderr


# ---------------------------------------------------------------- after a run


def test_print_run_summary_plain_off_a_terminal(report):
    buf = io.StringIO()
    print_run_summary(report, console=Console(file=buf, width=200))
    text = buf.getvalue()
    assert not any(ch in text for ch in "━│┃─╇")  # no box drawing off a terminal
    lines = text.splitlines()
    assert lines[0].startswith(f"{len(report['records'])} inputs, smoothed accuracy")
    label_row = next(line for line in lines if line.split()[:1] == ["label"])
    want = [ref_accuracy(report["records"], label_radius, r) for r in RADII]
    assert [float(v) for v in label_row.split()[1:1 + len(RADII)]] == pytest.approx(want, abs=5e-4)
    assert sum(line.strip().startswith("score >=") for line in lines) == 5


def test_certify_scores_prints_the_summary_on_stderr(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "s.npz", estimation=rng.dirichlet([8, 1, 1], size=(3, 1000)),
             selection=rng.dirichlet([8, 1, 1], size=(3, 20)), labels=np.array([0, 0, 1]))
    from onnxcert import cli  # noqa: F401  (registers certify-scores)

    res = runner.invoke(app, ["certify-scores", str(tmp_path / "s.npz"), "--sigma", "0.25",
                              "-o", str(tmp_path / "r.json")])
    assert res.exit_code == 0, res.output
    assert "smoothed accuracy 0.667" in res.stderr and "score >= 0.5" in res.stderr
    assert "clean accuracy" not in res.stderr  # no model, no noise-free pass
    assert res.stdout == ""


def test_print_run_summary_never_fails_a_run():
    buf = io.StringIO()
    print_run_summary({"schema": "onnxcert.report/1", "settings": hand_report()["settings"], "records": []},
                      console=Console(file=buf))
    assert buf.getvalue() == "no summary: report: the report holds no records\n"


def test_a_sequential_report_says_how_many_inputs_were_left_unevaluated(tmp_path):
    """run --sequential with the dataset stop certifies only the inputs that settled the gate:
    the summary must not read as if the accuracies covered the whole set (issue 12 leftover)."""
    rep = hand_report()
    rep["unevaluated"] = [5, 6, 7]
    path = tmp_path / "seq.json"
    path.write_text(json.dumps(rep))
    s = summarize_report(parse_report(rep))
    assert (s.count, s.unevaluated) == (5, 3)
    table = runner.invoke(app, ["summary", str(path)])
    assert table.exit_code == 0, table.output
    assert "5 (+3 unevaluated)" in table.stdout
    assert "3 input(s) unevaluated" in table.stdout and "over the evaluated inputs only" in table.stdout
    out = json.loads(runner.invoke(app, ["summary", str(path), "-f", "json"]).stdout)["reports"][0]
    assert out["unevaluated"] == 3 and out["count"] == 5
    path.with_name("plain.json").write_text(json.dumps(hand_report()))
    plain = runner.invoke(app, ["summary", str(path.with_name("plain.json"))])
    assert "unevaluated" not in plain.stdout
