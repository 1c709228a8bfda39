"""Plain progress lines for logs and CI, and the early estimate of a long run (a fake clock)."""

from __future__ import annotations

from onnxcert.progress import PlainProgress, duration


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_duration_text():
    assert [duration(s) for s in (3, 250, 7500)] == ["3 s", "4 min 10 s", "2 h 05 min"]


def test_a_line_every_few_seconds_with_rate_and_eta():
    clock, lines = Clock(), []
    p = PlainProgress(4, 1000, every=5, long_after=1e9, echo=lines.append, clock=clock)
    clock.t += 1
    p.on_batch(500)
    assert lines == []  # 1 s since the start
    clock.t += 4
    p.on_batch(500)
    p.on_record()  # 1000 samples in 5 s: 200/s; 3000 left: 15 s
    assert lines == ["progress: 0/4 inputs, 1,000 samples, 200 samples/s, eta 15 s"]
    clock.t += 3
    p.on_batch(600)
    assert len(lines) == 1  # 3 s since the last line
    clock.t += 2
    p.on_batch(400)  # 2000 samples in 10 s
    assert lines[1] == "progress: 1/4 inputs, 2,000 samples, 200 samples/s, eta 10 s"


def test_the_second_batch_estimates_a_long_run_without_the_warm_up():
    clock, lines = Clock(), []
    p = PlainProgress(250, 100_100, done=50, lines=False, long_after=60, echo=lines.append, clock=clock)
    clock.t += 40
    p.on_batch(1000)  # the first batch carries the warm-up: 25 samples/s would say 9 days
    assert lines == []
    clock.t += 2
    p.on_batch(1000)  # 500 samples/s after it: 42 s so far + 20,018,000 samples / 500 = 40,078 s
    assert lines == ["this run will take about 11 h 07 min (200 input(s) x 100,100 samples at 500 samples/s, "
                     "measured after the first batch); --n, --limit and --skip make it shorter"]
    clock.t += 100
    p.on_batch(1000)
    assert len(lines) == 1  # once, and no periodic lines with lines=False


def test_a_short_run_gets_no_estimate():
    clock, lines = Clock(), []
    p = PlainProgress(3, 1000, long_after=60, every=1e9, echo=lines.append, clock=clock)
    clock.t += 0.5
    p.on_batch(500)
    clock.t += 0.5
    p.on_batch(500)
    assert lines == []


def test_run_off_a_terminal_prints_plain_progress_and_the_estimate(tmp_path, monkeypatch):
    """CliRunner's stderr is not a terminal: lines instead of bars (thresholds set to 0 here, so
    that the test does not depend on the machine's speed)."""
    import numpy as np

    from onnxcert import progress
    from tests import onnx_models as om
    from tests.cli_helpers import cli

    monkeypatch.setattr(progress, "LONG_RUN_S", 0.0)
    monkeypatch.setattr(progress, "EVERY_S", 0.0)
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((3, 3, 6, 5), dtype=np.float32))
    res = cli("run", om.channel_means(tmp_path / "m.onnx"), tmp_path / "x.npy", "--sigma", "0.25", "--n", "200",
              "--n0", "10", "--batch-size", "50", "-o", tmp_path / "r.json")
    assert res.exit_code == 0, res.output
    lines = res.stderr.splitlines()
    estimate = [ln for ln in lines if ln.startswith("onnxcert: this run will take about")]
    assert len(estimate) == 1 and "3 input(s) x 210 samples" in estimate[0]
    progress_lines = [ln for ln in lines if ln.startswith("onnxcert: progress: ")]
    assert len(progress_lines) >= 3 and "samples/s, eta" in progress_lines[-1]
    quiet = cli("run", om.channel_means(tmp_path / "m.onnx"), tmp_path / "x.npy", "--sigma", "0.25", "--n", "200",
                "-q", "-o", tmp_path / "q.json")
    assert "progress:" not in quiet.stderr and "will take" not in quiet.stderr


def test_a_sequential_input_that_stops_early_gives_back_its_undrawn_samples():
    """run --sequential: n0 + n per input is only the most an input takes. A finished input's
    undrawn samples leave the work still to do, so the ETA does not wait for samples never drawn."""
    clock, lines = Clock(), []
    p = PlainProgress(4, 1000, every=5, long_after=1e9, echo=lines.append, clock=clock, drawn=lambda rec: rec)
    clock.t += 4
    p.on_batch(300)
    assert p.on_record(300) == 700  # the first input stopped after 300 of its 1000 samples
    clock.t += 1
    p.on_batch(100)  # 400 samples in 5 s: 80/s; 4000 - 700 - 400 = 2900 left
    assert lines == ["progress: 1/4 inputs, 400 samples, 80 samples/s, eta 36 s"]
    assert p.on_record(1000) == 0  # an input that took every sample gives nothing back
    plain = PlainProgress(4, 1000, echo=lines.append, clock=clock)
    assert plain.on_record(object()) == 0 and plain.todo == 4000  # fixed-n runs: unchanged


def test_a_sequential_run_estimates_at_most():
    clock, lines = Clock(), []
    p = PlainProgress(10, 100_100, lines=False, long_after=60, echo=lines.append, clock=clock,
                      drawn=lambda rec: rec)
    clock.t += 1
    p.on_batch(1000)
    clock.t += 2
    p.on_batch(1000)
    assert len(lines) == 1 and lines[0].startswith("this run will take at most about ")
    assert "10 input(s) x at most 100,100 samples" in lines[0]


def test_sequential_run_off_a_terminal_counts_the_samples_left(tmp_path, monkeypatch):
    """End to end on the sample model: inputs stop early and the estimate says "at most" (the
    arithmetic of what is left is tested above)."""
    import json
    import shutil
    from pathlib import Path

    from onnxcert import progress
    from tests.cli_helpers import cli

    root = Path(__file__).resolve().parents[1]
    images = tmp_path / "img"
    for f in sorted((root / "sample_models" / "digits_test").rglob("*.png"))[::50][:6]:
        (images / f.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(f, images / f.parent.name / f.name)
    rules = tmp_path / "rules.yaml"
    rules.write_text(json.dumps([{"measure": "label", "radius": 0.1, "min_accuracy": 0.0}]))
    monkeypatch.setattr(progress, "LONG_RUN_S", 0.0)
    monkeypatch.setattr(progress, "EVERY_S", 0.0)
    res = cli("run", root / "sample_models" / "digits_sigma0.25.onnx", images, "--n", "4000", "--n0", "50",
              "--methods", "naive", "--gate", rules, "--sequential", "--no-dataset-stop", "--batch-size", "500",
              "-o", tmp_path / "r.json")
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "r.json").read_text())
    drawn = [50 + r["samples"] for r in report["records"]]
    assert min(drawn) < 4050  # some input stopped before n
    lines = res.stderr.splitlines()
    assert any(ln.startswith("onnxcert: this run will take at most about") for ln in lines)
    assert any(ln.startswith("onnxcert: progress: ") for ln in lines)
