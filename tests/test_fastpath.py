"""fastpath.py and the Sampler's paths: the choice (pure), the Squares generator against an
independent implementation, the noise graph against its NumPy reference, and the device path run
end to end on the CPU provider (the code path CUDA takes, with host memory)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

import onnx_models as om
from onnxcert import fastpath as fp
from onnxcert.errors import ConfigError, ModelError
from onnxcert.runtime import CPU, CUDA, open_classifier
from onnxcert.sampling import ESTIMATION, Sampler, input_generator
from onnxcert.stats.measures import softmax

ort = pytest.importorskip("onnxruntime")


# ---------------------------------------------------------------- choosing the path (no GPU needed)


def choose(**kw):
    args = dict(provider=CUDA, batch_mode="dynamic", opset=17, input_dtype="float32")
    args.update(kw)
    return fp.choose_path(**args)


def test_cuda_takes_the_device_path():
    got = choose()
    assert got.device_noise and not got.prefetch
    assert choose(batch_mode="made-dynamic", input_dtype="float16").device_noise


@pytest.mark.parametrize("kw, why", [
    ({"batch_mode": "fixed"}, "batch dimension is fixed"),
    ({"opset": 11}, "opset 11 is below 13"),
    ({"opset": None}, "opset None"),
    ({"input_dtype": "float64"}, "input is float64"),
])
def test_cuda_falls_back_to_host_noise_with_prefetch(kw, why):
    got = choose(**kw)
    assert not got.device_noise and got.prefetch  # the CPU is free while the GPU works
    assert why in got.reason
    with pytest.raises(ConfigError, match=why):
        choose(device_noise="on", **kw)


def test_cpu_stays_on_the_host_and_prefetches():
    assert choose(provider=CPU) == fp.PathChoice(False, True, "provider CPUExecutionProvider")
    assert choose(provider=CPU, opset=11).prefetch


def test_device_noise_on_and_off():
    assert choose(provider=CPU, device_noise="on").device_noise
    got = choose(device_noise="off")
    assert not got.device_noise and got.prefetch and "off" in got.reason
    with pytest.raises(ConfigError, match="'sometimes'"):
        choose(device_noise="sometimes")


# ---------------------------------------------------------------- the generator


def test_squares32_matches_randomgen():
    # golden values: randomgen 2.5.1, Squares(key=K, counter=c, variant=32), successive next_uint32
    # (an independent Cython implementation of Widynski 2020); exact
    k1, k2 = 0xC58EFD154CE32F6D, 0x548C9DECBCE65297
    got = fp.squares32(np.arange(6, dtype=np.uint64), k1)
    assert [int(v) for v in got] == [0x8352D815, 0x4D645C71, 0x5F664B34, 0x5502129E, 0xFDADFDCF, 0xF7991D47]
    got = fp.squares32(np.array([10**12, 2**40 + 5], dtype=np.uint64), k1)
    assert [int(v) for v in got] == [0x3180337D, 0xFFB0E23E]
    assert [int(v) for v in fp.squares32(np.arange(3, dtype=np.uint64), k2)] == [0x36D88366, 0x944716E0, 0xC8A8F4E0]


@pytest.mark.parametrize("seed, index, stream", [(0, 0, 0), (0, 0, 1), (7, 12345, 1), (2**40, 3, 0)])
def test_squares_keys_follow_widynskis_rules(seed, index, stream):
    key = fp.squares_key(seed, index, stream)
    digits = [(key >> (4 * i)) & 0xF for i in range(16)]
    assert digits[0] % 2 == 1
    assert 0 not in digits
    assert len(set(digits[:8])) == 8
    assert all(digits[i] != digits[i - 1] for i in range(8, 16))
    assert fp.squares_key(seed, index, stream) == key  # a function of its arguments


def test_every_stream_has_its_own_key():
    keys = {fp.squares_key(s, i, t) for s in range(3) for i in range(50) for t in (0, 1)}
    assert len(keys) == 300


def test_reference_noise_is_standard_normal():
    # 2^18 values: Kolmogorov-Smirnov against N(0, 1) and lag-1 correlation; the draws are fixed
    # by the key, so these are deterministic checks with wide margins (p > 1e-3, |r| < 5 / sqrt(n))
    z = fp.reference_noise(fp.squares_key(0, 0, 1), 0, 1024, (256,)).ravel().astype(np.float64)
    assert stats.kstest(z, "norm").pvalue > 1e-3
    assert abs(np.corrcoef(z[:-1], z[1:])[0, 1]) < 5 / np.sqrt(z.size)
    assert np.isfinite(z).all() and np.abs(z).max() < 6.5  # 24-bit uniforms: |z| <= sqrt(2 ln 2^25)


def test_box_muller_keeps_the_gaussian_tail():
    # the smallest radial uniform is 2^-41: r reaches sqrt(82 ln 2) = 7.54 standard deviations
    # (24-bit uniforms stopped at 5.9, dropping 3e-8 of every pair's mass)
    lowest = fp.box_muller(np.zeros((2, 1), dtype=np.uint64))
    assert float(np.abs(lowest).max()) == pytest.approx(math.sqrt(82 * math.log(2)), rel=1e-6)
    # and the tail mass beyond 4 sd matches the normal law (2 Phi(-4) = 6.3e-5)
    z = fp.reference_noise(fp.squares_key(1, 2, 1), 0, 400, (5000,)).ravel()
    expect = 2 * stats.norm.sf(4) * z.size
    assert abs(np.count_nonzero(np.abs(z) > 4) - expect) < 5 * math.sqrt(expect)


def test_reference_noise_does_not_depend_on_how_it_is_cut():
    key, shape = fp.squares_key(1, 2, 1), (3, 2, 5)
    whole = fp.reference_noise(key, 0, 10, shape)
    parts = np.concatenate([fp.reference_noise(key, 0, 3, shape), fp.reference_noise(key, 3, 7, shape)])
    np.testing.assert_array_equal(parts, whole)


@pytest.mark.parametrize("shape", [(3, 5, 7), (1, 8, 8), (4,)])
def test_noise_graph_matches_the_reference(shape):
    session = ort.InferenceSession(fp.noise_model(shape).SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((1, *shape), dtype=np.float32)
    scale = np.full((1, *shape), 0.5, np.float32)
    key, names = fp.squares_key(0, 4, 1), fp.INPUT_NAMES
    (got,) = session.run(None, {names["x"]: x, names["scale"]: scale, names["key"]: np.array([key], np.uint64),
                                names["first"]: np.array([11], np.uint64), names["count"]: np.array([6], np.int64)})
    want = x + 0.5 * fp.reference_noise(key, 11, 6, shape)
    # same integers; float32 log/cos/sin of onnxruntime and NumPy may differ in the last bits
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


# ---------------------------------------------------------------- the device path, run on the CPU


@pytest.fixture
def logits_model(tmp_path):
    return open_classifier(om.channel_means(tmp_path / "m.onnx", gain=8.0), device="cpu")


X = np.array([0.7, 0.5, 0.3], np.float32).reshape(3, 1, 1) * np.ones((3, 6, 5), np.float32)
SCALE = np.float32(0.5)


def _sampler(model, batch_size=64, n0=40, n=300, **kw):
    return Sampler(model, n0=n0, n=n, seed=3, batch_size=batch_size, **kw)


def test_device_path_computes_the_host_measures_on_its_own_noise(logits_model):
    s = _sampler(logits_model, device_noise="on")
    assert s.path.device_noise and not s.prefetch
    got = s.sample(2, X, SCALE)
    z = fp.reference_noise(fp.squares_key(3, 2, ESTIMATION), 0, 300, X.shape)
    probs = softmax(logits_model(X + SCALE * z))
    c = got.prediction
    assert c == 0  # channel 0 has the largest mean
    # tolerance: float32 noise from two log/cos implementations, through gain 8 and a softmax
    np.testing.assert_allclose(got.score, probs[:, c], rtol=0, atol=1e-5)
    np.testing.assert_allclose(got.margin, probs[:, c] - np.delete(probs, c, axis=1).max(axis=1), rtol=0, atol=1e-5)
    assert abs(got.votes - int(np.sum(probs.argmax(axis=1) == c))) <= 1
    assert got.n_classes == 3 and s.output_kind == "logits"


def test_device_path_results_do_not_depend_on_batch_size(logits_model):
    # the counters, and so the integers behind the noise, are the same; onnxruntime's vectorized
    # float32 kernels (log, cos, the model) may round a value differently at another position in
    # the batch, as on the host path, hence 1e-6 and not exact equality
    ref = _sampler(logits_model, batch_size=300, device_noise="on").sample(0, X, SCALE)
    for b in (1, 7, 64):
        got = _sampler(logits_model, batch_size=b, device_noise="on").sample(0, X, SCALE)
        assert got.prediction == ref.prediction and abs(got.votes - ref.votes) <= 1
        np.testing.assert_allclose(got.score, ref.score, rtol=0, atol=1e-6)


def test_device_and_host_paths_agree_in_distribution(logits_model):
    host = _sampler(logits_model, n=4000).sample(0, X, SCALE)
    dev = _sampler(logits_model, n=4000, device_noise="on").sample(0, X, SCALE)
    assert host.prediction == dev.prediction
    # two independent samples of the same distribution: a two-sample KS test at 1e-3
    assert stats.ks_2samp(host.score, dev.score).pvalue > 1e-3


def test_device_path_reads_probabilities(tmp_path):
    w = np.zeros((3, 4, 4))
    w[0] = 1.0
    model = open_classifier(om.linear_threshold(tmp_path / "p.onnx", w, 8.0), device="cpu")
    x = np.full((3, 4, 4), 0.6, np.float32)  # w . x = 9.6 > 8: class 0 without noise
    s = Sampler(model, n0=20, n=200, seed=0, batch_size=50, device_noise="on")
    got = s.sample(0, x, np.float32(0.25))
    assert s.output_kind == "probabilities"
    assert got.prediction == 0
    assert set(np.unique(got.score)) <= {0.0, 1.0}
    np.testing.assert_array_equal(got.margin, 2 * got.score - 1)
    assert got.votes == int(got.score.sum())


def test_device_path_reports_nan(tmp_path):
    model = open_classifier(om.nan_output(tmp_path / "nan.onnx"), device="cpu")
    s = Sampler(model, n0=4, n=4, seed=0, batch_size=4, output_kind="logits", device_noise="on")
    with pytest.raises(ModelError, match="NaN or inf for input 5"):
        s.sample(5, np.zeros((3, 4, 4), np.float32), np.float32(0.25))


def test_device_path_gives_way_when_the_batch_stays_fixed(tmp_path, caplog):
    path = om.channel_means(tmp_path / "fixed.onnx", batch=1, fixed_reshape=True)
    model = open_classifier(path, device="cpu")
    model.provider = CUDA  # as if on a GPU; the session itself stays on the CPU
    s = _sampler(model, n0=5, n=20)
    assert s.path.device_noise  # the fixed batch shows only in the first forward pass
    got = s.sample(0, X, SCALE)
    assert model.batch_mode == "fixed" and not s.path.device_noise and s.prefetch  # host noise, ahead
    assert "batch dimension is fixed" in caplog.text
    ref = _sampler(model, n0=5, n=20, device_noise="off").sample(0, X, SCALE)
    np.testing.assert_array_equal(got.score, ref.score)


def test_device_noise_needs_an_onnx_classifier():
    with pytest.raises(ConfigError, match="ONNX classifier"):
        Sampler(lambda b: b.reshape(len(b), -1)[:, :2], n0=1, n=1, seed=0, batch_size=1,
                device_noise="on")


# ---------------------------------------------------------------- the host path's prefetch


def pixel_logits(batch):
    return 8.0 * batch.reshape(batch.shape[0], -1)[:, :3].astype(np.float64) - 4.0


def test_prefetch_changes_nothing():
    x = np.array([0.9, 0.4, 0.1, 0.5, 0.5, 0.5], np.float32).reshape(1, 2, 3)
    for b in (1, 7, 64, 2000):
        a = Sampler(pixel_logits, n0=37, n=1001, seed=0, batch_size=b, prefetch=False).sample(0, x, SCALE)
        p = Sampler(pixel_logits, n0=37, n=1001, seed=0, batch_size=b, prefetch=True).sample(0, x, SCALE)
        assert (a.prediction, a.votes) == (p.prediction, p.votes)
        np.testing.assert_array_equal(a.score, p.score)
        np.testing.assert_array_equal(a.margin, p.margin)


def test_prefetch_survives_a_failed_batch():
    calls = []

    def flaky(batch):
        calls.append(len(batch))
        if len(calls) == 3:
            return np.full((len(batch), 3), np.nan)
        return pixel_logits(batch)

    x = np.zeros((1, 2, 3), np.float32)
    s = Sampler(flaky, n0=10, n=100, seed=0, batch_size=10, prefetch=True)
    with pytest.raises(ModelError, match="NaN"):
        s.sample(0, x, SCALE)
    again = s.sample(0, x, SCALE)  # buffers and worker are still usable
    ref = Sampler(pixel_logits, n0=10, n=100, seed=0, batch_size=10, prefetch=False).sample(0, x, SCALE)
    np.testing.assert_array_equal(again.score, ref.score)


def test_sampler_takes_its_path_from_the_classifier(logits_model):
    assert not _sampler(logits_model).path.device_noise
    assert _sampler(logits_model).prefetch
    assert not _sampler(logits_model, prefetch=False).prefetch
    assert not _sampler(pixel_logits).prefetch  # a Python model: no worker thread unless asked


def test_noise_is_drawn_from_the_estimation_stream(logits_model):
    # the host path's estimation noise is stream (index, 1) whatever the path's options
    seen = []

    def spy(batch):
        seen.append(batch.copy())
        return logits_model(batch)

    Sampler(spy, n0=5, n=5, seed=0, batch_size=5, prefetch=True).sample(0, X, SCALE)
    z = input_generator(0, 0, 1).normals(5, X.shape)
    np.testing.assert_array_equal(seen[1], X + SCALE * z)
