"""Long runs (issue 8): the journal, --resume, SIGINT/SIGTERM, overwrites; and `run --gate` (issue 6).

The central property: because input i's noise depends only on (seed, i), a run interrupted and
resumed gives the same report, record for record, as a run that was never interrupted.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper

import onnx_models as om
from cli_helpers import cli, error_line
import onnxcert.cli  # noqa: F401  (registers every command)
from onnxcert import journal as journal_mod
from onnxcert import noise
from onnxcert import pipeline
from onnxcert.journal import FORMAT, read_journal

SHAPE = (3, 6, 5)
FAST = ("--n0", "10", "--n", "60", "--methods", "naive,cdf-dkw")


def load(path) -> dict:
    return json.loads(Path(path).read_text())


def lines(path) -> list[dict]:
    return [json.loads(ln) for ln in Path(path).read_text().splitlines()]


@pytest.fixture
def case(tmp_path):
    """A model with float-valued outputs (so records are sensitive to every bit of the noise), and
    eight labelled inputs."""
    model = om.channel_means(tmp_path / "m.onnx", gain=6.0)
    x = np.random.default_rng(0).random((8, *SHAPE)).astype(np.float32)
    np.savez(tmp_path / "x.npz", x=x, y=np.arange(8) % 3)
    return model, tmp_path / "x.npz"


def run(model, inputs, out, *extra):
    return cli("run", model, inputs, "--sigma", 0.25, *FAST, "-o", out, *extra)


def kill_after(monkeypatch, count: int, signum=signal.SIGTERM):
    """Send ``signum`` to this process right after the ``count``-th record reaches the journal."""
    original = journal_mod.JournalWriter.record
    seen = []

    def record(self, rec, kind):
        original(self, rec, kind)
        seen.append(rec.index)
        if len(seen) == count:
            os.kill(os.getpid(), signum)

    monkeypatch.setattr(journal_mod.JournalWriter, "record", record)


# ---------------------------------------------------------------- interrupt, then resume


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_interrupted_then_resumed_equals_uninterrupted(tmp_path, case, monkeypatch, signum):
    model, inputs = case
    whole = run(model, inputs, tmp_path / "a.json", "-o", tmp_path / "a.csv")
    assert whole.exit_code == 0, whole.output

    before = signal.getsignal(signum)
    kill_after(monkeypatch, 3, signum)
    stopped = run(model, inputs, tmp_path / "b.json", "-o", tmp_path / "b.csv")
    assert stopped.exit_code == 130, stopped.output
    name = signal.Signals(signum).name
    assert re.fullmatch(rf"onnxcert: error: stopped by {name}: 3 of 8 input\(s\) done, kept in '.*b\.jsonl'; "
                        r"run the same command with --resume to continue", error_line(stopped))
    assert signal.getsignal(signum) is before  # handlers only during the run
    assert not (tmp_path / "b.json").exists() and not (tmp_path / "b.csv").exists()
    assert sorted(read_journal(tmp_path / "b.jsonl").records) == [0, 1, 2]

    monkeypatch.undo()
    resumed = run(model, inputs, tmp_path / "b.json", "-o", tmp_path / "b.csv", "--resume")
    assert resumed.exit_code == 0, resumed.output
    a, b = load(tmp_path / "a.json"), load(tmp_path / "b.json")
    assert b["records"] == a["records"] and b["summary"] == a["summary"] and b["settings"] == a["settings"]
    assert b["complete"] is True and b["count"] == b["total"] == 8
    assert b["provenance"]["records_from_journal"] == 3
    assert (tmp_path / "b.csv").read_text() == (tmp_path / "a.csv").read_text()
    assert "(+3 from" in resumed.output


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_real_process_stops_cleanly_on_a_signal(tmp_path, signum):
    """The console command, signalled while it works through 1000 inputs: exit 130, one line,
    no report, and a journal of whole lines that --resume accepts."""
    model = om.constant(tmp_path / "c.onnx", [0.7, 0.2, 0.1], shape=(3, 4, 4))
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((1000, 3, 4, 4)).astype(np.float32))
    journal = tmp_path / "r.jsonl"
    cmd = [sys.executable, "-m", "onnxcert.cli", "run", str(model), str(tmp_path / "x.npy"), "--sigma", "0.25",
           "--n0", "10", "--n", "2000", "--batch-size", "20", "--methods", "naive", "--measures", "score",
           "-o", str(tmp_path / "r.json"), "-q"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (journal.exists() and journal.read_text().count('"record"') >= 1):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no record within 120 s"
            time.sleep(0.01)
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    errors = [ln for ln in err.splitlines() if ln.startswith("onnxcert: error:")]
    assert len(errors) == 1 and "--resume" in errors[0], err
    done = int(re.search(r"(\d+) of 1000 input\(s\) done", errors[0]).group(1))
    assert 1 <= done < 1000
    assert not (tmp_path / "r.json").exists()
    state = read_journal(journal)
    assert sorted(state.records) == list(range(done))
    assert journal.read_bytes().endswith(b"\n")


def test_torn_last_line_is_dropped_on_resume(tmp_path, case):
    model, inputs = case
    assert run(model, inputs, tmp_path / "a.json").exit_code == 0
    journal = tmp_path / "a.jsonl"
    text = journal.read_text().splitlines(keepends=True)
    # keep the header, the output kind and 4 records; then half of the 5th, as a crash would leave it
    journal.write_text("".join(text[:6]) + text[6][:len(text[6]) // 2])
    (tmp_path / "a.json").rename(tmp_path / "whole.json")
    resumed = run(model, inputs, tmp_path / "a.json", "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert load(tmp_path / "a.json")["records"] == load(tmp_path / "whole.json")["records"]
    assert load(tmp_path / "a.json")["provenance"]["records_from_journal"] == 4
    assert len(lines(journal)) == 2 + 8  # header, output kind, 8 records; the torn half is gone


def test_journal_format(tmp_path, case):
    model, inputs = case
    assert run(model, inputs, tmp_path / "r.json", "--seed", 5).exit_code == 0
    events = lines(tmp_path / "r.jsonl")
    header = events[0]
    assert header["journal"] == FORMAT
    ident = header["identity"]
    assert ident["model"]["sha256"] == load(tmp_path / "r.json")["model"]["sha256"]
    assert ident["settings"]["seed"] == 5 and ident["settings"]["sigma"] == 0.25 and ident["settings"]["n"] == 60
    assert ident["settings"]["batch_size"] == load(tmp_path / "r.json")["settings"]["batch_size"]
    assert ident["preprocess"]["size"] == [6, 5] and ident["inputs"]["count"] == 8
    assert ident["runtime"]["provider"] == "CPUExecutionProvider"
    assert events[1] == {"output_kind": "logits"}
    report = load(tmp_path / "r.json")
    assert [e["record"] for e in events[2:]] == report["records"]
    assert all(e["n"] == 60 and 0 <= e["votes"] <= 60 for e in events[2:])


# ---------------------------------------------------------------- what --resume refuses


def _retrained_model(tmp_path):
    om.channel_means(tmp_path / "m.onnx", gain=7.0)  # same path, same graph, other weights
    return []


def _different_inputs(tmp_path):
    z = np.load(tmp_path / "x.npz")
    np.savez(tmp_path / "x.npz", x=z["x"][:7], y=z["y"][:7])
    return []


@pytest.mark.parametrize("change, differs", [
    (lambda d: ["--sigma", "0.5"], "settings.sigma"),
    (lambda d: ["--n", "61"], "settings.n"),
    (lambda d: ["--seed", "1"], "settings.seed"),
    (lambda d: ["--methods", "naive"], "settings.methods"),
    (lambda d: ["--batch-size", "7"], "settings.batch_size"),
    (lambda d: ["--score-thresholds", "0.55"], "settings.thresholds.score"),
    (lambda d: ["-c", _yaml(d, "preprocess:\n  mean: [0.1]\n")], "preprocess.mean"),
    (lambda d: _retrained_model(d), "model.sha256"),
    (_different_inputs, "inputs.count"),
])
def test_resume_refuses_a_different_run(tmp_path, case, monkeypatch, change, differs):
    model, inputs = case
    kill_after(monkeypatch, 2)
    assert run(model, inputs, tmp_path / "r.json").exit_code == 130
    monkeypatch.undo()
    journal_before = (tmp_path / "r.jsonl").read_bytes()
    extra = change(tmp_path)
    res = cli("run", model, inputs, "--sigma", 0.25, *FAST, "-o", tmp_path / "r.json", "--resume", *extra)
    assert res.exit_code == 2, res.output
    line = error_line(res)
    assert f"cannot resume from '{tmp_path / 'r.jsonl'}': {differs} differs (journal " in line, line
    assert (tmp_path / "r.jsonl").read_bytes() == journal_before
    assert not (tmp_path / "r.json").exists()


def test_resume_refuses_a_journal_drawn_with_another_noise_generator(tmp_path, case, monkeypatch):
    # a journal from before issue 17's host noise: its records came from another stream
    model, inputs = case
    kill_after(monkeypatch, 2)
    monkeypatch.setattr(pipeline, "noise_generator", lambda device: "numpy-pcg64-ziggurat")
    assert run(model, inputs, tmp_path / "r.json").exit_code == 130
    monkeypatch.undo()
    res = cli("run", model, inputs, "--sigma", 0.25, *FAST, "-o", tmp_path / "r.json", "--resume")
    assert res.exit_code == 2, res.output
    this_run = noise.host_generator()  # the compiled ziggurat, or the NumPy Box-Muller without it
    assert f"noise_generator differs (journal \"numpy-pcg64-ziggurat\", this run \"{this_run}\")" \
        in error_line(res)


@pytest.mark.skipif(not noise.compiled(), reason="onnxcert._kernels is not built")
@pytest.mark.parametrize("first, then", [(noise.BOX_MULLER, noise.ZIGGURAT), (noise.ZIGGURAT, noise.BOX_MULLER)])
def test_resume_refuses_a_journal_of_the_other_host_generator(tmp_path, case, monkeypatch, first, then):
    # the two host generators (ONNXCERT_HOST_NOISE) draw different streams: a journal of one is
    # never continued by the other, and each is resumed by itself
    model, inputs = case
    monkeypatch.setenv(noise.HOST_NOISE_ENV, first)
    whole = run(model, inputs, tmp_path / "a.json")
    assert whole.exit_code == 0, whole.output
    assert load(tmp_path / "a.json")["provenance"]["noise_generator"] == first
    kill_after(monkeypatch, 2)
    assert run(model, inputs, tmp_path / "r.json").exit_code == 130
    monkeypatch.undo()
    journal_before = (tmp_path / "r.jsonl").read_bytes()
    monkeypatch.setenv(noise.HOST_NOISE_ENV, then)
    res = cli("run", model, inputs, "--sigma", 0.25, *FAST, "-o", tmp_path / "r.json", "--resume")
    assert res.exit_code == 2, res.output
    assert f"noise_generator differs (journal \"{first}\", this run \"{then}\")" in error_line(res)
    assert (tmp_path / "r.jsonl").read_bytes() == journal_before
    monkeypatch.setenv(noise.HOST_NOISE_ENV, first)
    res = cli("run", model, inputs, "--sigma", 0.25, *FAST, "-o", tmp_path / "r.json", "--resume")
    assert res.exit_code == 0, res.output
    assert load(tmp_path / "r.json")["records"] == load(tmp_path / "a.json")["records"]


@pytest.mark.parametrize("value", ["numpy", "sfc64-ziggurat"])
def test_an_unknown_host_generator_is_one_error_line(tmp_path, case, monkeypatch, value):
    model, inputs = case
    monkeypatch.setenv(noise.HOST_NOISE_ENV, value)
    res = run(model, inputs, tmp_path / "r.json")
    assert res.exit_code == 2, res.output
    assert f"ONNXCERT_HOST_NOISE='{value}' is not a host noise generator" in error_line(res)
    assert not (tmp_path / "r.json").exists() and not (tmp_path / "r.jsonl").exists()


def test_resume_refuses_a_journal_certified_with_another_band_algorithm(tmp_path, case, monkeypatch):
    # a journal whose cdf-bj records came from an older band calibration (issue 15, items 8-9)
    model, inputs = case
    bj = ("--n0", "10", "--n", "60", "--methods", "cdf-bj")
    kill_after(monkeypatch, 2)
    monkeypatch.setattr(pipeline, "band_algorithm", lambda: "bj1-old")
    assert cli("run", model, inputs, "--sigma", 0.25, *bj, "-o", tmp_path / "r.json").exit_code == 130
    monkeypatch.undo()
    journal_before = (tmp_path / "r.jsonl").read_bytes()
    res = cli("run", model, inputs, "--sigma", 0.25, *bj, "-o", tmp_path / "r.json", "--resume")
    assert res.exit_code == 2, res.output
    assert 'band_algorithm differs (journal "bj1-old", this run "bj2-' in error_line(res)
    assert (tmp_path / "r.jsonl").read_bytes() == journal_before


def _yaml(d: Path, text: str) -> Path:
    (d / "c.yaml").write_text(text)
    return d / "c.yaml"


@pytest.mark.parametrize("content, message", [
    ("", "is not an onnxcert journal \\(empty\\)"),
    ('{"some": "json"}\n', "is not an onnxcert journal"),
    ("not json at all\n", "line 1 is not JSON"),
])
def test_resume_refuses_a_file_that_is_not_a_journal(tmp_path, case, content, message):
    model, inputs = case
    (tmp_path / "r.jsonl").write_text(content)
    res = run(model, inputs, tmp_path / "r.json", "--resume")
    assert res.exit_code == 2 and re.search(message, error_line(res)), res.output
    assert "drop --resume and pass --force" in error_line(res)


def test_resume_refuses_a_corrupt_entry(tmp_path, case, monkeypatch):
    model, inputs = case
    kill_after(monkeypatch, 3)
    assert run(model, inputs, tmp_path / "r.json").exit_code == 130
    monkeypatch.undo()
    text = (tmp_path / "r.jsonl").read_text().splitlines(keepends=True)
    text[3] = '{"record": {"index": 1}}\n'
    (tmp_path / "r.jsonl").write_text("".join(text))
    res = run(model, inputs, tmp_path / "r.json", "--resume")
    assert res.exit_code == 2 and "line 4 is not a journal entry" in error_line(res)


def test_resume_without_a_journal_starts_from_the_first_input(tmp_path, case):
    model, inputs = case
    res = run(model, inputs, tmp_path / "r.json", "--resume")
    assert res.exit_code == 0, res.output
    assert load(tmp_path / "r.json")["count"] == 8 and "no journal at" in res.output


def test_an_earlier_journal_needs_resume_or_force(tmp_path, case, monkeypatch):
    model, inputs = case
    kill_after(monkeypatch, 2)
    assert run(model, inputs, tmp_path / "r.json").exit_code == 130
    monkeypatch.undo()
    res = run(model, inputs, tmp_path / "r.json")
    assert res.exit_code == 2 and "pass --resume to continue that run, or --force" in error_line(res)
    forced = run(model, inputs, tmp_path / "r.json", "--force", "--seed", 9)
    assert forced.exit_code == 0, forced.output
    assert lines(tmp_path / "r.jsonl")[0]["identity"]["settings"]["seed"] == 9  # started over
    assert load(tmp_path / "r.json")["provenance"]["records_from_journal"] == 0


def test_resume_does_not_overwrite_a_finished_report_without_force(tmp_path, case):
    model, inputs = case
    assert run(model, inputs, tmp_path / "r.json").exit_code == 0
    before = (tmp_path / "r.json").read_text()
    res = run(model, inputs, tmp_path / "r.json", "--resume")
    assert res.exit_code == 2 and "exists; pass --force" in error_line(res)
    assert (tmp_path / "r.json").read_text() == before
    again = run(model, inputs, tmp_path / "r.json", "--resume", "--force")
    assert again.exit_code == 0, again.output
    assert load(tmp_path / "r.json")["records"] == json.loads(before)["records"]
    assert load(tmp_path / "r.json")["provenance"]["records_from_journal"] == 8


def test_a_run_that_fails_before_any_input_leaves_no_journal(tmp_path, case):
    model, _ = case
    np.save(tmp_path / "wrong.npy", np.zeros((2, 3, 4, 4), np.float32))  # not the model's [3, 6, 5]
    res = run(model, tmp_path / "wrong.npy", tmp_path / "r.json")
    assert res.exit_code == 2, res.output
    assert not (tmp_path / "r.jsonl").exists() and not (tmp_path / "r.json").exists()


def _nan_for_dark_inputs(path: Path) -> Path:
    """scores = log(channel means - 0.5): finite for bright inputs, NaN for dark ones."""
    nodes = [helper.make_node("ReduceMean", ["input"], ["m"], axes=[2, 3], keepdims=0),
             helper.make_node("Sub", ["m", "half"], ["d"]),
             helper.make_node("Log", ["d"], ["scores"])]
    graph = helper.make_graph(nodes, "nan", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", *SHAPE])],
                              [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 3])],
                              [helper.make_tensor("half", TensorProto.FLOAT, [1], [0.5])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", om.OPSET)])
    model.ir_version = om.IR_VERSION
    path.write_bytes(model.SerializeToString())
    return path


def test_nan_midway_names_the_input_and_keeps_the_finished_ones(tmp_path):
    """Never a silent zero certificate: the run stops at the input whose outputs are NaN."""
    x = np.full((3, *SHAPE), 0.95, np.float32)  # channel means 0.95 +- 0.05 (sigma 0.25 over 30 pixels)
    x[1] = 0.05
    np.save(tmp_path / "x.npy", x)
    res = run(_nan_for_dark_inputs(tmp_path / "nan.onnx"), tmp_path / "x.npy", tmp_path / "r.json")
    assert res.exit_code == 3, res.output
    assert re.search(r"NaN or inf for input 1 \(.*x\.npy\[1\]\); no certificate is written", error_line(res))
    assert not (tmp_path / "r.json").exists()
    assert sorted(read_journal(tmp_path / "r.jsonl").records) == [0]


# ---------------------------------------------------------------- signal handlers


def test_stop_on_signals_sets_a_flag_then_stops_at_once_and_restores():
    before = signal.getsignal(signal.SIGTERM)
    with pipeline.stop_on_signals() as flag:
        assert flag.signal is None
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0)  # the handler runs between bytecodes
        assert flag.signal == "SIGTERM"
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0)
    assert signal.getsignal(signal.SIGTERM) is before


# ---------------------------------------------------------------- skipped inputs survive a resume


def test_resume_keeps_skipped_inputs(tmp_path, monkeypatch):
    from PIL import Image

    root = tmp_path / "imgs"
    for label in range(3):
        (root / str(label)).mkdir(parents=True)
        for i in range(2):
            color = [30, 30, 30]
            color[label] = 220
            Image.fromarray(np.full((6, 5, 3), color, np.uint8)).save(root / str(label) / f"{i}.png")
    (root / "0" / "bad.png").write_text("not a png")
    model = om.channel_means(tmp_path / "m.onnx", gain=6.0)
    assert run(model, root, tmp_path / "a.json").exit_code == 0
    kill_after(monkeypatch, 4)
    assert run(model, root, tmp_path / "b.json").exit_code == 130
    monkeypatch.undo()
    assert run(model, root, tmp_path / "b.json", "--resume").exit_code == 0
    a, b = load(tmp_path / "a.json"), load(tmp_path / "b.json")
    assert a["records"] == b["records"] and a["skipped"] == b["skipped"] and len(b["skipped"]) == 1


# ---------------------------------------------------------------- run --gate


def _rules(d: Path, text: str) -> Path:
    (d / "rules.yaml").write_text(text)
    return d / "rules.yaml"


def test_gate_pass_and_fail(tmp_path, case):
    model, inputs = case
    ok = _rules(tmp_path, "- {measure: score, method: naive, threshold: 0.5, radius: 0, min_accuracy: 0}\n"
                          "- {max_abstain_rate: 1}\n")
    res = run(model, inputs, tmp_path / "a.json", "--gate", ok, "--junit", tmp_path / "j.xml")
    assert res.exit_code == 0, res.output
    assert "PASS  score/naive c=0.5 r=0: certified accuracy" in res.output and "gate passed: 2 of 2" in res.output
    suite = ET.parse(tmp_path / "j.xml").getroot().find("testsuite")
    assert suite.get("tests") == "2" and suite.get("failures") == "0"

    bad = _rules(tmp_path, "- {measure: label, radius: 0, min_accuracy: 1.0}\n")
    res = run(model, inputs, tmp_path / "b.json", "--gate", bad)
    assert res.exit_code == 1, res.output
    assert "FAIL  label certificate r=0: certified accuracy" in res.output and "gate FAILED" in res.output
    assert load(tmp_path / "b.json")["count"] == 8  # the report is written before the gate


@pytest.mark.parametrize("text, message", [
    ("- {measure: score, threshold: 0.5, radius: 0, min_acuracy: 0.5}\n", "unknown key 'min_acuracy'"),
    ("- {measure: score, method: cdf-bj, threshold: 0.5, radius: 0, min_accuracy: 0.5}\n",
     "does not use method cdf-bj"),
    ("- {measure: score, method: naive, threshold: 0.65, radius: 0, min_accuracy: 0.5}\n",
     r"threshold 0.65 is not one of this run's score thresholds \(0.5, 0.6, 0.7, 0.8, 0.9\)"),
    ("[]\n", "must hold a non-empty YAML list"),
])
def test_bad_gate_rules_fail_before_certifying(tmp_path, case, text, message):
    model, inputs = case
    res = run(model, inputs, tmp_path / "r.json", "--gate", _rules(tmp_path, text))
    assert res.exit_code == 2 and re.search(message, error_line(res)), res.output
    assert not (tmp_path / "r.json").exists() and not (tmp_path / "r.jsonl").exists()


def test_gate_accuracy_without_labels_fails_early(tmp_path, case):
    model, _ = case
    np.save(tmp_path / "x.npy", np.zeros((2, *SHAPE), np.float32))
    rules = _rules(tmp_path, "- {measure: label, radius: 0, min_accuracy: 0.5}\n")
    res = run(model, tmp_path / "x.npy", tmp_path / "r.json", "--gate", rules)
    assert res.exit_code == 2 and "needs labels" in error_line(res)
    assert not (tmp_path / "r.jsonl").exists()


def test_junit_needs_gate(tmp_path, case):
    model, inputs = case
    res = run(model, inputs, tmp_path / "r.json", "--junit", tmp_path / "j.xml")
    assert res.exit_code == 2 and "--junit needs --gate" in error_line(res)


def test_a_signal_during_the_last_input_lets_the_run_finish(tmp_path, case, monkeypatch):
    model, inputs = case
    kill_after(monkeypatch, 8)
    res = run(model, inputs, tmp_path / "r.json")
    assert res.exit_code == 0, res.output
    assert load(tmp_path / "r.json")["count"] == 8


def test_records_from_an_out_of_order_iterator_are_put_in_input_order(tmp_path, case):
    """A parallel backend may finish inputs in any order; the journal and the report do not care."""
    model, inputs = case
    flags = {"smoothing": {"sigma": 0.25, "n0": 10, "n": 60}, "certify": {"methods": ["naive"]}}
    setup = pipeline.prepare(model, inputs, cli=flags)
    reference = pipeline.certify(setup).report["records"]

    def backwards(setup, sampler, indices):
        yield from pipeline.iter_records(setup, sampler, list(indices)[::-1])

    with journal_mod.JournalWriter(tmp_path / "r.jsonl", identity=pipeline.run_identity(setup)) as writer:
        result = pipeline.certify(setup, journal=writer, iterate=backwards)
    assert result.report["records"] == reference
    assert [e["record"]["index"] for e in lines(tmp_path / "r.jsonl")[2:]] == list(range(8))[::-1]
    state = read_journal(tmp_path / "r.jsonl")
    assert [state.records[i].to_dict() for i in range(8)] == reference


def test_resume_equals_uninterrupted_on_the_device_noise_path(tmp_path, case, monkeypatch):
    """The device path (noise drawn in the graph; taken on CUDA) keys its noise by (seed, input)
    too, so resuming there gives the same records. Forced on the CPU provider here."""
    import functools

    model, inputs = case
    assert run(model, inputs, tmp_path / "host.json").exit_code == 0
    monkeypatch.setattr(pipeline, "Sampler", functools.partial(pipeline.Sampler, device_noise="on"))
    assert run(model, inputs, tmp_path / "a.json").exit_code == 0
    with monkeypatch.context() as m:
        kill_after(m, 5)
        assert run(model, inputs, tmp_path / "b.json").exit_code == 130
    resumed = run(model, inputs, tmp_path / "b.json", "--resume")
    assert resumed.exit_code == 0, resumed.output
    a, b = load(tmp_path / "a.json"), load(tmp_path / "b.json")
    assert b["records"] == a["records"] and b["provenance"]["records_from_journal"] == 5
    assert a["records"] != load(tmp_path / "host.json")["records"]  # the device path was taken
