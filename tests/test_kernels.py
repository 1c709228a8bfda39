"""onnxcert._kernels: the compiled host noise (SFC64 + 1,024-layer ziggurat, exact wedge and tail).

The word stream must be NumPy's SFC64 stream bit for bit; the normals must have the Gaussian law
in every part of the ziggurat: the fast rectangles, the wedges between layer edges, the tail
beyond r. The draws are fixed by their seeds, so the statistical checks are deterministic; each
bound is set so that a correct kernel fails it with probability about 1e-6 at a random seed
(binomial quantiles at 1e-6 two-sided, chi-square and KS p-values above 1e-6 / 1e-4).
"""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest
from scipy import stats

from onnxcert import noise

K = pytest.importorskip("onnxcert._kernels", reason="onnxcert._kernels is not built")
X, F, R, V = (np.array(K._tables()[0]), np.array(K._tables()[1]), *K._tables()[2:])
L = X.size - 1  # layers
LEVEL = 1e-6
CHUNK = 1 << 22


def state(seed=5, index=3, stream=1) -> np.ndarray:
    bits = np.random.SFC64(np.random.SeedSequence(seed, spawn_key=(index, stream)))
    return np.array(bits.state["state"]["state"], dtype=np.uint64)


def normals(st, count) -> np.ndarray:
    out = np.empty(count)
    K._normals(st, out)
    return out


def binomial_ok(count: int, n: int, p: float) -> bool:
    return stats.binom.ppf(LEVEL / 2, n, p) <= count <= stats.binom.isf(LEVEL / 2, n, p)


# ---- the word stream ----

@pytest.mark.parametrize("seed, index, stream", [(0, 0, 0), (5, 3, 1), (2 ** 63 + 11, 12345, 1), (7, 0, 1)])
def test_the_words_are_numpys_sfc64_stream(seed, index, stream):
    bits = np.random.SFC64(np.random.SeedSequence(seed, spawn_key=(index, stream)))
    st = state(seed, index, stream)
    for count in (1, 7, 1000, 4096):
        got = np.empty(count, np.uint64)
        K._raw(st, got)
        np.testing.assert_array_equal(got, bits.random_raw(count))
        np.testing.assert_array_equal(st, bits.state["state"]["state"])  # the state, advanced in place


def test_fill_consumes_the_stream_in_order_however_it_is_cut():
    whole = np.empty(5000, np.float32)
    one, zero = np.ones(1, np.float32), np.zeros(1, np.float32)
    st = state()
    K.fill(st, whole, zero, one, 1)
    end = st.copy()
    st, parts = state(), []
    for cut in (1, 7, 1000, 1, 2991, 1000):
        part = np.empty(cut, np.float32)
        K.fill(st, part, zero, one, 1)
        parts.append(part)
    np.testing.assert_array_equal(np.concatenate(parts), whole)
    np.testing.assert_array_equal(st, end)
    # the float32 values are the double normals rounded once
    np.testing.assert_array_equal(whole, normals(state(), 5000).astype(np.float32))


def test_streams_of_other_keys_differ():
    draws = {key: normals(state(0, *key), 64) for key in ((0, 0), (0, 1), (1, 0), (1, 1))}
    values = list(draws.values())
    for i in range(len(values)):
        for j in range(i + 1, len(values)):
            assert not np.any(values[i] == values[j])


@pytest.mark.parametrize("call", [
    lambda: K.fill(state(), np.empty(4, np.float64), np.zeros(1, np.float32), np.ones(1, np.float32), 1),
    lambda: K.fill(state()[:3], np.empty(4, np.float32), np.zeros(1, np.float32), np.ones(1, np.float32), 1),
    lambda: K.fill(state(), np.empty(6, np.float32), np.zeros(4, np.float32), np.ones(4, np.float32), 1),
    lambda: K.fill(state(), np.empty(4, np.float32), np.zeros(2, np.float32), np.ones(1, np.float32), 1),
    lambda: K.fill(state(), np.empty(4, np.float32), np.zeros(4, np.float32), np.ones(2, np.float32), 3),
    lambda: K.fill(state(), np.empty(4, np.float32), np.zeros(4, np.float32), np.ones(4, np.float32), 0),
    lambda: K.fill(state(), np.empty(4, np.float32), np.zeros(0, np.float32), np.ones(0, np.float32), 1),
    lambda: K.fill(state(), np.empty((4, 4), np.float32)[:, :2], np.zeros(2, np.float32), np.ones(2, np.float32), 1),
    lambda: K.fill(state().astype(np.int32), np.empty(4, np.float32), np.zeros(1, np.float32), np.ones(1, np.float32), 1),
])
def test_bad_buffers_are_refused(call):
    with pytest.raises((TypeError, ValueError, BufferError)):
        call()


def test_one_scale_per_run_of_values():
    # scale [C] with run H W reads like the scale broadcast over a [C, H, W] sample
    x = np.linspace(-1, 1, 24, dtype=np.float32)
    per_channel = np.array([0.5, 2.0, 0.25], np.float32)
    a, b = np.empty((5, 24), np.float32), np.empty((5, 24), np.float32)
    K.fill(state(), a, x, per_channel, 8)
    K.fill(state(), b, x, np.repeat(per_channel, 8), 1)
    np.testing.assert_array_equal(a, b)
    z = normals(state(), 120).astype(np.float32).reshape(5, 24)
    np.testing.assert_array_equal(a, x + np.repeat(per_channel, 8) * z)


def test_a_read_only_state_is_refused():
    st = state()
    st.flags.writeable = False
    with pytest.raises((TypeError, ValueError, BufferError)):
        K.fill(st, np.empty(4, np.float32), np.zeros(1, np.float32), np.ones(1, np.float32), 1)


# ---- the tables ----

def test_every_layer_has_the_same_area():
    # closed forms, f(x) = exp(-x^2 / 2): the base strip is r f(r) plus the tail's integral, each
    # layer i >= 1 is x_i (f(x_{i+1}) - f(x_i)), the virtual base width x_0 = v / f(r)
    f = lambda x: np.exp(-x * x / 2)
    assert L == 1024 and X[1] == R and X[L] == 0 and F[L] == 1
    # f at the double-rounded x_i: off by up to x_i^2 2^-53 (1.8e-15 relative at x = r), plus exp's ulp
    np.testing.assert_allclose(F, f(X), rtol=4e-15)
    assert V == pytest.approx(R * f(R) + math.sqrt(math.pi / 2) * math.erfc(R / math.sqrt(2)), rel=1e-14)
    assert X[0] * F[1] == pytest.approx(V, rel=1e-14)
    np.testing.assert_allclose(X[1:L] * (F[2:] - F[1:L]), V, rtol=1e-12)
    assert np.all(np.diff(X) < 0)


def test_words_per_value_match_the_closed_form():
    # The cost the layer count buys: an attempt leaves the fast path in layer i >= 1 with
    # probability 1 - x_{i+1} / x_i (then one more word, the wedge's height), in layer 0 with
    # 1 - x_1 / x_0 (then the tail, two words a try, a try kept with probability
    # q = r e^{r^2/2} sqrt(2 pi) Q(r)); an attempt is kept with probability sqrt(pi/2) / (L v).
    # The SFC64 counter (state[3]) counts the words. 256 layers spent 0.022 extra words a value.
    keep = math.sqrt(math.pi / 2) / (L * V)
    wedge = np.sum(1 - X[2:] / X[1:L]) / L
    tail = (1 - X[1] / X[0]) / L
    q = R * math.exp(R * R / 2) * math.sqrt(2 * math.pi) * stats.norm.sf(R)
    expected = (1 / keep - 1) + (wedge + 2 / q * tail) / keep
    st, n = state(3, 1, 1), 1 << 22
    start = int(st[3])
    normals(st, n)
    extra = (int(st[3]) - start - n) / n
    # a value's extra words are rarely above 2, so their variance is below 4 times their mean
    assert abs(extra - expected) < 6 * math.sqrt(4 * expected / n), (extra, expected)
    assert expected < 0.0065


# ---- the law ----

def _edges() -> np.ndarray:
    """Signed bin edges: each interval between layer edges [x_{i+1}, x_i] (the wedges; i = 1..1023,
    and [0, x_1023]) cut in 4, plus [r, r + 0.5], [r + 0.5, r + 1], [r + 1, inf), on both sides."""
    inner = [np.linspace(X[i + 1], X[i], 5)[:-1] for i in range(L - 1, 0, -1)]
    pos = np.concatenate([*inner, [R, R + 0.5, R + 1, np.inf]])
    return np.concatenate([-pos[::-1], pos[1:]])


@pytest.fixture(scope="module")
def big_draw():
    """2^24 normals of one stream, reduced as they come: moments, tail counts, binned counts, the
    values beyond r, and the first 2^22 values for KS."""
    st, n = state(11, 2, 1), 1 << 24
    edges = _edges()
    sums, counts = np.zeros(5), np.zeros(edges.size - 1, np.int64)
    tails = {t: 0 for t in (2.0, 3.0, 4.0, 5.0)}
    beyond, first = [], None
    for _ in range(n // CHUNK):
        z = normals(st, CHUNK)
        first = z.copy() if first is None else first
        sums += [z.sum(), (z ** 2).sum(), (z ** 3).sum(), (z ** 4).sum(), 0]
        a = np.abs(z)
        for t in tails:
            tails[t] += int(np.count_nonzero(a > t))
        counts += np.bincount(np.searchsorted(edges, z, side="right") - 1, minlength=edges.size - 1)[:edges.size - 1]
        beyond.append(z[a > R])
    return {"n": n, "sums": sums, "tails": tails, "edges": edges, "counts": counts,
            "beyond": np.concatenate(beyond), "first": first}


def test_ks_and_moments(big_draw):
    n, (s1, s2, s3, s4, _) = big_draw["n"], big_draw["sums"]
    assert stats.kstest(big_draw["first"], "norm").pvalue > 1e-4
    assert abs(s1 / n) < 5 / math.sqrt(n)
    assert abs(s2 / n - 1) < 5 * math.sqrt(2 / n)
    assert abs(s3 / n) < 5 * math.sqrt(15 / n)
    assert abs(s4 / n - 3) < 5 * math.sqrt(96 / n)


def test_tail_frequencies(big_draw):
    for t, count in big_draw["tails"].items():
        assert binomial_ok(count, big_draw["n"], 2 * stats.norm.sf(t)), (t, count)


def test_binned_against_phi_in_every_layer_and_wedge(big_draw):
    # ~8,200 signed bins that follow the layer edges (4 per wedge interval): a chi-square against
    # Phi differences; the two signs binned apart, so a sign bit that leaks the layer shows
    edges, counts, n = big_draw["edges"], big_draw["counts"], big_draw["n"]
    expected = n * np.diff(stats.norm.cdf(edges))
    assert counts.sum() == n
    chi2 = float(np.sum((counts - expected) ** 2 / expected))
    assert stats.chi2.sf(chi2, edges.size - 2) > LEVEL, chi2
    # and no single bin is off by more than its binomial quantiles
    p = np.diff(stats.norm.cdf(edges))
    lo, hi = stats.binom.ppf(LEVEL / 2 / p.size, n, p), stats.binom.isf(LEVEL / 2 / p.size, n, p)
    bad = np.flatnonzero((counts < lo) | (counts > hi))
    assert bad.size == 0, [(edges[i], edges[i + 1], counts[i], expected[i]) for i in bad[:5]]


def test_values_beyond_r_have_the_conditional_law(big_draw):
    # every |z| > r comes from the tail (layer 0): conditional on |z| > r, P(|z| <= t) is
    # 1 - Q(t) / Q(r), and both signs are equally likely
    z = big_draw["beyond"]
    assert binomial_ok(z.size, big_draw["n"], 2 * stats.norm.sf(R))
    assert stats.kstest(np.abs(z), lambda t: 1 - stats.norm.sf(t) / stats.norm.sf(R)).pvalue > 1e-4
    assert binomial_ok(int(np.count_nonzero(z > 0)), z.size, 0.5)


def test_the_tail_routine_has_the_exact_conditional_law():
    # 2^20 draws of Marsaglia's tail alone, against 1 - Q(t) / Q(r): KS, and the mass beyond
    # r + 0.5, r + 1, r + 2 against binomial quantiles (a tail without its rejection step is
    # r + Exp(r), too heavy out there)
    t = np.empty(1 << 20)
    K._tail(state(3, 1, 1), t)
    assert t.min() > R
    assert stats.kstest(t, lambda v: 1 - stats.norm.sf(v) / stats.norm.sf(R)).pvalue > 1e-4
    for d in (0.5, 1.0, 2.0):
        p = stats.norm.sf(R + d) / stats.norm.sf(R)
        assert binomial_ok(int(np.count_nonzero(t > R + d)), t.size, p), d


@pytest.mark.parametrize("layer", [1, 2, 100, 500, 900, 1023])
def test_each_wedge_keeps_x_with_density_f_minus_the_layer_floor(layer):
    # The wedges carry about 0.4% of the mass at 1,024 layers, too little for the binned test
    # above to see a wrong wedge test: so one layer's wedge alone (zig_wedge, as zig_slow runs it).
    # A word whose position lies in [x_{i+1}, x_i] is kept with probability
    # (f(x) - f_i) / (f_{i+1} - f_i), so the kept x have density proportional to f(x) - f(x_i):
    # CDF (sqrt(2 pi) (Phi(t) - Phi(a)) - f_i (t - a)) / the same at t = x_i, a = x_{i+1}.
    lo, hi, floor = X[layer + 1], X[layer], F[layer]
    mass = lambda t: math.sqrt(2 * math.pi) * (stats.norm.cdf(t) - stats.norm.cdf(lo)) - floor * (t - lo)
    x = np.empty(1 << 15)
    K._wedge(state(7, layer, 1), x, layer)
    assert lo <= x.min() and x.max() <= hi
    assert stats.kstest(x, lambda t: mass(t) / mass(hi)).pvalue > 1e-4


def test_the_wedge_hook_refuses_the_base_layer():
    with pytest.raises(ValueError):
        K._wedge(state(), np.empty(1), 0)


# ---- the GIL ----

def test_fill_releases_the_gil():
    # While a worker thread fills, this thread runs Python: it sees the buffer's first value
    # written while its last is not yet. With the GIL held for the whole fill, this thread could
    # only look before the fill starts or after it ends, never in between. Up to 5 tries, so a
    # busy machine that starves this thread for a whole fill once does not fail the test.
    n = 1 << 24
    one, zero = np.ones(1, np.float32), np.zeros(1, np.float32)
    for _ in range(5):
        out = np.full(n, np.nan, np.float32)
        started = threading.Event()

        def work():
            started.set()
            K.fill(state(), out, zero, one, 1)

        worker = threading.Thread(target=work)
        worker.start()
        started.wait()
        seen_partial = False
        while worker.is_alive():
            if not np.isnan(out[0]):
                seen_partial = bool(np.isnan(out[-1]))
                break
        worker.join()
        assert not np.isnan(out).any()
        if seen_partial:
            return
    pytest.fail("never saw a fill in progress: the kernel holds the GIL")


def test_the_noise_module_uses_the_kernel():
    assert noise.compiled() and noise._kernels is K


# ---- the measures of a batch (sampling.batch_measures, sampling.column_sums) ----

def _rows_cases():
    rng = np.random.default_rng(8)
    cases = {
        "logits float32": (rng.standard_normal((500, 10)) * 6).astype(np.float32),
        "logits float64, wide range": rng.standard_normal((300, 7)) * 300,
        "logits with exact ties": rng.integers(-2, 3, (400, 5)).astype(np.float32),
        "logits, some -inf": np.where(rng.random((300, 6)) < 0.3, -np.inf, rng.standard_normal((300, 6))),
        "1000 classes": rng.standard_normal((40, 1000)).astype(np.float32),
        "one class": rng.standard_normal((20, 1)).astype(np.float32),
    }
    p = rng.dirichlet(np.ones(10), 500)
    cases["probabilities float64"] = p
    cases["probabilities float32, ties, out of [0, 1]"] = np.concatenate(
        [p[:200].astype(np.float32), np.full((50, 10), 0.1, np.float32),
         (p[:100] * 1.3 - 0.05).astype(np.float32)])
    return cases


CASES = _rows_cases()


@pytest.mark.parametrize("name", list(CASES))
def test_compiled_measures_equal_the_numpy_ones(name):
    from onnxcert.sampling import batch_measures, column_sums

    rows = CASES[name]
    kind = "probabilities" if name.startswith("probabilities") else "logits"
    k = rows.shape[1]
    for c in sorted({0, k // 2, k - 1}):
        got = {}
        for compiled in (True, False):
            score, margin = np.full(rows.shape[0], np.nan), np.full(rows.shape[0], np.nan)
            votes = batch_measures(rows.copy(), kind, c, score, margin, compiled=compiled)
            got[compiled] = score, margin, votes
        (s1, m1, v1), (s0, m0, v0) = got[True], got[False]
        assert v1 == v0  # the same tie rule: the first largest
        np.testing.assert_allclose(s1, s0, rtol=2e-15, atol=1e-300)
        np.testing.assert_allclose(m1, m0, rtol=0, atol=2e-15)  # margins in [-1, 1]; may be near 0
    # two batches of the selection's running sums, after a nonzero start
    start = np.linspace(0, 1, k)
    t1 = column_sums(rows[:100], kind, start.copy(), compiled=True)
    t1 = column_sums(rows[100:], kind, t1, compiled=True)
    t0 = column_sums(rows[100:], kind, column_sums(rows[:100], kind, start.copy(), compiled=False), compiled=False)
    np.testing.assert_allclose(t1, t0, rtol=1e-14)
    assert column_sums(rows, kind, None, compiled=True).shape == (k,)


def test_ties_are_won_by_the_first_class():
    from onnxcert.sampling import batch_measures

    rows = np.array([[1, 3, 3, 0], [3, 3, 3, 3], [0, 0, 5, 5]], np.float32)
    for c, votes, zero_margins in ((0, 1, [1]), (1, 1, [0, 1]), (2, 1, [0, 1, 2]), (3, 0, [1, 2])):
        s, m = np.empty(3), np.empty(3)
        assert batch_measures(rows, "logits", c, s, m, compiled=True) == votes, c
        assert list(np.flatnonzero(m == 0)) == zero_margins, (c, m)


def test_the_measures_kernel_refuses_what_it_cannot_read():
    s, m = np.empty(2), np.empty(2)
    with pytest.raises(TypeError):
        K.measures(np.zeros((2, 3), np.float16), 0, 0, s, m)
    with pytest.raises(TypeError):
        K.measures(np.zeros(6, np.float32), 0, 0, s, m)
    with pytest.raises(ValueError):
        K.measures(np.zeros((2, 3), np.float32), 0, 3, s, m)
    with pytest.raises(ValueError):
        K.measures(np.zeros((2, 3), np.float32), 0, 0, np.empty(3), m)
    with pytest.raises(ValueError):
        K.column_sums(np.zeros((2, 3), np.float32), 0, np.zeros(4))
    # float16 rows, or rows that are not contiguous, go the NumPy way in the sampler's wrapper
    from onnxcert.sampling import batch_measures
    rows = np.random.default_rng(0).standard_normal((5, 8)).astype(np.float16)
    s1, m1, s0, m0 = (np.empty(5) for _ in range(4))
    assert batch_measures(rows, "logits", 2, s1, m1, compiled=True) == batch_measures(rows, "logits", 2, s0, m0)
    np.testing.assert_array_equal(s1, s0)
    wide = np.random.default_rng(1).standard_normal((5, 16))[:, ::2]
    assert batch_measures(wide, "logits", 1, s1, m1, compiled=True) == batch_measures(wide, "logits", 1, s0, m0)
    np.testing.assert_array_equal(m1, m0)
