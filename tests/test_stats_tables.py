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
