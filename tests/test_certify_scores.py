"""`onnxcert certify-scores`: the report format of the contract, and one-line errors."""

import csv
import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

import onnxcert
from onnxcert.cli import app

runner = CliRunner()



@pytest.fixture()
def scores(tmp_path):
    rng = np.random.default_rng(0)
    est = rng.dirichlet([12, 1, 1], size=(3, 1000)).astype(np.float32)
    sel = rng.dirichlet([12, 1, 1], size=(3, 20)).astype(np.float32)
    path = tmp_path / "s.npz"
    np.savez(path, estimation=est, selection=sel, labels=np.array([0, 1, 0]))
    return path


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_report_json_follows_the_contract(scores, tmp_path):
    out = tmp_path / "r.json"
    res = run("certify-scores", scores, "--sigma", "0.25", "--seed", "7", "-o", out)
    assert res.exit_code == 0, res.output
    rep = json.loads(out.read_text())
    assert rep["schema"] == "onnxcert.report/1" and rep["model"] is None and rep["complete"] is True
    s = rep["settings"]
    assert (s["sigma"], s["alpha"], s["n0"], s["n"], s["seed"]) == (0.25, 0.001, 20, 1000, 7)
    assert s["methods"] == ["naive", "cdf-dkw", "cdf-bj"] and s["measures"] == ["score", "margin"]
    assert "[0, 1] pixel space" in s["noise"]
    assert len(rep["records"]) == 3
    r0 = rep["records"][0]
    assert r0["index"] == 0 and r0["label"] == 0 and r0["prediction"] == 0 and r0["correct"] is True
    assert rep["records"][1]["correct"] is False
    for m in ("score", "margin"):
        entry = r0["confidence"][m]
        assert isinstance(entry["mean"], float)
        for meth in s["methods"]:
            assert len(entry[meth]["lower_bounds"]) == len(s["radii"]) == len(entry[meth]["upper_bounds"])
            assert len(entry[meth]["radius"]) == len(s["thresholds"][m])
    # summary: [[accuracy per radius] per threshold], recomputed here from the records
    for m in ("score", "margin"):
        for meth in s["methods"]:
            table = rep["summary"][m][meth]
            for j in range(len(s["thresholds"][m])):
                for i, r in enumerate(s["radii"]):
                    hits = 0
                    for rec in rep["records"]:
                        rad = rec["confidence"][m][meth]["radius"][j]
                        rad = math.inf if rad == "inf" else rad
                        hits += bool(rec["correct"]) and rad is not None and rad >= r
                    assert table[j][i] == pytest.approx(hits / 3)


def test_report_csv_columns(scores, tmp_path):
    out = tmp_path / "r.csv"
    assert run("certify-scores", scores, "--sigma", "0.25", "-o", out).exit_code == 0
    rows = list(csv.reader(out.open()))
    assert rows[0][:6] == ["index", "input", "label", "prediction", "correct", "label_radius"]
    assert "score_cdf-bj_radius@0.9" in rows[0] and "margin_naive_radius@0" in rows[0]
    assert len(rows) == 4 and all(len(r) == len(rows[0]) for r in rows)


def test_sampled_certificates_are_finite_but_inf_and_null_are_written_as_the_contract_says(tmp_path):
    # from samples the bound tends to a as R grows, and thresholds lie in (a, b): a constant
    # margin of 0.8 certifies c = -0.999 at a finite radius, never "inf"
    rep = onnxcert.certify_scores(
        np.tile([0.9, 0.1], (1, 200, 1)), np.tile([0.9, 0.1], (1, 10, 1)), sigma=0.25,
        measures=["margin"], thresholds={"margin": [-0.999]}, methods=["cdf-dkw"],
    ).report
    radius = rep["records"][0]["confidence"]["margin"]["cdf-dkw"]["radius"][0]
    assert isinstance(radius, float) and radius > 0
    # an unbounded radius (exact probabilities, Theorem 2) and an abstention, written out
    from onnxcert.report import Record, to_csv
    from onnxcert.stats import ConfidenceCertificate, InputCertificate, LabelCertificate

    cert = InputCertificate(0, LabelCertificate(5, 10, 0.3, None), {"score": {"naive": ConfidenceCertificate(
        "score", "naive", 0.9, (0.8,), (0.95,), (math.inf, None))}})
    d = Record(0, None, 0, cert).to_dict()
    assert d["confidence"]["score"]["naive"]["radius"] == ["inf", None]
    assert d["label_certificate"]["radius"] is None
    settings = {"measures": ["score"], "methods": ["naive"], "thresholds": {"score": [0.5, 0.9]}}
    header, row = (line.split(",") for line in to_csv({"settings": settings, "records": [d]}).splitlines())
    cells = dict(zip(header, row))
    assert [cells["score_naive_radius@0.5"], cells["score_naive_radius@0.9"]] == ["inf", ""] and json.loads(json.dumps(d))["confidence"]["score"]["naive"]["radius"][0] == "inf"


def test_python_api_writes_nothing_unless_asked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(1)
    result = onnxcert.certify_scores(rng.dirichlet([5, 1], size=300), rng.dirichlet([5, 1], size=10), sigma=0.5)
    assert result.records[0].prediction == 0 and list(tmp_path.iterdir()) == []
    with pytest.raises(AttributeError):
        result.records[0].index = 3  # frozen


def test_existing_output_needs_force(scores, tmp_path):
    out = tmp_path / "r.json"
    out.write_text("precious")
    res = run("certify-scores", scores, "--sigma", "0.25", "-o", out)
    assert res.exit_code == 2 and "--force" in res.output and out.read_text() == "precious"
    assert run("certify-scores", scores, "--sigma", "0.25", "-o", out, "--force").exit_code == 0


def _bad(tmp_path, **arrays):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    return path


GOOD_EST = np.full((2, 50, 3), 1 / 3)
GOOD_SEL = np.full((2, 5, 3), 1 / 3)


@pytest.mark.parametrize("case,args,needle", [
    ("missing", [], "does not exist"),
    ("not_npz", [], "not a readable .npz"),
    ("no_selection", [], "no 'selection'"),
    ("rank", [], "must be [n, k] or [B, n, k]"),
    ("nan", [], "NaN or inf"),
    ("k_mismatch", [], "classes"),
    ("b_mismatch", [], "inputs"),
    ("labels", [], "labels must lie in"),
    ("one_class", [], "at least 2 classes"),
    ("empty", [], "no inputs"),
    ("alpha", ["--alpha", "1.5"], "alpha must be in (0, 1)"),
    ("alpha0", ["--alpha", "0"], "alpha must be in (0, 1)"),
    ("sigma", ["--sigma", "-1"], "sigma must be > 0"),
    ("sigma0", ["--sigma", "0"], "sigma must be > 0"),
    ("n", ["--n", "10"], "--n is 10"),
    ("n0", ["--n0", "3"], "--n0 is 3"),
    ("method", ["--methods", "cdf-xyz"], "must be one of"),
    ("threshold", ["--score-thresholds", "1.5"], "must lie in (0, 1)"),
    ("output_suffix", ["-o", "r.txt"], "must end in .json or .csv"),
    ("text_numbers", ["--radii", "a,b"], "comma-separated numbers"),
])
def test_bad_input_gets_one_line_and_nonzero_exit(tmp_path, case, args, needle):
    files = {
        "missing": tmp_path / "nope.npz",
        "not_npz": tmp_path / "x.npz",
        "no_selection": lambda: _bad(tmp_path, estimation=GOOD_EST),
        "rank": lambda: _bad(tmp_path, estimation=np.ones(5), selection=np.ones(5)),
        "nan": lambda: _bad(tmp_path, estimation=np.where(np.arange(150).reshape(1, 50, 3) == 70, np.nan, 0.3),
                            selection=GOOD_SEL[:1]),
        "k_mismatch": lambda: _bad(tmp_path, estimation=GOOD_EST, selection=np.full((2, 5, 4), 0.25)),
        "b_mismatch": lambda: _bad(tmp_path, estimation=GOOD_EST, selection=GOOD_SEL[:1]),
        "labels": lambda: _bad(tmp_path, estimation=GOOD_EST, selection=GOOD_SEL, labels=np.array([0, 7])),
        "one_class": lambda: _bad(tmp_path, estimation=np.ones((50, 1)), selection=np.ones((5, 1))),
        "empty": lambda: _bad(tmp_path, estimation=np.ones((0, 50, 3)), selection=np.ones((0, 5, 3))),
    }
    if case == "not_npz":
        (tmp_path / "x.npz").write_bytes(b"garbage")
    spec = files.get(case, lambda: _bad(tmp_path, estimation=GOOD_EST, selection=GOOD_SEL))
    path = spec() if callable(spec) else spec
    extra = ["--sigma", "0.25"] if "--sigma" not in args else []
    out = ["-o", tmp_path / "out.json"] if "-o" not in args else []
    res = run("certify-scores", path, *extra, *args, *out)
    assert res.exit_code != 0
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("onnxcert: error:"), res.output
    assert needle in lines[0], lines[0]
    assert "Traceback" not in res.output
    assert not (tmp_path / "out.json").exists()


def test_missing_sigma_is_a_clear_error(scores, tmp_path):
    res = run("certify-scores", scores, "-o", tmp_path / "r.json")
    assert res.exit_code == 2 and "sigma is required" in res.output


def test_html_page_from_scores_and_its_path_checked_before_any_work(scores, tmp_path):
    """certify-scores --html writes the same self-contained page as run --html (no thumbnails:
    there are no images); a bad page path is refused before a report is written."""
    out, page = tmp_path / "r.json", tmp_path / "r.html"
    res = run("certify-scores", scores, "--sigma", "0.25", "-o", out, "--html", tmp_path / "r.txt")
    assert res.exit_code == 2 and "must end in .html" in res.output and not out.exists()
    res = run("certify-scores", scores, "--sigma", "0.25", "-o", out, "--html", page, "-q")
    assert res.exit_code == 0, res.output
    html = page.read_text()
    assert html.startswith("<!DOCTYPE html>") and "<script" not in html
    assert "Label certificate" in html and "certify-scores" in html
    res = run("certify-scores", scores, "--sigma", "0.25", "-o", tmp_path / "s.json", "--html", page, "-q")
    assert res.exit_code == 2 and "exists; pass --force" in res.output
