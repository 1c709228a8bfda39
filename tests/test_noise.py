"""noise.py: the host noise is N(0, 1), keyed by (seed, index, stream), and cut-proof, with either
generator (the compiled ziggurat, the NumPy Box-Muller); which one a process uses.

The draws are fixed by their seeds, so the statistical checks are deterministic; each bound is
set so that a correct generator fails it with probability below about 1e-6 at a random seed
(binomial quantiles, or KS p-values above 1e-4). The compiled kernel's own checks (its word
stream, its tail and wedges) are in test_kernels.py.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
from scipy import stats

from onnxcert import noise
from onnxcert.errors import ConfigError
from onnxcert.noise import BOX_MULLER, ZIGGURAT, NoiseStream, box_muller

from test_sampling import SCALE, X, pixel_logits

LEVEL = 1e-6
NEEDS_KERNEL = pytest.mark.skipif(not noise.compiled(), reason="onnxcert._kernels is not built")
BOTH = pytest.mark.parametrize("generator", [pytest.param(ZIGGURAT, marks=NEEDS_KERNEL), BOX_MULLER])


def _draw(chunks, shape, seed=5, index=3, stream=1, generator=BOX_MULLER):
    g = NoiseStream(seed, index, stream, generator)
    return np.concatenate([g.normals(c, shape) for c in chunks])


def _binomial_ok(count: int, n: int, p: float) -> bool:
    lo, hi = stats.binom.ppf(LEVEL / 2, n, p), stats.binom.isf(LEVEL / 2, n, p)
    return lo <= count <= hi


@BOTH
@pytest.mark.parametrize("shape", [(1,), (3,), (1, 8, 8), (3, 5, 7)])
def test_the_first_m_samples_do_not_depend_on_how_the_stream_is_cut(shape, generator):
    whole = _draw([300], shape, generator=generator)
    for chunks in ([1] * 300, [7, 93, 200], [150, 150], [299, 1], [1, 7, 1, 291]):
        np.testing.assert_array_equal(_draw(chunks, shape, generator=generator), whole)
    # a shorter draw is a prefix of a longer one (the sequential mode draws in looks)
    np.testing.assert_array_equal(_draw([41], shape, generator=generator), whole[:41])


def test_big_samples_are_drawn_in_steps_with_the_same_result(monkeypatch):
    # samples of at least CHUNK_PAIRS pairs go one at a time in column steps; shrink the step so
    # that a small sample takes that path, several steps and a ragged last one
    shape = (3, 7, 5)  # 105 values, 53 pairs
    ref = _draw([10], shape)
    for step in (4, 8, 53, 60):
        monkeypatch.setattr(noise, "CHUNK_PAIRS", step)
        np.testing.assert_array_equal(_draw([3, 7], shape), ref)


@BOTH
def test_streams_are_keyed_by_seed_index_and_stream(generator):
    a = _draw([4], (16,), 0, 0, 1, generator)
    np.testing.assert_array_equal(_draw([4], (16,), 0, 0, 1, generator), a)
    for other in ((1, 0, 1), (0, 1, 1), (0, 0, 0)):
        assert not np.any(_draw([4], (16,), *other, generator) == a)


@BOTH
@pytest.mark.parametrize("scale", [np.full((3, 4), 0.25, np.float32), np.float32(0.5),
                                   np.array([[0.25], [0.5], [2.0]], np.float32)])
def test_fill_is_x_plus_scale_times_the_noise(generator, scale):
    # float32 arithmetic on the float32 normals, bit for bit, with scale per value, one scale for
    # all, or one per channel
    x = np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)
    got = NoiseStream(2, 0, 1, generator).fill(np.empty((6, 3, 4), np.float32), x, scale)
    np.testing.assert_array_equal(got, x + scale * _draw([6], (3, 4), 2, 0, 1, generator))


@BOTH
@pytest.mark.parametrize("scale_shape", [(), (1,), (2, 1, 1), (1, 3, 1), (4,), (1, 3, 4), (2, 1, 4), (2, 3, 4)])
def test_fill_broadcasts_scale_and_x_like_numpy(generator, scale_shape):
    # scale per value, per channel (first or last axis), per row, or one for all; x per value,
    # one for all, or broadcast along an axis
    rng = np.random.default_rng(1)
    scale = rng.random(scale_shape).astype(np.float32) + np.float32(0.5)
    x = rng.random((2, 3, 4)).astype(np.float32)
    for xv in (x, np.float32(0.25), x[:, :1, :]):
        got = NoiseStream(4, 1, 1, generator).fill(np.empty((5, 2, 3, 4), np.float32), xv, scale)
        np.testing.assert_array_equal(got, xv + scale * _draw([5], (2, 3, 4), 4, 1, 1, generator))


def test_scale_runs():
    # the scale as the compiled kernel reads it: s[j // run] at flat position j of the sample
    for values, shape, count, run in (((), (3, 4, 5), 1, 60), ((3, 1, 1), (3, 4, 5), 3, 20), ((3, 4, 1), (3, 4, 5), 12, 5),
                                      ((1, 1, 3), (4, 5, 3), 60, 1), ((4, 1), (3, 4, 5), 60, 1),
                                      ((3, 1, 5), (3, 4, 5), 60, 1), ((), (), 1, 1), ((2,), (2,), 2, 1)):
        v = np.arange(1, 1 + math.prod(values), dtype=np.float32).reshape(values)
        got, r = noise.scale_runs(v, shape)
        assert (got.size, r) == (count, run), (values, shape)
        j = np.arange(math.prod(shape))
        np.testing.assert_array_equal(got[j // r], np.broadcast_to(v, shape).reshape(-1))
    for bad in ((3,), (1, 3, 4, 5)):
        with pytest.raises(ValueError):
            noise.scale_runs(np.ones(bad, np.float32), (3, 4, 5))


def test_the_generators_give_different_streams():
    if not noise.compiled():
        pytest.skip("onnxcert._kernels is not built")
    assert not np.any(_draw([8], (16,), generator=ZIGGURAT) == _draw([8], (16,), generator=BOX_MULLER))


@BOTH
def test_noise_is_standard_normal(generator):
    # 2^20 values over ImageNet-like and tiny samples: KS, the first four moments against their
    # sampling error (6 sd), and the mass beyond 3 and 4 sd against binomial quantiles
    for shape, count in (((3, 64, 64), 86), ((1, 8, 8), 16384)):
        z = _draw([count], shape, seed=11, generator=generator).ravel().astype(np.float64)
        n = z.size
        assert stats.kstest(z, "norm").pvalue > 1e-4
        assert abs(z.mean()) < 6 / math.sqrt(n)
        assert abs(z.var() - 1) < 6 * math.sqrt(2 / n)
        assert abs(stats.skew(z)) < 6 * math.sqrt(6 / n)
        assert abs(np.mean(z ** 4) - 3) < 6 * math.sqrt(96 / n)
        for t in (3.0, 4.0):
            assert _binomial_ok(int(np.count_nonzero(np.abs(z) > t)), n, 2 * stats.norm.sf(t))
        # the two halves of a sample (the Box-Muller cosines and sines) and neighbouring values
        # are uncorrelated
        flat = z.reshape(count, -1)
        p = noise.pairs(flat.shape[1])
        assert abs(np.corrcoef(flat[:, :p].ravel(), flat[:, p:2 * p].ravel())[0, 1]) < 6 / math.sqrt(n / 2)
        assert abs(np.corrcoef(z[:-1], z[1:])[0, 1]) < 6 / math.sqrt(n)


def _pairs_from(k: np.ndarray, angle: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    words = (k.astype(np.uint64) << np.uint64(24)) | angle.astype(np.uint64)
    c, s = np.empty((1, k.size), np.float32), np.empty((1, k.size), np.float32)
    box_muller(words[None], c, s)
    return c[0].astype(np.float64), s[0].astype(np.float64)


def test_the_tail_reaches_7_5_sd():
    # the smallest radial uniform is 2^-41: r = sqrt(82 ln 2) = 7.54 (24-bit uniforms stop at 5.9)
    c, s = _pairs_from(np.zeros(1), np.zeros(1))
    assert math.hypot(c[0], s[0]) == pytest.approx(math.sqrt(82 * math.log(2)), rel=1e-6)
    c, s = _pairs_from(np.array([2 ** 40 - 1]), np.zeros(1))
    assert np.isfinite(c).all() and abs(c[0]) < 1e-3  # the largest uniform: r = 0, no NaN


def test_the_deep_tail_has_the_normal_law():
    # Conditioned on u1 < q, -ln u1 = ln(1/q) + Exp(1): with q = 2^-20, r^2 / 2 - 20 ln 2 is Exp(1)
    # over the whole tail from 5.3 to 7.5 sd, which no sample of a few million normals reaches
    rng = np.random.default_rng(3)
    n = 200_000
    k = rng.integers(0, 2 ** 20, n)
    c, s = _pairs_from(k, rng.integers(0, 2 ** 24, n))
    excess = (c ** 2 + s ** 2) / 2 - 20 * math.log(2)
    assert stats.kstest(excess, "expon").pvalue > 1e-4
    # and the angle is uniform there: P(|cos| > |sin|) = 1/2
    assert _binomial_ok(int(np.count_nonzero(np.abs(c) > np.abs(s))), n, 0.5)
    # the whole stream, unconditioned: P(|z| > 4.5) over 2^23 values, against the binomial
    z = _draw([128], (256, 256), seed=7, generator=BOX_MULLER).ravel()
    assert _binomial_ok(int(np.count_nonzero(np.abs(z) > 4.5)), z.size, 2 * stats.norm.sf(4.5))


@BOTH
def test_the_sampler_draws_a_prefix_of_a_longer_run(generator, monkeypatch):
    # what the sequential mode relies on: n = m gives the first m estimation samples of n = M,
    # whatever the batch size and prefetch
    from onnxcert.sampling import Sampler

    monkeypatch.setenv(noise.HOST_NOISE_ENV, generator)

    def run(n, batch_size, prefetch):
        s = Sampler(pixel_logits, n0=30, n=n, seed=4, batch_size=batch_size, prefetch=prefetch)
        return s.sample(2, X, SCALE)

    long = run(1000, 64, True)
    for n, b, pre in ((137, 64, True), (137, 1, False), (500, 333, True)):
        short = run(n, b, pre)
        np.testing.assert_array_equal(short.score, long.score[:n])
        np.testing.assert_array_equal(short.margin, long.margin[:n])


# ---- which generator a process uses ----

@pytest.fixture
def fresh_warning(monkeypatch):
    monkeypatch.setattr(noise, "_warned", False)
    monkeypatch.delenv(noise.HOST_NOISE_ENV, raising=False)


def test_the_compiled_kernel_is_the_default_when_built(fresh_warning, caplog):
    if os.environ.get("ONNXCERT_REQUIRE_KERNELS"):
        assert noise.compiled(), "ONNXCERT_REQUIRE_KERNELS is set but onnxcert._kernels did not build"
    expected = ZIGGURAT if noise.compiled() else BOX_MULLER
    assert noise.host_generator() == expected
    assert NoiseStream(0, 0, 0).generator == expected
    from onnxcert.sampling import noise_generator
    assert noise_generator(False) == expected


def test_without_the_kernel_numpy_draws_and_says_so_once(fresh_warning, monkeypatch, caplog):
    monkeypatch.setattr(noise, "_kernels", None)  # as after an install without a C compiler
    with caplog.at_level("WARNING", logger="onnxcert"):
        assert noise.host_generator() == BOX_MULLER
        assert NoiseStream(0, 0, 1).generator == BOX_MULLER
        assert noise.host_generator() == BOX_MULLER
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1, warnings
    assert "onnxcert._kernels" in warnings[0] and BOX_MULLER in warnings[0] and "slower" in warnings[0]
    # asking for the compiled one by name is an error, in one line, naming the fix
    monkeypatch.setenv(noise.HOST_NOISE_ENV, ZIGGURAT)
    with pytest.raises(ConfigError, match="not built") as err:
        noise.host_generator()
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("value, expected", [("auto", None), ("", None), (BOX_MULLER, BOX_MULLER),
                                             (f" {BOX_MULLER} ", BOX_MULLER)])
def test_the_environment_variable_chooses(fresh_warning, monkeypatch, value, expected):
    monkeypatch.setenv(noise.HOST_NOISE_ENV, value)
    default = ZIGGURAT if noise.compiled() else BOX_MULLER
    assert noise.host_generator() == (expected or default)


@pytest.mark.parametrize("value", ["numpy", "ziggurat", "SFC64-ZIGGURAT1024", "sfc64-box-muller", "sfc64-ziggurat256"])
def test_an_unknown_generator_is_a_one_line_error(fresh_warning, monkeypatch, value):
    monkeypatch.setenv(noise.HOST_NOISE_ENV, value)
    with pytest.raises(ConfigError) as err:
        noise.host_generator()
    msg = str(err.value)
    assert "\n" not in msg and repr(value) in msg and ZIGGURAT in msg and BOX_MULLER in msg
    # the 256-layer generator of the releases before: named as replaced, not as unknown
    assert ("was replaced by sfc64-ziggurat1024" in msg) == (value == "sfc64-ziggurat256")


def test_a_run_without_the_kernel_uses_numpy_and_warns_once(tmp_path):
    # an install where the extension did not build, end to end in a fresh process: the run
    # succeeds, stderr says once that the NumPy generator is used, the report names it
    import json
    import subprocess
    import sys
    import textwrap
    from pathlib import Path

    import onnx_models as om

    root = Path(__file__).resolve().parents[1]
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(textwrap.dedent("""
        import sys
        class _Block:
            def find_spec(self, name, path=None, target=None):
                if name == "onnxcert._kernels":
                    raise ImportError("onnxcert._kernels blocked for a test")
                return None
        sys.meta_path.insert(0, _Block())
    """))
    model = om.channel_means(tmp_path / "m.onnx", gain=6.0)
    np.savez(tmp_path / "x.npz", x=np.random.default_rng(0).random((3, 3, 6, 5)).astype(np.float32), y=np.arange(3))
    env = {k: v for k, v in os.environ.items() if k != noise.HOST_NOISE_ENV}
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(root)])
    cmd = [sys.executable, "-c", "from onnxcert.cli import main; main()", "run", str(model), str(tmp_path / "x.npz"),
           "--sigma", "0.25", "--n0", "10", "--n", "50", "--methods", "naive", "-o", str(tmp_path / "r.json")]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stderr.count("onnxcert._kernels) is not built") == 1, proc.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["provenance"]["noise_generator"] == BOX_MULLER
    # and forcing the compiled one there is a one-line error, exit 2
    env[noise.HOST_NOISE_ENV] = ZIGGURAT
    cmd[-1] = str(tmp_path / "r2.json")
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("onnxcert: error:")]
    assert len(errors) == 1 and "not built" in errors[0] and "Traceback" not in proc.stderr, proc.stderr
    assert not (tmp_path / "r2.json").exists()
