"""Certified bounds on the smoothed expectation of a confidence measure (Kumar et al. 2020).

Both theorems give bounds of one shape: for a perturbation of L2 norm at most R,

    lower(R) = a + sum_j w_j * Phi(z_j - R / sigma)
    upper(R) = a + sum_j w_j * Phi(z_j + R / sigma)

- Theorem 1 (``naive``): one term, w = b - a and z = Phi^{-1}(p), where p bounds
  (E[Z] - a) / (b - a) by Hoeffding's inequality.
- Theorem 2 (``cdf-*``): one term per distinct sampled value v_j, with w_j = v_j - v_{j-1}
  (v_0 = a) and z_j = Phi^{-1}(g(N_j)), g a simultaneous lower band on G(s) = P(Z >= s) and
  N_j the number of samples >= v_j. Using every distinct value as a level is the exact integral
  a + int_a^b Phi(Phi^{-1}(g(s)) - R/sigma) ds, at least as tight as any subset of levels.

Each bound holds with probability at least 1 - alpha over the samples. The lower and the upper
bound are separate one-sided statements, each at level 1 - alpha.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import special

from .bands import DKWBand, RankBand
from .bounds import hoeffding_eps, phi_inv

INF = math.inf
MERGE_MIN_LEVELS = 4096  # above this, levels are merged by Jensen's inequality (see StepBound.merged)
MERGE_STEP = 1e-3  # merge levels whose Phi^{-1}(p) lie in the same interval of this width
CHUNK_LEVELS = 1 << 14  # cdf_bounds goes through the levels this many at a time (memory)


@dataclass(frozen=True)
class StepBound:
    """a + sum_j widths[j] * Phi(z[j] + sign * R / sigma), monotone in R."""

    a: float
    widths: np.ndarray
    z: np.ndarray
    sign: int
    sigma: float

    @classmethod
    def build(cls, a, widths, z, sign, sigma) -> "StepBound":
        widths = np.asarray(widths, dtype=np.float64)
        z = np.asarray(z, dtype=np.float64)
        keep = (widths > 0) & (z > -np.inf)
        widths, z = widths[keep], z[keep]
        if z.size > 1:
            # equal z (ties in the band) merge exactly; fewer terms to evaluate
            starts = np.flatnonzero(np.r_[True, z[1:] != z[:-1]])
            widths, z = np.add.reduceat(widths, starts), z[starts]
        return cls(float(a), widths, z, int(sign), float(sigma))

    @classmethod
    def from_probabilities(cls, a, widths, p, q, sign, sigma, z=None) -> "StepBound":
        """Terms w_j Phi(Phi^{-1}(p_j) + sign t), with q = 1 - p carried for precision.

        ``z``, when given, is ``phi_inv(p, q)`` computed already (e.g. read from a band's table).
        Above MERGE_MIN_LEVELS terms, levels are merged (``merged``): a bound that is never
        less conservative and differs from the exact sum by a second-order amount.
        """
        widths = np.asarray(widths, dtype=np.float64)
        p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
        keep = (widths > 0) & (p > 0)
        kept = np.flatnonzero(keep)
        del keep
        if kept.size and kept[-1] - kept[0] + 1 == kept.size:  # one run of levels: views, no copies
            keep = slice(int(kept[0]), int(kept[-1]) + 1)
        else:
            keep = kept
        del kept
        widths, p, q = widths[keep], p[keep], q[keep]
        z = None if z is None else z[keep]
        if z is None:
            z = phi_inv(p, q)
        if z.size > MERGE_MIN_LEVELS:
            return cls.merged(a, widths, z, p, q, sign, sigma)
        return cls.build(a, widths, z, sign, sigma)

    @classmethod
    def merged(cls, a, widths, z, p, q, sign, sigma, step: float = MERGE_STEP) -> "StepBound":
        """Merge runs of levels whose z fall in the same interval of width ``step``.

        For t = R / sigma >= 0, u -> Phi(Phi^{-1}(u) - t) is convex and u -> Phi(Phi^{-1}(u) + t)
        is concave (their derivatives exp(+-t z - t^2 / 2) are monotone in z). By Jensen's
        inequality, replacing the p_j of a run by their width-weighted mean therefore lowers a
        lower bound (sign -1) and raises an upper bound (sign +1), at every R at once: the merged
        bound is valid wherever the exact one is. The loss is second order in the spread of p
        within a run (below 1e-7 in the tests); the cost falls from one term per distinct
        sampled value to one per interval of z.
        """
        keys = np.divide(z, step)
        np.floor(keys, out=keys)
        keys[~np.isfinite(z)] = np.inf
        starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
        del keys
        w = np.add.reduceat(widths, starts)
        p_bar = np.add.reduceat(widths * p, starts) / w
        q_bar = np.add.reduceat(widths * q, starts) / w
        return cls.build(a, w, phi_inv(p_bar, q_bar), sign, sigma)

    def at(self, radii) -> np.ndarray:
        """The bound at each radius in ``radii``."""
        t = np.atleast_1d(np.asarray(radii, dtype=np.float64)) / self.sigma
        if self.z.size == 0:
            return np.full(t.shape, self.a)
        return self.a + special.ndtr(self.z[:, None] + self.sign * t[None, :]).T @ self.widths

    def _at_scalar(self, radius: float) -> float:
        return self.a + float(self.widths @ special.ndtr(self.z + self.sign * radius / self.sigma))

    def _at_each(self, radii: np.ndarray) -> np.ndarray:
        """``_at_scalar`` at each radius, bit for bit (one dot product per radius: a matrix
        product over several radii may round differently), with one ``ndtr`` call for all."""
        terms = special.ndtr(self.z[None, :] + (self.sign * radii / self.sigma)[:, None])
        return self.a + np.array([self.widths @ row for row in terms])

    def limit(self) -> float:
        """The bound as R -> infinity (lower bounds only): terms with z = +inf stay."""
        return self.a + float(self.widths[np.isposinf(self.z)].sum())

    def radius(self, c: float) -> float | None:
        """The largest R with lower(R) >= c, for a lower bound (sign = -1).

        None when lower(0) < c, and infinity when lower(R) >= c for every R.
        Solved by bracketing on the monotone bound (Illinois regula falsi); the returned R is the
        bracket's lower end, so lower(R) >= c always holds, and the bracket is narrower than
        1e-10 (relative above R = 1), so R is at most that far below the exact root.
        """
        return self.radii([c])[0]

    def radii(self, thresholds) -> list[float | None]:
        """``radius`` for each threshold, all searched at once (``_roots``)."""
        cs = [float(c) for c in thresholds]
        at_zero, limit = self._at_scalar(0.0), self.limit()
        out: list[float | None] = [None if at_zero < c else INF if c <= limit else 0.0 for c in cs]
        todo = [i for i, c in enumerate(cs) if at_zero >= c > limit]
        if todo:
            for i, r in zip(todo, self._roots(np.array([cs[i] for i in todo]), at_zero)):
                out[i] = float(r)
        return out

    def _roots(self, c: np.ndarray, at_zero: float, grid: int = 8) -> np.ndarray:
        """For each c in ``c`` (at_zero >= c > limit): the largest R found with bound(R) >= c.

        The bound is evaluated at ``grid`` radii and at each c's own upper end in one call, which
        brackets every root; then Illinois regula falsi runs on all brackets at once, one
        evaluation of the bound at every unfinished bracket per step (``_largest_above``)."""
        finite = np.isfinite(self.z)
        frac = (c - self.limit()) / float(self.widths[finite].sum())
        # every finite term is <= Phi(z_max - t): past t_hi the bound is below c
        t_hi = self.z[finite].max() - special.ndtri(np.minimum(frac, 1.0)) + 1.0
        ends = np.maximum(t_hi, 1e-12) * self.sigma
        points = np.r_[0.0, np.linspace(0.0, ends.max(), grid + 1)[1:], ends]
        values = np.r_[at_zero, self._at_each(points[1:])]
        order = np.argsort(points, kind="stable")
        points, values = points[order], values[order]
        lo, f_lo, hi, f_hi = (np.empty(c.size) for _ in range(4))
        for k, (ck, end) in enumerate(zip(c, ends)):
            f = values - ck
            inside = points <= end
            j = int(np.flatnonzero(inside & (f >= 0))[-1])  # points[0] = 0, where f >= 0
            above = np.flatnonzero(inside & (f < 0) & (points > points[j]))
            h = int(above[0]) if above.size else int(np.flatnonzero(points == end)[-1])
            lo[k], f_lo[k], hi[k], f_hi[k] = points[j], f[j], points[h], f[h]
        return _largest_above(lambda r, i: self._at_each(r) - c[i], lo, f_lo, hi, f_hi)


def _largest_above(f, lo, f_lo, hi, f_hi, xtol: float = 1e-10, max_iter: int = 200) -> np.ndarray:
    """For decreasing functions f_i with f_i(lo_i) >= 0 > f_i(hi_i): for each i, the largest r
    found in [lo_i, hi_i] with f_i(r) >= 0, to within xtol (relative above 1). Illinois variant
    of regula falsi on all brackets at once, ``f(r, i)`` evaluating f_i(r_i) for the indices i;
    it keeps every bracket, so each result is conservative. Gives hi_i where f_i(hi_i) >= 0
    (numerically flat)."""
    lo, f_lo, hi, f_hi = (np.array(v, dtype=np.float64) for v in (lo, f_lo, hi, f_hi))
    flat = f_hi >= 0
    side = np.zeros(lo.size, dtype=np.int8)
    for _ in range(max_iter):
        i = np.flatnonzero(~flat & (hi - lo > xtol * np.maximum(1.0, lo)))
        if i.size == 0:
            break
        r = (lo[i] * f_hi[i] - hi[i] * f_lo[i]) / (f_hi[i] - f_lo[i])
        bad = ~((lo[i] < r) & (r < hi[i]))
        r[bad] = 0.5 * (lo[i][bad] + hi[i][bad])
        fr = f(r, i)
        up, down = i[fr >= 0], i[fr < 0]
        lo[up], f_lo[up] = r[fr >= 0], fr[fr >= 0]
        f_hi[up[side[up] == +1]] *= 0.5
        side[up] = +1
        hi[down], f_hi[down] = r[fr < 0], fr[fr < 0]
        f_lo[down[side[down] == -1]] *= 0.5
        side[down] = -1
    return np.where(flat, hi, lo)


@dataclass(frozen=True)
class EmpiricalTail:
    """Distinct sampled values v_1 < ... < v_m of a measure, with N_j = #{Z >= v_j} and
    M_j = #{Z <= v_j}. Computed once per measure and shared by the CDF methods. The counts are
    int32 when n allows (memory: they are two of the three arrays kept per level)."""

    a: float
    b: float
    n: int
    levels: np.ndarray
    at_or_above: np.ndarray
    at_or_below: np.ndarray
    mean: float

    @classmethod
    def from_samples(cls, values, a: float, b: float) -> "EmpiricalTail":
        values = np.clip(np.asarray(values, dtype=np.float64), a, b)  # our copy: sorted in place
        n, mean = values.size, float(values.mean())
        values.sort()
        if n == 0 or np.isnan(values[-1]):  # np.unique's NaN rules
            levels, counts = np.unique(values, return_counts=True)
            below = np.cumsum(counts)
            return cls(a, b, n, levels, n - below + counts, below, mean)
        new = np.empty(n, dtype=bool)
        new[0] = True
        np.not_equal(values[1:], values[:-1], out=new[1:])
        starts = _first_of_runs(new)  # the first sample of each level, in sorted order
        del new
        levels = _compact(values, starts)
        del values
        below = np.empty_like(starts)
        below[:-1], below[-1] = starts[1:], n
        np.subtract(n, starts, out=starts)
        return cls(a, b, n, levels, starts, below, mean)


def _first_of_runs(new: np.ndarray) -> np.ndarray:
    """np.flatnonzero(new), as int32 when the size allows, made CHUNK_LEVELS at a time (memory:
    no int64 index array beside the sorted samples)."""
    dtype = np.int32 if new.size < np.iinfo(np.int32).max else np.int64
    out = np.empty(np.count_nonzero(new), dtype=dtype)
    done = 0
    for start in range(0, new.size, CHUNK_LEVELS):
        found = np.flatnonzero(new[start:start + CHUNK_LEVELS])
        found += start
        out[done:done + found.size] = found
        done += found.size
    return out


def _compact(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """values[starts] for increasing ``starts``, written over the front of ``values`` (ours):
    starts[j] >= j, so each chunk reads only places that no earlier chunk wrote."""
    m = starts.size
    for start in range(0, m, CHUNK_LEVELS):
        stop = min(start + CHUNK_LEVELS, m)
        values[start:stop] = values[starts[start:stop]]
    if m < values.size:
        try:
            values.resize(m)  # in place: no second array of the levels beside the samples
        except ValueError:  # referenced elsewhere (never, for our own copy): copy instead
            return values[:m].copy()
    return values


@dataclass(frozen=True)
class SampleMean:
    """The mean of n samples of a measure in [a, b]: all that Theorem 1 (``naive``) needs."""

    a: float
    b: float
    n: int
    mean: float

    @classmethod
    def from_samples(cls, values, a: float, b: float) -> "SampleMean":
        values = np.asarray(values, dtype=np.float64)
        if not (values.flags.c_contiguous and values.size and values.min() >= a and values.max() <= b):
            values = np.clip(values, a, b)  # the same numbers, and mean, as EmpiricalTail's
        return cls(a, b, values.size, float(values.mean()))


def naive_bounds(tail: EmpiricalTail | SampleMean, alpha: float, sigma: float) -> tuple[StepBound, StepBound]:
    """Theorem 1 with Hoeffding's bound on the mean, eps = sqrt(ln(1/alpha) / (2n)).

    The paper's Section 5.2 baseline: p = (mean - a) / (b - a) -/+ eps.
    """
    a, b = tail.a, tail.b
    eps = hoeffding_eps(tail.n, alpha)
    p_mean = (tail.mean - a) / (b - a)
    q_mean = (b - tail.mean) / (b - a)
    z_low = phi_inv(p_mean - eps, q_mean + eps)
    z_up = phi_inv(p_mean + eps, q_mean - eps)
    lower = StepBound.build(a, [b - a], [z_low], -1, sigma)
    upper = StepBound.build(a, [b - a], [z_up], +1, sigma)
    return lower, upper


def cdf_bounds(tail: EmpiricalTail, band, sigma: float) -> tuple[StepBound, StepBound]:
    """Theorem 2 with a simultaneous band, every distinct sampled value a level.

    The levels go through the band and the merge CHUNK_LEVELS at a time (``_Merger``), so the
    per-level arrays (widths, p, q, z, keys) never exist for all levels at once. Every merged
    group is still reduced whole in one call, so the bounds are bit for bit those of
    ``StepBound.from_probabilities`` on the full arrays (tests/test_stats_tables.py checks it).
    """
    a, b, v, m = tail.a, tail.b, tail.levels, tail.levels.size
    table = _band_table(band)
    lower, upper = _Merger(a, -1, sigma), _Merger(a, +1, sigma)
    # upper: G(s) <= 1 - P(Z <= v_j) <= 1 - g(M_j) on (v_j, v_{j+1}]; and G <= 1 on (a, v_1]
    first = np.array([(v[0] if m else b) - a])
    upper.add(first, np.ones(1), np.zeros(1), None if table.low is None else np.full(1, np.inf))
    for start in range(0, m, CHUNK_LEVELS):
        stop = min(start + CHUNK_LEVELS, m)
        g, q, z = table.lower(tail.at_or_above[start:stop])
        lower.add(np.diff(v[start:stop], prepend=v[start - 1] if start else a), g, q, z)
        g_up, q_up, z = table.upper(tail.at_or_below[start:stop])
        ahead = v[start:stop + 1]
        widths = np.diff(ahead, append=b) if stop == m else np.diff(ahead)
        upper.add(widths, q_up, g_up, z)
        del g, q, z, g_up, q_up, widths
    return lower.bound(), upper.bound()


class _Merger:
    """``StepBound.from_probabilities`` fed in consecutive pieces of levels.

    Below MERGE_MIN_LEVELS kept terms the pieces are kept and built exactly; above, each piece's
    complete merge groups (runs of equal floor(z / MERGE_STEP)) are reduced at once and the last,
    possibly unfinished, group is carried into the next piece, so that every group is summed by
    one ``reduceat`` over exactly its own terms, as in ``StepBound.merged``.
    """

    def __init__(self, a: float, sign: int, sigma: float):
        self.a, self.sign, self.sigma = a, sign, sigma
        self.pending: list[tuple[np.ndarray, ...]] = []
        self.kept = 0
        self.carry: tuple[np.ndarray, ...] | None = None  # the unfinished group, and its key
        self.carry_key = 0.0
        self.groups: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def add(self, widths, p, q, z) -> None:
        keep = (widths > 0) & (p > 0)
        keep = slice(None) if keep.all() else np.flatnonzero(keep)  # views when nothing drops
        widths, p, q = widths[keep], p[keep], q[keep]
        z = phi_inv(p, q) if z is None else z[keep]
        if self.carry is not None:
            self._merge(widths, p, q, z)
            return
        self.pending.append((widths, p, q, z))
        self.kept += widths.size
        if self.kept > MERGE_MIN_LEVELS:
            self.carry = ()
            self._merge(*_joined(self.pending))
            self.pending = []

    def _merge(self, widths, p, q, z) -> None:
        if widths.size == 0:
            return
        keys = np.divide(z, MERGE_STEP)
        np.floor(keys, out=keys)
        keys[~np.isfinite(z)] = np.inf
        terms = (widths, p, q, z)
        if self.carry:
            other = np.flatnonzero(keys != self.carry_key)
            joined = int(other[0]) if other.size else keys.size
            self.carry = _joined([self.carry, tuple(v[:joined] for v in terms)])
            if joined == keys.size:
                return
            self._emit(*self.carry[:3], np.zeros(1, dtype=np.intp))
            terms, keys = tuple(v[joined:] for v in terms), keys[joined:]
        starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
        last = int(starts[-1])
        if last:
            self._emit(*(v[:last] for v in terms[:3]), starts[:-1])
        self.carry, self.carry_key = tuple(v[last:] for v in terms), keys[last]

    def _emit(self, widths, p, q, starts) -> None:
        w = np.add.reduceat(widths, starts)
        self.groups.append((w, np.add.reduceat(widths * p, starts) / w, np.add.reduceat(widths * q, starts) / w))

    def bound(self) -> StepBound:
        if self.carry is None:
            widths, _, _, z = _joined(self.pending) if self.pending else (np.empty(0),) * 4
            return StepBound.build(self.a, widths, z, self.sign, self.sigma)
        if self.carry:
            self._emit(*self.carry[:3], np.zeros(1, dtype=np.intp))
        w, p_bar, q_bar = _joined(self.groups)
        return StepBound.build(self.a, w, phi_inv(p_bar, q_bar), self.sign, self.sigma)


def _joined(parts) -> tuple[np.ndarray, ...]:
    """Column-wise concatenation of tuples of arrays (no copy for a single tuple)."""
    if len(parts) == 1:
        return tuple(parts[0])
    return tuple(np.concatenate(column) for column in zip(*parts))


def _after(first: float, values: np.ndarray) -> np.ndarray:
    """np.r_[first, values] as float64."""
    out = np.empty(values.size + 1)
    out[0], out[1:] = first, values
    return out


class _BandTable:
    """A band's bounds and their Phi^{-1}, looked up by count instead of computed level by level.

    ``lower(counts)`` is (g, q, phi_inv(g, q)) and ``upper(counts)`` is (g, q, phi_inv(q, g)),
    bit for bit, for (g, q) = band.lower(counts). DKWBand: Phi^{-1} is tabulated for every count
    0..n (8 bytes a count); RankBand: per rank, with each count's rank slot (4 bytes a count).
    Another band type gets no table (z None: the bound calls phi_inv itself).
    """

    def __init__(self, band):
        self.band, self.slot, self.low = band, None, None
        if type(band) is DKWBand:
            self.low, self.odd, self.odd_up = _dkw_z_table(band)
            return
        if type(band) is not RankBand:
            return
        # RankBand.lower: beta of the largest rank <= N, and (g, q) = (0, 1) below the first (slot 0)
        g, q = np.r_[0.0, band.g], np.r_[1.0, band.q]
        self.slot = np.empty(band.n + 1, dtype=np.int32)
        for start in range(0, band.n + 1, CHUNK_LEVELS):  # no int64 array of n + 1 counts
            counts = np.arange(start, min(start + CHUNK_LEVELS, band.n + 1))
            self.slot[start:start + counts.size] = np.searchsorted(band.ranks, counts, side="right")
        self.g, self.q, self.low = g, q, phi_inv(g, q)
        self.odd, self.odd_up = _odd(g, q)

    def _probabilities(self, counts):
        if self.slot is None:
            return (*self.band.lower(counts), counts)
        i = self.slot[counts]
        return self.g[i], self.q[i], i

    def lower(self, counts):
        if self.low is None:
            return (*self.band.lower(counts), None)
        g, q, i = self._probabilities(np.asarray(counts))
        return g, q, self.low[i]

    def upper(self, counts):
        if self.low is None:
            return (*self.band.lower(counts), None)
        g, q, i = self._probabilities(np.asarray(counts))
        z = np.negative(self.low[i])
        for k, v in zip(self.odd, self.odd_up):
            z[i == k] = v
        return g, q, z


def _odd(g, q) -> tuple[np.ndarray, np.ndarray]:
    """phi_inv(q, g) = -phi_inv(g, q) except where g and q fall on one side of 1/2 (at most a
    few): those indices, and phi_inv(q, g) there."""
    odd = np.flatnonzero((g < 0.5) == (q < 0.5))
    return odd, phi_inv(q[odd], g[odd])


def _dkw_z_table(band: DKWBand) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """phi_inv(g, q) for every count 0..n, and ``_odd``, made CHUNK_LEVELS counts at a time so
    that only the table itself (8 bytes a count) is ever held for all counts. DKW's (g, q) are
    cheaper to compute than to keep."""
    low = np.empty(band.n + 1)
    odd, odd_up = [], []
    for start in range(0, band.n + 1, CHUNK_LEVELS):
        g, q = band.lower(np.arange(start, min(start + CHUNK_LEVELS, band.n + 1)))
        low[start:start + g.size] = phi_inv(g, q)
        i, v = _odd(g, q)
        odd.append(i + start)
        odd_up.append(v)
    return low, np.concatenate(odd), np.concatenate(odd_up)


_TABLES: dict[object, _BandTable] = {}
TABLES_KEPT = 2  # one run certifies with one DKW and one BJ band


def _band_table(band) -> _BandTable:
    """The band's table, kept for the last few bands: a DKWBand by value (certify makes a new
    one per input), any other band by identity."""
    key = band if type(band) is DKWBand else id(band)
    hit = _TABLES.get(key)
    if hit is None or (key is not band and hit.band is not band):
        while len(_TABLES) >= TABLES_KEPT:
            _TABLES.pop(next(iter(_TABLES)))
        hit = _TABLES[key] = _BandTable(band)
    return hit


def exact_tail_bound(levels, tail_probs, a: float, sigma: float, tail_q=None) -> StepBound:
    """Theorem 2's lower bound from exact G(s_j) = P(Z >= s_j) at levels s_1 < ... < s_m.

    With no sampling error this is the worst case's smoothed expectation at x + R e (tight);
    the tests compare it with closed forms. Pass ``tail_q`` = 1 - G(s_j) when G is near 1, where
    ``tail_probs`` would round to 1 and the level would wrongly count as certain.
    """
    levels = np.asarray(levels, dtype=np.float64)
    p = np.asarray(tail_probs, dtype=np.float64)
    q = 1.0 - p if tail_q is None else np.asarray(tail_q, dtype=np.float64)
    return StepBound.build(a, np.diff(levels, prepend=a), phi_inv(p, q), -1, sigma)

