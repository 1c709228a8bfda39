"""Lanes: estimation batches run several at a time, one per thread (sampling.Sampler, runtime.choose_lanes).

What must hold: every sample's noise, and so every score, margin and vote, is the one lane's;
an error in any lane is raised, once, after every lane has stopped; progress comes from the
calling thread and adds up to the samples run.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

import onnx_models as om
from onnxcert import noise
from onnxcert.errors import ConfigError, ModelError
from onnxcert.sampling import Sampler

from test_sampling import SCALE, X, pixel_logits

GENERATORS = ["sfc64-ziggurat1024", "sfc64-box-muller-40bit"]


def _generator(monkeypatch, generator):
    if generator == noise.ZIGGURAT and not noise.compiled():
        pytest.skip("onnxcert._kernels is not built")
    monkeypatch.setenv(noise.HOST_NOISE_ENV, generator)


@pytest.mark.parametrize("generator", GENERATORS)
@pytest.mark.parametrize("lanes", [2, 3, 5])
@pytest.mark.parametrize("batch_size, n", [(7, 1001), (50, 200), (64, 65)])
def test_lanes_give_the_one_lane_results_bit_for_bit(monkeypatch, generator, lanes, batch_size, n):
    _generator(monkeypatch, generator)
    one = Sampler(pixel_logits, n0=37, n=n, seed=4, batch_size=batch_size, lanes=1).sample(3, X, SCALE)
    many = Sampler(pixel_logits, n0=37, n=n, seed=4, batch_size=batch_size, lanes=lanes).sample(3, X, SCALE)
    assert (many.prediction, many.votes, many.n_classes) == (one.prediction, one.votes, one.n_classes)
    assert np.array_equal(many.score, one.score) and np.array_equal(many.margin, one.margin)


@pytest.mark.parametrize("generator", GENERATORS)
def test_lanes_keep_a_sequential_run_s_draws_a_prefix(monkeypatch, generator):
    """Draws in pieces (a sequential run's looks) with lanes give the one-lane fixed-n draw."""
    _generator(monkeypatch, generator)
    whole = Sampler(pixel_logits, n0=10, n=300, seed=1, batch_size=16, lanes=1)
    c, _ = whole.select(0, X, SCALE)
    ref = whole.estimation(0, X, SCALE, c)(0, 300)
    s = Sampler(pixel_logits, n0=10, n=300, seed=1, batch_size=16, lanes=2)
    assert s.select(0, X, SCALE)[0] == c
    draw = s.estimation(0, X, SCALE, c)
    parts = [draw(a, b) for a, b in ((0, 50), (50, 170), (170, 300))]
    assert np.array_equal(np.concatenate([p[0] for p in parts]), ref[0])
    assert np.array_equal(np.concatenate([p[1] for p in parts]), ref[1])
    assert sum(p[2] for p in parts) == ref[2]


def test_two_batches_are_in_flight_at_once():
    """The model's first two estimation calls wait for each other: with one batch at a time the
    barrier breaks (after its timeout) and the run fails. Each reads its batch after both were
    drawn, so lanes that shared a buffer would give other results than one lane."""
    barrier = threading.Barrier(2, timeout=60)
    calls, threads = [], set()
    lock = threading.Lock()

    def model(batch):
        with lock:
            k = len(calls)
            calls.append(k)
            threads.add(threading.get_ident())
        if 1 <= k <= 2:  # call 0 is the selection batch
            barrier.wait()
        return pixel_logits(batch)

    got = Sampler(model, n0=4, n=40, seed=0, batch_size=4, lanes=2).sample(0, X, SCALE)
    assert len(calls) == 1 + 10 and len(threads) == 2
    ref = Sampler(pixel_logits, n0=4, n=40, seed=0, batch_size=4, lanes=1).sample(0, X, SCALE)
    assert np.array_equal(got.score, ref.score) and np.array_equal(got.margin, ref.margin)


def test_progress_is_reported_from_the_calling_thread_and_adds_up():
    main, seen = threading.get_ident(), []

    def on_batch(count):
        assert threading.get_ident() == main
        seen.append(count)

    s = Sampler(pixel_logits, n0=37, n=1001, seed=0, batch_size=10, lanes=3, on_batch=on_batch)
    s.sample(0, X, SCALE)
    assert sum(seen) == 37 + 1001 and all(c > 0 for c in seen)


@pytest.mark.parametrize("bad_call", [1, 2, 7, 10])  # estimation calls, on either lane
@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_a_non_finite_batch_on_any_lane_is_a_model_error(bad_call, value):
    lock, calls, active = threading.Lock(), [], []

    def bad(batch):
        with lock:
            k = len(calls)
            calls.append(k)
            active.append(1)
        try:
            out = pixel_logits(batch)
            if k == bad_call:
                out[0, 1] = value
            return out
        finally:
            with lock:
                active.pop()

    s = Sampler(bad, n0=4, n=40, seed=0, batch_size=4, lanes=2)
    with pytest.raises(ModelError, match=r"NaN or inf for input 7 \(cat.png\)"):
        s.sample(7, X, SCALE, "cat.png")
    assert not active  # every lane stopped before the error reached the caller


def test_an_exception_in_a_worker_lane_reaches_the_caller():
    main = threading.get_ident()

    def model(batch):
        if threading.get_ident() != main:
            raise RuntimeError("boom in a lane")
        return pixel_logits(batch)

    with pytest.raises(RuntimeError, match="boom in a lane"):
        Sampler(model, n0=4, n=400, seed=0, batch_size=4, lanes=2).sample(0, X, SCALE)


def test_an_interrupt_stops_every_lane_before_it_is_raised():
    """The worker lane's batches wait until the interrupt is on its way (so that the worker
    cannot finish the input first), then it must stop after its current batch."""
    lock, active, calls, main = threading.Lock(), [], [], threading.get_ident()
    interrupted = threading.Event()

    def model(batch):
        with lock:
            active.append(1)
            calls.append(1)
        try:
            if threading.get_ident() != main:
                interrupted.wait(60)
            return pixel_logits(batch)
        finally:
            with lock:
                active.pop()

    def on_batch(count):
        if len(calls) > 3:
            interrupted.set()
            raise KeyboardInterrupt

    s = Sampler(model, n0=4, n=4000, seed=0, batch_size=4, lanes=2, on_batch=on_batch)
    with pytest.raises(KeyboardInterrupt):
        s.sample(0, X, SCALE)
    assert not active
    assert len(calls) <= 6  # the selection batch, then at most a few before both lanes saw the stop
    # the sampler still works afterwards, and gives the one-lane answer
    s.on_batch = None
    again = s.sample(0, X, SCALE)
    ref = Sampler(pixel_logits, n0=4, n=4000, seed=0, batch_size=4, lanes=1).sample(0, X, SCALE)
    assert np.array_equal(again.score, ref.score) and again.votes == ref.votes


def test_lanes_must_be_positive():
    with pytest.raises(ConfigError, match="lanes must be >= 1, got 0"):
        Sampler(pixel_logits, n0=4, n=4, seed=0, batch_size=4, lanes=0)


def test_a_python_model_runs_one_lane_unless_asked():
    assert Sampler(pixel_logits, n0=4, n=4, seed=0, batch_size=4).lanes == 1


def test_pipeline_records_with_lanes_equal_one_lane(tmp_path):
    """End to end on an ONNX model that onnxcert runs in lanes by default: same records."""
    from onnxcert import pipeline

    path = om.channel_means(tmp_path / "m.onnx")
    x = np.random.default_rng(0).random((3, 3, 6, 5), dtype=np.float32)
    records = {}
    for lanes in (1, 2):
        setup = pipeline.prepare(path, x, cli={"smoothing": {"n0": 20, "n": 300, "batch_size": 16, "sigma": 0.25}},
                                 device="cpu", threads=2, lanes=lanes)
        assert setup.classifier.session_options["lanes"] == lanes
        sampler = pipeline.make_sampler(setup)
        assert sampler.lanes == lanes
        records[lanes] = [r for r in pipeline.iter_records(setup, sampler)]
    assert len(records[1]) == len(records[2]) == 3
    assert [r.to_dict() for r in records[1]] == [r.to_dict() for r in records[2]]


def test_memory_check_counts_one_batch_per_lane():
    from onnxcert.limits import batch_bytes, check_batch

    one = batch_bytes(64, (3, 32, 32))
    check_batch(64, (3, 32, 32), explicit=True, memory=2 * one + 1, lanes=2)
    with pytest.raises(ConfigError, match=r"in each of 2 lanes .*or pass --lanes 1"):
        check_batch(64, (3, 32, 32), explicit=True, memory=2 * one - 1, lanes=2)
    check_batch(64, (3, 32, 32), explicit=True, memory=2 * one - 1, lanes=1)
    # a batch that does not fit even once names the batch alone
    with pytest.raises(ConfigError, match=r"^a batch of 64 sample\(s\) of shape 3x32x32 needs about") as e:
        check_batch(64, (3, 32, 32), explicit=True, memory=one // 2, lanes=2)
    assert "lanes" not in str(e.value)


def test_run_lanes_option(tmp_path):
    import json

    from cli_helpers import cli, error_line
    import onnxcert.cli  # noqa: F401  (registers every command)

    model = om.channel_means(tmp_path / "m.onnx", gain=6.0)
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((2, 3, 6, 5)).astype(np.float32))
    fast = ("--sigma", "0.25", "--n0", "10", "--n", "60", "--methods", "naive", "--threads", "2")
    reports = {}
    for lanes in ("1", "2"):
        out = tmp_path / f"r{lanes}.json"
        res = cli("run", model, tmp_path / "x.npy", *fast, "--lanes", lanes, "-o", out)
        assert res.exit_code == 0, res.output
        assert ("on CPUExecutionProvider in 2 lanes;" in res.output) == (lanes == "2")
        reports[lanes] = json.loads(out.read_text())
        opts = reports[lanes]["provenance"]["session_options"]
        assert opts["lanes"] == int(lanes) and opts["intra_op_num_threads"] == (2 if lanes == "1" else 1)
    assert reports["1"]["records"] == reports["2"]["records"]
    res = cli("run", model, tmp_path / "x.npy", *fast, "--lanes", "0", "-o", tmp_path / "r0.json")
    assert res.exit_code == 2 and error_line(res) == "onnxcert: error: --lanes must be >= 1, got 0"
    res = cli("run", model, tmp_path / "x.npy", *fast, "--lanes", "2", "--backend", "ray", "-o", tmp_path / "r3.json")
    assert res.exit_code == 2 and "--lanes only applies to --backend local" in error_line(res)
    assert not (tmp_path / "r0.json").exists() and not (tmp_path / "r3.json").exists()


@pytest.mark.parametrize("n", [130, 200, 1000])
def test_a_draw_shorter_than_a_batch_per_lane_is_shared_among_the_lanes(n):
    """A sequential look of fewer samples than lanes x batch size is cut into one part per lane
    (each at least MIN_LANE_BATCH): two of them are in flight at once, and the results are the
    one-lane's."""
    from onnxcert.sampling import MIN_LANE_BATCH

    barrier = threading.Barrier(2, timeout=60)
    lock, calls, sizes = threading.Lock(), [], []

    def model(batch):
        with lock:
            k = len(calls)
            calls.append(k)
            sizes.append(batch.shape[0])
        if 1 <= k <= 2:
            barrier.wait()
        return pixel_logits(batch)

    got = Sampler(model, n0=4, n=n, seed=2, batch_size=1024, lanes=2).sample(0, X, SCALE)
    ref = Sampler(pixel_logits, n0=4, n=n, seed=2, batch_size=1024, lanes=1).sample(0, X, SCALE)
    assert np.array_equal(got.score, ref.score) and got.votes == ref.votes
    assert sorted(sizes[1:]) == sorted([n // 2, n - n // 2]) and min(sizes[1:]) >= MIN_LANE_BATCH


def test_a_draw_too_short_to_share_runs_in_one_batch():
    sizes = []
    Sampler(lambda b: sizes.append(b.shape[0]) or pixel_logits(b), n0=4, n=100, seed=2, batch_size=1024,
            lanes=2).sample(0, X, SCALE)
    assert sizes == [4, 100]


def test_an_estimation_draw_before_any_selection_decides_the_output_kind_on_one_lane_first():
    """Lanes start only once a batch has decided the output kind (``_lanes_ready``): a draw on a
    fresh sampler, with no selection before it, still gives the one-lane results."""
    c = 1
    one = Sampler(pixel_logits, n0=4, n=300, seed=5, batch_size=16, lanes=1)
    many = Sampler(pixel_logits, n0=4, n=300, seed=5, batch_size=16, lanes=2)
    assert many.output_kind == "auto"
    a = one.estimation(0, X, SCALE, c)(0, 300)
    b = many.estimation(0, X, SCALE, c)(0, 300)
    assert many.output_kind == "logits"
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]


@pytest.mark.parametrize("fixed_reshape", [False, True], ids=["made-dynamic", "falls-back-to-fixed"])
def test_a_fixed_batch_model_is_checked_before_the_lanes_start(tmp_path, fixed_reshape):
    """A model whose fixed batch onnxcert made dynamic is checked on its first call (and falls
    back to its own batch when the check fails): lanes wait for that, then match one lane."""
    from onnxcert.runtime import open_classifier

    path = om.channel_means(tmp_path / "b1.onnx", batch=1, fixed_reshape=fixed_reshape)
    x = np.random.default_rng(3).random((3, 6, 5), dtype=np.float32)
    got = {}
    for lanes in (1, 2):
        clf = open_classifier(path, device="cpu", threads=2, lanes=lanes)
        s = Sampler(clf, n0=4, n=96, seed=0, batch_size=16, output_kind="logits", lanes=lanes)
        got[lanes] = s.estimation(0, x, np.float32(0.25), 1)(0, 96)
        assert clf.batch_mode == ("fixed" if fixed_reshape else "made-dynamic")
    assert np.array_equal(got[1][0], got[2][0]) and got[1][2] == got[2][2]
