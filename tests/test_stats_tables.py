"""confidence._BandTable: the bounds read Phi^{-1} of a band from a table, bit for bit what
computing it level by level gives (issue 17); and the tail and mean match np.unique's."""

from __future__ import annotations

import numpy as np
import pytest

from onnxcert.stats import DKWBand, EmpiricalTail, RankBand, cdf_bounds
from onnxcert.stats.berk_jones import bj_band
from onnxcert.stats.confidence import SampleMean


class Untabled:
    """The same band under a type the tables do not know: the bounds call phi_inv per level."""

    def __init__(self, band):
        self.band, self.n, self.alpha = band, band.n, band.alpha

    def lower(self, counts):
        return self.band.lower(counts)


def _same(a, b):
    for x, y in zip(a, b):
        assert x.a == y.a and x.sign == y.sign
        np.testing.assert_array_equal(x.widths, y.widths)
        np.testing.assert_array_equal(x.z, y.z)


# a hand-made rank band whose first beta has g and q both >= 1/2 (as rounding can make them),
# where phi_inv(q, g) is not -phi_inv(g, q)
ODD = RankBand(300, 0.01, np.array([3, 60, 200]), np.array([0.5, 0.2, 0.6]),
               np.array([0.5000001, 0.8, 0.4]), 0.01)


@pytest.mark.parametrize("band", [DKWBand(300, 0.01), DKWBand(5000, 0.001), bj_band(1000, 0.001), ODD],
                         ids=["dkw300", "dkw5000", "bj1000", "odd"])
def test_tabled_bounds_equal_level_by_level_bounds(band):
    rng = np.random.default_rng(1)
    for z in (rng.beta(5, 1, band.n), np.round(rng.random(band.n), 2), rng.beta(0.3, 0.3, band.n)):
        tail = EmpiricalTail.from_samples(z, 0.0, 1.0)
        _same(cdf_bounds(tail, band, 0.25), cdf_bounds(tail, Untabled(band), 0.25))


def test_tail_matches_np_unique_and_the_mean_of_the_clipped_samples():
    rng = np.random.default_rng(2)
    for z in (rng.random(1000) * 1.2 - 0.1, np.round(rng.random(500), 1), np.ones(7), np.array([0.3])):
        tail = EmpiricalTail.from_samples(z, 0.0, 1.0)
        clipped = np.clip(z, 0.0, 1.0)
        levels, counts = np.unique(clipped, return_counts=True)
        np.testing.assert_array_equal(tail.levels, levels)
        np.testing.assert_array_equal(tail.at_or_below, np.cumsum(counts))
        np.testing.assert_array_equal(tail.at_or_above, z.size - np.cumsum(counts) + counts)
        assert tail.mean == float(clipped.mean()) == SampleMean.from_samples(z, 0.0, 1.0).mean


def _whole(tail, band, sigma):
    """cdf_bounds as it was before the levels went in chunks: every per-level array at once."""
    from onnxcert.stats.confidence import StepBound, _after, _band_table

    a, b, v = tail.a, tail.b, tail.levels
    table = _band_table(band)
    g, q, z = table.lower(tail.at_or_above)
    lower = StepBound.from_probabilities(a, np.diff(v, prepend=a), g, q, -1, sigma, z)
    g_up, q_up, z = table.upper(tail.at_or_below)
    z = None if z is None else _after(np.inf, z)
    upper = StepBound.from_probabilities(a, np.diff(v, prepend=a, append=b), _after(1.0, q_up),
                                         _after(0.0, g_up), +1, sigma, z)
    return lower, upper


@pytest.mark.parametrize("chunk", [7, 1000, None], ids=["chunk7", "chunk1000", "default"])
def test_chunked_bounds_equal_the_whole_array_bounds(monkeypatch, chunk):
    """cdf_bounds goes through the levels CHUNK_LEVELS at a time, carrying an unfinished merge
    group into the next chunk: bit for bit the whole-array bounds, merged (above
    MERGE_MIN_LEVELS kept levels) or not, tabled or not, with int32 or int64 counts."""
    from onnxcert.stats import confidence

    if chunk is not None:
        monkeypatch.setattr(confidence, "CHUNK_LEVELS", chunk)
    rng = np.random.default_rng(3)
    for n in (1, 50, 3000, 20_000):
        samples = (rng.dirichlet([8.0] + [1.0] * 9, size=n)[:, 0], np.round(rng.random(n), 3), rng.beta(0.3, 5, n))
        for z in samples:
            tail = EmpiricalTail.from_samples(z, 0.0, 1.0)
            wide = EmpiricalTail(tail.a, tail.b, tail.n, tail.levels, tail.at_or_above.astype(np.int64),
                                 tail.at_or_below.astype(np.int64), tail.mean)
            for band in (DKWBand(n, 0.001), bj_band(max(n, 100), 0.001) if n >= 100 else DKWBand(n, 0.01)):
                for b in (band, Untabled(band)):
                    _same(cdf_bounds(tail, b, 0.25), _whole(wide, b, 0.25))
