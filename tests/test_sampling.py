"""sampling.py: per-input seeds, batch-size invariance, selection vs estimation, streamed measures."""

from __future__ import annotations

import numpy as np
import pytest

from onnxcert.errors import ModelError
from onnxcert.sampling import Sampler, auto_batch_size, input_generator
from onnxcert.stats.measures import detect_output_kind
from onnxcert.stats.measures import softmax


def pixel_logits(batch):
    """A row-wise NumPy 'model' with no reductions: logits = 8 * (first three values) - 4.

    It is bitwise deterministic whatever the batch, unlike onnxruntime kernels, whose last bit may
    depend on a row's memory alignment.
    """
    return 8.0 * batch.reshape(batch.shape[0], -1)[:, :3].astype(np.float64) - 4.0


X = np.array([0.9, 0.4, 0.1, 0.5, 0.5, 0.5], np.float32).reshape(1, 2, 3)
SCALE = np.float32(0.5)


def _sample(batch_size, index=0, seed=0, n0=37, n=1001, model=pixel_logits, **kw):
    s = Sampler(model, n0=n0, n=n, seed=seed, batch_size=batch_size, **kw)
    return s.sample(index, X, SCALE)


@pytest.mark.parametrize("shape", [(3,), (1,), (3, 5, 7)])
def test_noise_stream_does_not_depend_on_chunking(shape):
    # the property per-input seeding relies on: each sample takes a fixed run of the stream's words
    def draw(chunk, total=1001):
        g, out, done = input_generator(5, 3, 1), [], 0
        while done < total:
            b = min(chunk, total - done)
            out.append(g.normals(b, shape))
            done += b
        return np.concatenate(out)
    whole = draw(1001)
    for chunk in (1, 3, 64, 500):
        np.testing.assert_array_equal(draw(chunk), whole)


def test_results_do_not_depend_on_batch_size():
    ref = _sample(1001)
    for b in (1, 7, 64):
        got = _sample(b)
        assert (got.prediction, got.votes) == (ref.prediction, ref.votes)
        np.testing.assert_array_equal(got.score, ref.score)
        np.testing.assert_array_equal(got.margin, ref.margin)


def test_inputs_get_their_own_streams():
    a, b = _sample(64, index=0), _sample(64, index=1)
    assert not np.array_equal(a.score, b.score)
    c = _sample(64, index=0, seed=1)
    assert not np.array_equal(a.score, c.score)
    np.testing.assert_array_equal(_sample(64, index=1).score, b.score)  # order does not matter


def test_selection_and_estimation_noise_are_separate_streams():
    seen = []

    def spy(batch):
        seen.append(batch.copy())
        return pixel_logits(batch)

    Sampler(spy, n0=5, n=5, seed=0, batch_size=5).sample(0, X, SCALE)
    selection, estimation = seen
    assert not np.array_equal(selection, estimation)
    z = input_generator(0, 0, 1).normals(5, (1, 2, 3))
    np.testing.assert_array_equal(estimation, X + SCALE * z)  # x + sigma/std * z, stream (index, 1)


def test_measures_match_a_direct_computation():
    got = _sample(64, n0=20, n=500)
    g = input_generator(0, 0, 1)
    batch = X + SCALE * g.normals(500, (1, 2, 3))
    probs = softmax(pixel_logits(batch))
    sel = X + SCALE * input_generator(0, 0, 0).normals(20, (1, 2, 3))
    c = int(np.argmax(softmax(pixel_logits(sel)).mean(axis=0)))
    assert got.prediction == c == 0  # x[0] = 0.9 is the largest pixel
    np.testing.assert_allclose(got.score, probs[:, c], rtol=0, atol=1e-15)
    others = np.delete(probs, c, axis=1).max(axis=1)
    np.testing.assert_allclose(got.margin, probs[:, c] - others, rtol=0, atol=1e-15)
    assert got.votes == int(np.sum(probs.argmax(axis=1) == c))
    assert got.score.shape == (500,) and got.n_classes == 3


def test_progress_hook_counts_every_sample():
    counts = []
    _sample(64, n0=37, n=1001, on_batch=counts.append)
    assert sum(counts) == 37 + 1001 and max(counts) == 64


def test_output_kind_is_decided_once_from_the_first_batch():
    s = Sampler(lambda b: softmax(pixel_logits(b)), n0=10, n=10, seed=0, batch_size=4)
    s.sample(0, X, SCALE)
    assert s.output_kind == "probabilities"
    s = Sampler(pixel_logits, n0=10, n=10, seed=0, batch_size=4)
    s.sample(0, X, SCALE)
    assert s.output_kind == "logits"
    rows = np.array([[0.2, 0.8], [0.5, 0.5]])
    assert detect_output_kind(rows) == "probabilities"
    assert detect_output_kind(rows, kind="logits") == "logits"
    assert detect_output_kind(rows + 0.1) == "logits"


def test_probabilities_and_logits_give_the_same_measures():
    a = _sample(64, model=pixel_logits)
    b = _sample(64, model=lambda batch: softmax(pixel_logits(batch)))
    np.testing.assert_allclose(a.score, b.score, atol=1e-12)
    assert a.votes == b.votes


def test_nan_output_names_the_input():
    def bad(batch):
        out = pixel_logits(batch)
        out[-1, 0] = np.nan
        return out

    s = Sampler(bad, n0=4, n=4, seed=0, batch_size=4)
    with pytest.raises(ModelError, match=r"NaN or inf for input 7 \(cat.png\)"):
        s.sample(7, X, SCALE, "cat.png")


@pytest.mark.parametrize("generator", ["sfc64-ziggurat1024", "sfc64-box-muller-40bit"])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("bad_call", [0, 3])  # the selection's first batch, an estimation batch
def test_non_finite_output_is_a_model_error_with_either_host_path(monkeypatch, generator, value, bad_call):
    from onnxcert import noise
    if generator == noise.ZIGGURAT and not noise.compiled():
        pytest.skip("onnxcert._kernels is not built")
    monkeypatch.setenv(noise.HOST_NOISE_ENV, generator)
    calls = []

    def bad(batch):
        out = pixel_logits(batch)
        if len(calls) == bad_call:
            out[1, 2] = value
        calls.append(1)
        return out

    s = Sampler(bad, n0=8, n=40, seed=0, batch_size=4)
    with pytest.raises(ModelError, match=r"NaN or inf for input 7 \(cat.png\)"):
        s.sample(7, X, SCALE, "cat.png")
    assert len(calls) == bad_call + 1


def test_auto_batch_size():
    assert auto_batch_size((3, 32, 32), 100_000) == 256  # capped
    assert auto_batch_size((3, 32, 32), 50) == 50  # never more than n
    imagenet = auto_batch_size((3, 224, 224), 100_000)
    assert 1 <= imagenet < 256
    assert auto_batch_size((3, 4000, 4000), 100_000) == 1
