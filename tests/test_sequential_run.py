"""`onnxcert run --gate RULES --sequential` (issue 12) end to end: sampling in looks, the report,
the dataset-level stop, resume, Ray, and agreement with fixed-n runs on the sample model.

The statistics (validity at the stopping look) are tested in test_sequential_stats.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import onnx_models as om
from cli_helpers import cli, error_line
from test_reliability import kill_after
from onnxcert.gate import Rule, evaluate_rules, load_rules
from onnxcert.runtime import open_classifier
from onnxcert.sampling import Sampler
from onnxcert.sequential import DatasetStop, cells_for, make_run
from onnxcert.stats.sequential import Cell

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "sample_models" / "digits_sigma0.25.onnx"
IMAGES = ROOT / "sample_models" / "digits_test"
# n = 4000: looks 1000, 2000, 4000 (K = 3); cdf-dkw and naive need no calibration
FAST = ("--n", "4000", "--n0", "50", "--methods", "naive,cdf-dkw", "--score-thresholds", "0.5,0.7",
        "--margin-thresholds", "0.2", "--radii", "0,0.25,0.5", "-q")
RULES = [{"measure": "score", "method": "cdf-dkw", "threshold": 0.7, "radius": 0.25, "min_accuracy": 0.5},
         {"measure": "label", "radius": 0.5, "min_accuracy": 0.4}]
NEW_RECORD_KEYS = {"samples", "stopped_at_look", "decisions"}


def load(path) -> dict:
    return json.loads(Path(path).read_text())


@pytest.fixture(scope="module")
def rules(tmp_path_factory):
    path = tmp_path_factory.mktemp("rules") / "rules.yaml"
    path.write_text(json.dumps(RULES))
    return path


def run(digits12, out, *extra):
    return cli("run", MODEL, digits12, *FAST, "-o", out, *extra)


# ---------------------------------------------------------------- the sampler: draws in any split


def pixel_logits(batch):
    return batch.reshape(batch.shape[0], 3, -1).mean(axis=2) * 8.0


X = np.array([0.7, 0.5, 0.3], np.float32).reshape(3, 1, 1) * np.ones((3, 6, 5), np.float32)


def test_estimation_draws_equal_one_fixed_draw_however_split():
    """Sample j's noise depends only on (seed, index, 1, j): the first n_k of a sequential run are
    a fixed run's first n_k, bit for bit (host path)."""
    s = Sampler(pixel_logits, n0=40, n=3000, seed=3, batch_size=256, prefetch=True)
    whole = s.sample(4, X, np.float32(0.5))
    c, k = s.select(4, X, np.float32(0.5))
    assert (c, k) == (whole.prediction, 3)
    draw = s.estimation(4, X, np.float32(0.5), c)
    parts = [draw(0, 1000), draw(1000, 2000), draw(2000, 3000)]
    np.testing.assert_array_equal(np.concatenate([p[0] for p in parts]), whole.score)
    np.testing.assert_array_equal(np.concatenate([p[1] for p in parts]), whole.margin)
    assert sum(p[2] for p in parts) == whole.votes
    # a draw that skips ahead, and one that goes back, still give samples start .. stop - 1
    np.testing.assert_array_equal(draw(2500, 2600)[0], whole.score[2500:2600])
    np.testing.assert_array_equal(draw(10, 20)[0], whole.score[10:20])


def test_device_path_draws_equal_one_draw(tmp_path):
    clf = open_classifier(om.channel_means(tmp_path / "m.onnx", gain=8.0), device="cpu")
    s = Sampler(clf, n0=40, n=1500, seed=3, batch_size=256, device_noise="on")
    whole = s.sample(1, X, np.float32(0.5))
    c, _ = s.select(1, X, np.float32(0.5))
    draw = s.estimation(1, X, np.float32(0.5), c)
    got = np.concatenate([draw(0, 700)[0], draw(700, 1500)[0]])
    # same counters; onnxruntime's float32 kernels may round a value at another batch position (test_fastpath)
    np.testing.assert_allclose(got, whole.score, rtol=0, atol=1e-6)


# ---------------------------------------------------------------- the report


def test_sequential_report_holds_the_plan_and_each_inputs_samples_and_decisions(digits12, rules, tmp_path):
    res = run(digits12, tmp_path / "r.json", "--gate", rules, "--sequential", "--no-dataset-stop")
    assert res.exit_code in (0, 1), res.output
    report = load(tmp_path / "r.json")
    seq = report["settings"]["sequential"]
    assert seq["looks"] == [1000, 2000, 4000] and seq["alpha_per_look"] == pytest.approx(0.001 / 3)
    assert seq["dataset_stop"] is False and "clopper-pearson" in seq["label_test"]
    assert report["unevaluated"] == [] and len(report["records"]) == 12
    for rec in report["records"]:
        assert rec["samples"] == seq["looks"][rec["stopped_at_look"] - 1]
        assert len(rec["decisions"]) == 2 and set(rec["decisions"]) <= {"certified", "futile", "undecided"}
        if "undecided" in rec["decisions"]:
            assert rec["samples"] == 4000  # an input stops only once every rule is decided
        # a certified decision is what the gate reads from the radii
        label_r = rec["label_certificate"]["radius"]
        assert (rec["decisions"][1] == "certified") == (label_r is not None and label_r >= 0.5)
    assert report["provenance"]["samples"] == sum(50 + r["samples"] for r in report["records"])
    assert sum(r["samples"] for r in report["records"]) < 12 * 4000  # it did stop early
    assert "gate " in res.output


def test_without_sequential_the_report_is_unchanged(digits12, rules, tmp_path):
    res = run(digits12, tmp_path / "r.json", "--gate", rules)
    assert res.exit_code in (0, 1), res.output
    report = load(tmp_path / "r.json")
    assert "unevaluated" not in report and "sequential" not in report["settings"]
    assert all(not NEW_RECORD_KEYS & set(rec) for rec in report["records"])
    assert report["provenance"]["samples"] == 12 * 4050
    assert "decided early" not in res.output


def test_one_look_gives_the_fixed_run_exactly(digits12, tmp_path):
    """n <= 1000: one look at alpha / 1; the records are the fixed run's plus the new keys."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(json.dumps(RULES))
    args = ("--n", "600", "--n0", "50", "--methods", "naive,cdf-dkw", "--score-thresholds", "0.5,0.7", "-q")
    assert cli("run", MODEL, digits12, *args, "-o", tmp_path / "f.json").exit_code == 0
    res = cli("run", MODEL, digits12, *args, "-o", tmp_path / "s.json", "--gate", rules, "--sequential",
              "--no-dataset-stop")
    assert res.exit_code in (0, 1), res.output
    fixed, seq = load(tmp_path / "f.json")["records"], load(tmp_path / "s.json")["records"]
    assert [{k: v for k, v in r.items() if k not in NEW_RECORD_KEYS} for r in seq] == fixed
    assert all(r["samples"] == 600 and r["stopped_at_look"] == 1 for r in seq)


@pytest.mark.parametrize("args, message", [
    (("--sequential",), "--sequential needs --gate RULES.yaml"),
    (("--no-dataset-stop",), "--no-dataset-stop only applies with --sequential"),
])
def test_bad_sequential_flags_are_one_line_exit_2(digits12, tmp_path, args, message):
    res = run(digits12, tmp_path / "r.json", *args)
    assert res.exit_code == 2 and message in error_line(res)
    assert not (tmp_path / "r.json").exists()


# ---------------------------------------------------------------- the dataset-level stop


def test_dataset_stop_gives_the_full_runs_verdict_and_lists_the_rest(digits12, tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text(json.dumps([{"measure": "label", "radius": 0.25, "min_accuracy": 0.25},
                                 {"max_abstain_rate": 0.9}]))
    full = run(digits12, tmp_path / "full.json", "--gate", rules, "--sequential", "--no-dataset-stop")
    early = run(digits12, tmp_path / "early.json", "--gate", rules, "--sequential")
    assert full.exit_code == early.exit_code == 0, early.output
    report = load(tmp_path / "early.json")
    m = len(report["records"])
    assert 0 < m < 12 and report["unevaluated"] == list(range(m, 12))
    assert report["settings"]["sequential"]["dataset_stop"] is True
    assert report["records"] == load(tmp_path / "full.json")["records"][:m]  # the same inputs, the same records
    assert "decided early, " + str(12 - m) + " input(s) unevaluated" in early.output
    # `onnxcert gate` on the written report reaches the same verdict
    again = cli("gate", tmp_path / "early.json", "--rules", rules)
    assert again.exit_code == 0 and "decided early" in again.output, again.output


def test_dataset_stop_on_a_failing_gate(digits12, tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text(json.dumps([{"measure": "label", "radius": 0.5, "min_accuracy": 0.99}]))
    full = run(digits12, tmp_path / "full.json", "--gate", rules, "--sequential", "--no-dataset-stop")
    early = run(digits12, tmp_path / "early.json", "--gate", rules, "--sequential")
    assert full.exit_code == early.exit_code == 1, early.output
    assert load(tmp_path / "early.json")["unevaluated"]  # one miss already settles 0.99 of 12


class _Rec:
    def __init__(self, correct, label_radius, radius=None):
        from onnxcert.stats.certify import ConfidenceCertificate, InputCertificate
        from onnxcert.stats.label import LabelCertificate

        conf = {"score": {"cdf-bj": ConfidenceCertificate("score", "cdf-bj", 0.9, (), (), (radius,))}}
        self.certificate = InputCertificate(0, LabelCertificate(1, 1, 0.9, label_radius), conf)
        self.correct = correct


def test_dataset_stop_counts():
    rules = [Rule(measure="score", method="cdf-bj", threshold=0.7, radius=0.25, min_accuracy=0.5)]
    stop = DatasetStop(rules, {"score": [0.7]}, total=10)
    for _ in range(4):
        stop.add(_Rec(True, 0.3, radius=0.3))
        assert not stop.decided
    stop.add(_Rec(True, 0.3, radius=0.3))
    assert stop.decided  # 5 of 10 certified: met whatever the rest do
    stop = DatasetStop(rules, {"score": [0.7]}, total=10)
    for i in range(7):
        stop.add(_Rec(i == 0, 0.3, radius=0.3))  # a wrong prediction is a miss
        assert stop.decided == (i == 6)  # 5 misses of 10: 5 hits are still possible; 6 misses settle it
    abstain = DatasetStop([Rule(max_abstain_rate=0.2)], {}, total=10)
    for _ in range(2):
        abstain.add(_Rec(True, None))
    assert not abstain.decided
    abstain.add(_Rec(True, None))
    assert abstain.decided  # 3 of 10 abstain > 0.2
    never = DatasetStop([Rule(measure="label", min_mean_radius=0.1)], {}, total=3)
    for _ in range(2):
        never.add(_Rec(True, 0.3))
        assert not never.decided
    never.add(_Rec(True, 0.3))
    assert never.decided


def test_rules_become_cells():
    assert cells_for(Rule(measure="label", radius=0.5, min_accuracy=0.5)) == (Cell("label", None, None, 0.5),)
    assert cells_for(Rule(measure="score", method="cdf-bj", threshold=0.7, radius=0.25, min_accuracy=0.5)) == \
        (Cell("score", "cdf-bj", 0.7, 0.25),)
    assert cells_for(Rule(max_abstain_rate=0.1)) == (Cell("label", None, None, 0.0),)
    assert cells_for(Rule(measure="label", min_mean_radius=0.1)) == ()
    run = make_run([Rule(measure="label", min_mean_radius=0.1)], 10_000, 0.001)
    assert run.to_last_look and run.plan.looks == (1000, 2000, 4000, 8000, 10000)


def test_gate_counts_unevaluated_inputs_as_not_certified(digits12, rules, tmp_path):
    res = run(digits12, tmp_path / "r.json", "--gate", rules, "--sequential", "--no-dataset-stop")
    report = load(tmp_path / "r.json")
    base = evaluate_rules(report, load_rules(rules))
    acc = base.checks[1].measured
    report["unevaluated"] = list(range(12, 24))  # as if 12 more inputs were left out
    got = evaluate_rules(report, load_rules(rules))
    assert got.checks[1].measured == pytest.approx(acc / 2) and got.unevaluated == 12
    assert res.exit_code == base.exit_code


# ---------------------------------------------------------------- resume and Ray


def test_interrupted_then_resumed_equals_uninterrupted(digits12, rules, tmp_path, monkeypatch):
    args = ("--gate", rules, "--sequential", "--no-dataset-stop")
    whole = run(digits12, tmp_path / "a.json", *args)
    assert whole.exit_code in (0, 1), whole.output
    kill_after(monkeypatch, 5)
    stopped = run(digits12, tmp_path / "b.json", *args)
    assert stopped.exit_code == 130, stopped.output
    monkeypatch.undo()
    resumed = run(digits12, tmp_path / "b.json", *args, "--resume")
    assert resumed.exit_code == whole.exit_code, resumed.output
    a, b = load(tmp_path / "a.json"), load(tmp_path / "b.json")
    assert b["records"] == a["records"] and b["settings"] == a["settings"]
    assert b["provenance"]["records_from_journal"] == 5
    # the journal of a fixed-n run cannot be resumed as a sequential one
    res = run(digits12, tmp_path / "b.json", "--resume", "--force")
    assert res.exit_code == 2 and "sequential" in error_line(res)


def test_resume_with_dataset_stop_stops_where_the_first_run_would(digits12, tmp_path, monkeypatch):
    rules = tmp_path / "rules.yaml"
    rules.write_text(json.dumps([{"measure": "label", "radius": 0.25, "min_accuracy": 0.5}]))
    whole = run(digits12, tmp_path / "a.json", "--gate", rules, "--sequential")
    kill_after(monkeypatch, 2)
    assert run(digits12, tmp_path / "b.json", "--gate", rules, "--sequential").exit_code == 130
    monkeypatch.undo()
    resumed = run(digits12, tmp_path / "b.json", "--gate", rules, "--sequential", "--resume")
    assert resumed.exit_code == whole.exit_code, resumed.output
    a, b = load(tmp_path / "a.json"), load(tmp_path / "b.json")
    assert b["records"] == a["records"] and b["unevaluated"] == a["unevaluated"]


@pytest.mark.slow
def test_ray_gives_the_local_records(digits12, rules, tmp_path):
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'onnxcert[ray]')")
    import logging

    for stop in ("--no-dataset-stop", "--dataset-stop"):
        local = run(digits12, tmp_path / f"l{stop}.json", "--gate", rules, "--sequential", stop)
        assert local.exit_code in (0, 1), local.output
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    try:
        for stop in ("--no-dataset-stop", "--dataset-stop"):
            res = run(digits12, tmp_path / f"r{stop}.json", "--gate", rules, "--sequential", stop,
                      "--backend", "ray", "--workers", "2")
            assert res.exit_code in (0, 1), res.output
            a, b = load(tmp_path / f"l{stop}.json"), load(tmp_path / f"r{stop}.json")
            assert b["records"] == a["records"] and b["unevaluated"] == a["unevaluated"]
    finally:
        ray.shutdown()


# ---------------------------------------------------------------- agreement with fixed n (sample model)


AGREE_N = 10_000  # looks 1000, 2000, 4000, 8000, 10000
AGREE_RULES = [
    [{"measure": "score", "method": "cdf-bj", "threshold": 0.7, "radius": 0.25, "min_accuracy": 0.6},
     {"measure": "label", "radius": 0.5, "min_accuracy": 0.5}],
    [{"measure": "score", "method": "cdf-bj", "threshold": 0.5, "radius": 0.5, "min_accuracy": 0.6}],
    [{"measure": "label", "radius": 0.25, "min_accuracy": 0.9}, {"max_abstain_rate": 0.1}],
]


def _certified(record: dict, rule: dict) -> bool:
    if "radius" not in rule:
        return record["label_certificate"]["radius"] is not None
    if rule["measure"] == "label":
        r = record["label_certificate"]["radius"]
    else:
        r = record["confidence"]["score"]["cdf-bj"]["radius"][[0.5, 0.7].index(rule["threshold"])]
    return r is not None and (r == "inf" or r >= rule["radius"])


@pytest.mark.slow
def test_sequential_agrees_with_fixed_n_on_the_sample_model(tmp_path):
    """All 250 held-out digits at n = 10,000: every gate verdict as at fixed n (with and without the
    dataset-level stop), and >= 98% of per-input decisions equal to the fixed-n certificate."""
    from onnxcert.api import certify_model

    common = dict(n=AGREE_N, methods=["cdf-bj"], thresholds={"score": [0.5, 0.7]}, radii=[0.25, 0.5])
    fixed = certify_model(MODEL, IMAGES, **common).report
    for i, rules in enumerate(AGREE_RULES):
        path = tmp_path / f"rules{i}.yaml"
        path.write_text(json.dumps(rules))
        want = evaluate_rules(fixed, load_rules(path)).passed
        for stop in (False, True):
            seq = certify_model(MODEL, IMAGES, gate=path, sequential=True, dataset_stop=stop, **common).report
            assert evaluate_rules(seq, load_rules(path)).passed == want, (rules, stop)
            if stop:
                continue
            assert len(seq["records"]) == 250
            for j, rule in enumerate(rules):
                got = [r["decisions"][j] == "certified" for r in seq["records"]]
                ref = [_certified(r, rule) for r in fixed["records"]]
                assert got == [_certified(r, rule) for r in seq["records"]]  # decisions match the radii
                assert sum(a == b for a, b in zip(got, ref)) >= 0.98 * 250, rule
            mean = np.mean([r["samples"] for r in seq["records"]])
            assert mean < AGREE_N / 2  # and it stopped early on most inputs
