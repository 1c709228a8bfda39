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
import threading
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy import special

from .bands import DKWBand, RankBand
from .bounds import hoeffding_eps, phi_inv

try:  # the compiled pooled evaluation (optional, like the noise kernel); NumPy otherwise
    from .. import _kernels
except ImportError:  # pragma: no cover - an install without a C compiler
    _kernels = None
# the pools, their evaluation (_Pools) and the count-space sums (_CountSide) in C when the kernel has
# them; NumPy otherwise (tests switch it off to run the NumPy path)
STATS_KERNEL = _kernels is not None and all(hasattr(_kernels, f) for f in ("pools", "group_sums", "pool_moments"))

INF = math.inf
MERGE_MIN_LEVELS = 4096  # above this, levels are merged by Jensen's inequality (see StepBound.merged)
MERGE_STEP = 1e-3  # merge levels whose Phi^{-1}(p) lie in the same interval of this width
CHUNK_LEVELS = 1 << 14  # cdf_bounds goes through the levels this many at a time (memory)
POOL_MIN_TERMS = 1024  # a bound with more finite terms is evaluated pooled (StepBound.pooled)
POOL_WIDTH = 0.05  # ... in pools of z this wide
# Phi^(5)(x) = (x^4 - 6 x^2 + 3) phi(x): |Phi^(5)| <= PHI5_SUP = 3 / sqrt(2 pi) (its value at 0)
# everywhere, and beyond PHI5_PEAK = sqrt(5 + sqrt(10)) (the last zero of Phi^(6)) it is positive
# and decreasing, so sup_{|x| >= u} |Phi^(5)| <= Phi^(5)(u) for u >= PHI5_PEAK (``_phi5_beyond``)
PHI5_SUP = 3.0 / math.sqrt(2.0 * math.pi)
PHI5_PEAK = math.sqrt(5.0 + math.sqrt(10.0))
INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


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
            starts = np.flatnonzero(np.concatenate(([True], z[1:] != z[:-1])))
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
        """The bound at each radius in ``radii``: term by term (``exact_at``), or ``pooled`` for
        a bound of many terms. One dot product per radius, so each value is bit for bit
        ``at([R])`` alone (a matrix product over several radii may round otherwise, and then
        at(radii) could put a returned radius 1e-16 below its threshold)."""
        r = np.atleast_1d(np.asarray(radii, dtype=np.float64))
        if self.z.size == 0:
            return np.full(r.shape, self.a)
        return self._at_each(r)

    def _at_scalar(self, radius: float) -> float:
        return float(self._at_each(np.array([float(radius)]))[0])

    def _at_each(self, radii: np.ndarray) -> np.ndarray:
        """The bound at each radius: ``pooled`` when the bound has one, else ``exact_at``."""
        pools = self.pooled
        return self.exact_at(radii) if pools is None else pools.rigorous_at(np.zeros(radii.size, dtype=np.intp), radii)

    def exact_at(self, radii) -> np.ndarray:
        """a + sum_j w_j Phi(z_j + sign R / sigma), every term evaluated, at each radius: one
        dot product per radius (a matrix product over several radii may round differently),
        with one ``ndtr`` call for all."""
        radii = np.atleast_1d(np.asarray(radii, dtype=np.float64))
        if self.z.size == 0:
            return np.full(radii.shape, self.a)
        terms = special.ndtr(self.z[None, :] + (self.sign * radii / self.sigma)[:, None])
        return self.a + np.array([self.widths @ row for row in terms])

    @cached_property
    def pooled(self) -> "_Pools | None":
        """For a bound of more than POOL_MIN_TERMS finite terms (Theorem 2 at large n): its terms
        pooled into intervals of z of width POOL_WIDTH, each a fourth-order Taylor expansion
        about the pool's mean z, with the fifth-order remainder bounded and taken off a lower
        bound (added to an upper one): a bound that is never less conservative than the sum of
        every term, looser by at most ``pooled.slack`` (about 1e-11 on the bounds of a run, less in
        the tails; see ``_Pools``), and some 30x cheaper to evaluate. None: the bound is evaluated term by term."""
        if not self.evaluated_pooled:
            return None
        return _Pools.of([self], POOL_WIDTH, rigorous=True)

    @property
    def evaluated_pooled(self) -> bool:
        """Whether the bound is evaluated pooled (``pooled``): more than POOL_MIN_TERMS finite terms."""
        return np.count_nonzero(np.isfinite(self.z)) > POOL_MIN_TERMS

    def limit(self) -> float:
        """The bound as R -> infinity (lower bounds only): terms with z = +inf stay."""
        return self.a + float(self.widths[np.isposinf(self.z)].sum())

    def radius(self, c: float) -> float | None:
        """The largest R with lower(R) >= c, for a lower bound (sign = -1).

        None when lower(0) < c, and infinity when lower(R) >= c for every R.
        The returned R is the lower end of a bracket [R, R'] with lower(R) >= c > lower(R'),
        both evaluated exactly, and R' - R <= 1e-10 (relative above R = 1): lower(R) >= c
        always holds, and R is at most that far below the exact root. The bracket comes from a
        surrogate's root (``_roots_secant``) or, where that check fails, from Illinois regula
        falsi on the monotone bound (``_roots_bracketed``).
        """
        return self.radii([c])[0]

    def radii(self, thresholds) -> list[float | None]:
        """``radius`` for each threshold, all searched at once (``_roots``)."""
        cs = [float(c) for c in thresholds]
        at_zero = self._at_scalar(0.0)
        out, todo = _settled(cs, at_zero, self.limit())
        if todo:
            for i, r in zip(todo, self._roots(np.array([cs[i] for i in todo]), at_zero)):
                out[i] = float(r)
        return out

    def _roots(self, c: np.ndarray, at_zero: float) -> np.ndarray:
        """For each c in ``c`` (at_zero >= c > limit): R with bound(R) >= c > bound(R'), R' - R
        <= 1e-10 max(1, R). First ``_roots_secant`` (a few evaluations of the bound); where its
        final check fails, the bracketing search ``_roots_bracketed``."""
        r = self._roots_secant(c)
        bad = np.isnan(r)
        if bad.any():
            r[bad] = self._roots_bracketed(c[bad], at_zero)
        return r

    def _roots_secant(self, c: np.ndarray, bins: float = 0.05) -> np.ndarray:
        """Roots of bound(R) = c from two exact evaluations each; NaN where the check fails
        (``_search`` on this bound alone: its ``pooled`` surrogate, or for a bound evaluated term
        by term a surrogate pooled in intervals of z of width ``bins``, checked by ``exact_at``)."""
        pools = self.pooled
        if pools is not None:
            exact = pools.rigorous_at
        else:
            pools = _Pools.of([self], bins)
            if pools is None:
                return np.full(c.size, np.nan)
            exact = lambda which, r: self.exact_at(r)  # noqa: E731
        return _search(pools, np.zeros(c.size, dtype=np.intp), np.asarray(c, dtype=np.float64), exact)

    def _roots_bracketed(self, c: np.ndarray, at_zero: float, grid: int = 8) -> np.ndarray:
        """For each c in ``c`` (at_zero >= c > limit): the largest R found with bound(R) >= c.

        The bound is evaluated at ``grid`` radii and at each c's own upper end in one call, which
        brackets every root; then Illinois regula falsi runs on all brackets at once, one
        evaluation of the bound at every unfinished bracket per step (``_largest_above``)."""
        ends = _upper_ends(self.z, self.widths, self.limit(), self.sigma, c)
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


def _settled(cs: list[float], at_zero: float, limit: float) -> tuple[list[float | None], list[int]]:
    """A lower bound's radius for each threshold where no search is needed (None where even R = 0
    falls short, infinity where the bound never falls below c, 0.0 as a placeholder otherwise),
    and the indices of the thresholds to search (at_zero >= c > limit)."""
    out: list[float | None] = [None if at_zero < c else INF if c <= limit else 0.0 for c in cs]
    return out, [i for i, c in enumerate(cs) if at_zero >= c > limit]


def evaluate(bounds, radii, thresholds) -> list[tuple[np.ndarray, list[float | None] | None]]:
    """For each StepBound in ``bounds``: its values at ``radii`` (``StepBound.at``) and, where
    ``thresholds[i]`` is not None (a lower bound), its radius for each of them
    (``StepBound.radii``). Bit for bit what each bound gives alone, but the pooled bounds (every
    CDF bound of a run at large n) are evaluated and searched together: one ``_Pools`` for all,
    so each step of the evaluation and of the radius search (``_search``) is one set of array
    operations for every bound and threshold of an input, not one per bound."""
    r = np.atleast_1d(np.asarray(radii, dtype=np.float64))
    out: list = [None] * len(bounds)
    group = [i for i, bound in enumerate(bounds) if bound.evaluated_pooled]
    for i, bound in enumerate(bounds):
        if i not in group:
            out[i] = (bound.at(r), None if thresholds[i] is None else bound.radii(thresholds[i]))
    if not group:
        return out
    pools = _Pools.of([bounds[i] for i in group], POOL_WIDTH, rigorous=True)
    points = np.append(r, 0.0)  # the radii, and R = 0 for the radius search
    values = pools.rigorous_at(np.repeat(np.arange(len(group)), points.size),
                               np.tile(points, len(group))).reshape(len(group), points.size)
    which, cs, where, settled = [], [], [], {}
    for k, i in enumerate(group):
        if thresholds[i] is None:
            out[i] = (values[k, :r.size], None)
            continue
        c = [float(t) for t in thresholds[i]]
        settled[i], todo = _settled(c, float(values[k, -1]), bounds[i].limit())
        out[i] = (values[k, :r.size], settled[i])
        which += [k] * len(todo)
        cs += [c[j] for j in todo]
        where += [(i, j) for j in todo]
    if not cs:
        return out
    c, which = np.array(cs), np.array(which, dtype=np.intp)
    roots = _search(pools, which, c, pools.rigorous_at)
    bad = np.isnan(roots)
    for k, i in enumerate(group):  # where the check failed: the bracketing search, bound by bound
        mine = bad & (which == k)
        if mine.any():
            roots[mine] = bounds[i]._roots_bracketed(c[mine], float(values[k, -1]))
    for (i, j), root in zip(where, roots):
        settled[i][j] = float(root)
    return out


def _upper_ends(z, widths, limit: float, sigma: float, c: np.ndarray) -> np.ndarray:
    """For each c (> limit) of a lower bound with terms (widths, z): a radius past which the
    bound is below c. Every finite term is <= Phi(z_max - t), so at t_hi the bound is at most
    limit + W Phi(z_max - t_hi) < c."""
    finite = np.isfinite(z)
    frac = (c - limit) / float(widths[finite].sum())
    t_hi = z[finite].max() - special.ndtri(np.minimum(frac, 1.0)) + 1.0
    return np.maximum(t_hi, 1e-12) * sigma


def _search(pools: "_Pools", which: np.ndarray, c: np.ndarray, exact, grid: int = 16, tries: int = 3) -> np.ndarray:
    """For each pair (bound ``which[k]`` of ``pools``, threshold ``c[k]``), with the lower bound at
    R = 0 >= c[k] > its limit: the root of bound(R) = c[k] from two exact evaluations; NaN where
    the check fails (the caller then runs the bracketing search).

    The surrogate ``pools`` (each pool one Phi at its width-weighted mean z plus the Taylor terms
    of its spread to the fourth moment; on the bounds of a run its root is within ~1e-12 of the
    exact one) is evaluated on ``grid`` radii per bound, interpolated and refined by Newton steps
    on the surrogate alone, each pair until its own step is below 1e-13 (relative above 1). Then
    the check, by ``exact(which, radii)`` (the bound as reported): with h = 2e-11 max(1, R), the
    bound at R - h is >= c and at R + h is < c. Where it fails, a secant step through those two
    exact values and the check again, ``tries`` checks in all. R - h is returned: bound(R - h) >= c
    always holds, and R - h is at most 4e-11 (relative above 1) below the exact root. The
    surrogate only chooses where to evaluate: nothing it says is certified. Every step works on a
    pair's own values alone (``_Pools`` sums each pair by itself), so a pair's root is bit for bit
    the same whatever other pairs are searched with it."""
    out = np.full(c.size, np.nan)
    if c.size == 0:
        return out
    r, r0, r1 = np.zeros(c.size), np.zeros(c.size), np.zeros(c.size)
    live = np.zeros(c.size, dtype=bool)
    one = pools.count[which] == 1
    if one.any():  # one finite term (naive): base + w Phi(z + sign R / sigma) = c in closed form
        k = np.flatnonzero(one)
        b = which[k]
        x = special.ndtri(np.clip((c[k] - pools.base[b]) / pools.w[0, b], 0.0, 1.0))
        guess = (x - pools.zb[0, b]) / pools.scale[b]
        fine = np.isfinite(guess)
        r[k[fine]] = np.maximum(guess[fine], 0.0)
        live[k[fine]] = True
    many = np.flatnonzero(~one)
    if many.size:
        bounds, row = np.unique(which[many], return_inverse=True)
        ends = np.array([max(_upper_ends(pools.bounds[b].z, pools.bounds[b].widths, pools.base[b],
                                         pools.bounds[b].sigma, c[many[row == i]])) for i, b in enumerate(bounds)])
        points = np.linspace(0.0, ends, grid, axis=1)  # [bounds, grid]
        values = pools(np.repeat(bounds, grid), points.ravel())[0].reshape(bounds.size, grid)
        values, points = values[row], points[row]
        below = values < c[many][:, None]
        hit = below.any(axis=1)
        many, below, values, points = many[hit], below[hit], values[hit], points[hit]
        j = np.maximum(below.argmax(axis=1), 1)  # below at R = 0 (the surrogate is not exact): start there
        at = np.arange(many.size)
        lo, hi = points[at, j - 1], points[at, j]
        v0, v1 = values[at, j - 1] - c[many], values[at, j] - c[many]
        guess = np.where(below[:, 0], 0.0, np.where(v0 != v1, lo + v0 * (hi - lo) / (v0 - v1), lo))
        r[many], r0[many], r1[many] = guess, lo, hi
        # Newton on the surrogate, inside its grid cell. A rigorous pool's slack is taken once, at
        # the start: it moves far less than the bracket check's 2e-11 over the steps
        target = c[many].copy()
        if pools.m5 is not None:
            b = which[many]
            target -= pools.sign[b] * pools.slack_at(b, guess)
        todo = many
        for _ in range(6):
            b = which[todo]
            v, slope = pools(b, r[todo], slack=False)
            step = (v - target) / np.where(slope < 0, slope, -np.inf)
            r[todo] = np.minimum(np.maximum(r[todo] - step, r0[todo]), r1[todo])  # (np.clip costs more)
            going = np.abs(step) > 1e-13 * np.maximum(1.0, r[todo])
            todo, target = todo[going], target[going]
            if todo.size == 0:
                break
        live[many] = True
    left = np.flatnonzero(live)
    if left.size == 0:
        return out
    c, r, b = c[left], r[left], which[left]
    for _ in range(tries):
        h = 2e-11 * np.maximum(1.0, r)
        lo, hi = np.maximum(r - h, 0.0), r + h
        f = exact(np.concatenate((b, b)), np.concatenate((lo, hi))) - np.concatenate((c, c))
        f_lo, f_hi = f[:c.size], f[c.size:]
        ok = (f_lo >= 0) & (f_hi < 0)
        out[left[ok]] = lo[ok]
        moved = ~ok & (f_lo != f_hi)  # a secant step through the pair
        if not moved.any():
            break
        left, c, b = left[moved], c[moved], b[moved]
        lo, hi, f_lo, f_hi = lo[moved], hi[moved], f_lo[moved], f_hi[moved]
        r = np.maximum(lo + f_lo * (hi - lo) / (f_lo - f_hi), 0.0)
    return out


def _sequential_sum(terms: np.ndarray) -> np.ndarray:
    """Column sums of [pools, pairs] in row order, one addition at a time, so that a column's sum
    does not depend on the other columns and the zero pools below a bound's own add nothing.

    NumPy reduces axis 0 of a C-ordered array of two or more columns row by row (each row added
    into the running column sums: ``test_sequential_sum_is_per_column_and_ignores_zero_rows``
    checks it against a loop), 8x faster than ``np.add.accumulate``, which is sequential by
    definition. A single column would be one contiguous run, which NumPy sums pairwise: it is
    doubled first."""
    terms = np.ascontiguousarray(terms)
    if terms.shape[1] == 1:
        return np.add.reduce(np.repeat(terms, 2, axis=1), axis=0)[:1]
    return np.add.reduce(terms, axis=0)


class _Pools:
    """Surrogates of B StepBounds, for their evaluation and radius search: each bound's finite
    terms pooled into intervals of z, each pool a Taylor expansion of sum_j w_j Phi(z_j + s)
    about the pool's mean z to the fourth moment m_k = sum_j w_j (z_j - mean)^k (the first is 0):
    Phi(x + d) = Phi(x) + phi(x) (d - x d^2/2 + (x^2 - 1) d^3/6 - (x^3 - 3x) d^4/24 + ...).
    The spread term and its derivative in x are cubic and quartic polynomials in x, their
    coefficients per pool kept (``value_poly``, ``slope_poly``).

    Arrays are [pools, B]: bound b's ``count[b]`` pools are the first rows of column b, and the
    rows below are zero pools (every width and moment 0), which add exactly 0. Evaluation is by
    (bound, radius) pairs, and each pair's sum over its pools is sequential (``_sequential_sum``):
    a pair's value is bit for bit the same whether its bound is evaluated alone
    (``StepBound.pooled``) or with every other bound of an input (``evaluate``)."""

    def __init__(self, bounds, columns, rigorous: bool):
        self.bounds = list(bounds)
        self.count = np.array([col[0].size for col in columns], dtype=np.intp)
        rows, width = int(self.count.max()), len(self.bounds)

        def stacked(i):
            out = np.zeros((rows, width))
            for k, col in enumerate(columns):
                out[:col[i].size, k] = col[i]
            return out

        w, zb, m2, m3, m4 = (stacked(i) for i in range(5))
        self.w, self.zb = w, zb
        self.m5, self.reach = (stacked(5), stacked(6)) if rigorous else (None, None)  # rigorous pools
        # z = -inf terms add 0; z = +inf terms their whole width
        self.base = np.array([b.a + float(b.widths[np.isposinf(b.z)].sum()) for b in self.bounds])
        self.total = np.array([float(col[0].sum()) for col in columns])
        self.sign = np.array([float(b.sign) for b in self.bounds])
        self.scale = self.sign / np.array([b.sigma for b in self.bounds])
        # a rounding allowance: a sequential sum of k terms is within (k - 1) ulps of the sum of
        # their magnitudes (each term itself a few ulps off, and the spread terms are below 1e-2
        # of the widths), so 2 ulps a pool plus 64, of the largest value the bound can take
        self.rounding = (2 * self.count + 64) * np.finfo(np.float64).eps * (np.abs(self.base) + self.total)
        # spread(x) = -x m2/2 + (x^2 - 1) m3/6 - (x^3 - 3x) m4/24, highest power first
        self.value_poly = (-m4 / 24.0, m3 / 6.0, m4 / 8.0 - 0.5 * m2, -m3 / 6.0)
        # d/dx [Phi W + phi spread] / phi = W - x spread + spread'
        #   = W + (x^2 - 1) m2/2 - (x^3 - 3x) m3/6 + (x^4 - 6x^2 + 3) m4/24
        self.slope_poly = (m4 / 24.0, -m3 / 6.0, 0.5 * m2 - m4 / 4.0, 0.5 * m3, w - 0.5 * m2 + m4 / 8.0)

    @classmethod
    def of(cls, bounds, bins: float, rigorous: bool = False) -> "_Pools | None":
        """Pools of each bound's finite terms in intervals of z of width ``bins``; ``rigorous``
        also keeps sum_j w_j |d_j|^5 and max_j |d_j| per pool, for the remainder (``slack``).
        None when a bound has no finite term."""
        columns = []
        for bound in bounds:
            if STATS_KERNEL:
                out = [np.empty(bound.z.size) for _ in range(7)]
                count = _kernels.pool_moments(np.ascontiguousarray(bound.z), np.ascontiguousarray(bound.widths),
                                              float(bins), *out)
                if count == 0:
                    return None
                if count > 0:  # (-1: keys not monotone; the NumPy path sorts them)
                    columns.append([v[:count] for v in (out if rigorous else out[:5])])
                    continue
            finite = np.isfinite(bound.z)
            z, w = bound.z[finite], bound.widths[finite]
            if z.size == 0:
                return None
            keys = np.floor(z / bins)
            if not (np.all(keys[1:] <= keys[:-1]) or np.all(keys[1:] >= keys[:-1])):  # pools must be runs
                order = np.argsort(keys, kind="stable")
                z, w, keys = z[order], w[order], keys[order]
            starts = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))
            sizes = np.diff(np.append(starts, z.size))
            wb = np.add.reduceat(w, starts)
            zb = np.add.reduceat(w * z, starts) / wb
            d = z - np.repeat(zb, sizes)
            wd2 = w * d * d
            wd4 = wd2 * d * d
            col = [wb, zb, np.add.reduceat(wd2, starts), np.add.reduceat(wd2 * d, starts), np.add.reduceat(wd4, starts)]
            if rigorous:
                ad = np.abs(d)
                col += [np.add.reduceat(wd4 * ad, starts), np.maximum.reduceat(ad, starts)]
            columns.append(col)
        return cls(bounds, columns, rigorous)

    def centres(self, which: np.ndarray, radii: np.ndarray) -> np.ndarray:
        """x = zbar + sign R / sigma for each pair (bound ``which[k]``, ``radii[k]``): [pools, pairs]."""
        return self.zb[:, which] + np.asarray(radii, dtype=np.float64) * self.scale[which]

    def _spread(self, poly, which, x, dens) -> np.ndarray:
        out = _horner(tuple(p[:, which] for p in poly), x)
        out *= dens
        return out

    @cached_property
    def _packed(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The arrays of the compiled evaluation: per bound, its pools' fields side by side
        ([B, pools, 13]: zbar, w, value_poly, slope_poly, m5, reach), the counts, and per bound
        (base, total, scale, sign, rounding)."""
        rows, width = self.w.shape
        zeros = np.zeros_like(self.w)
        fields = (self.zb, self.w, *self.value_poly, *self.slope_poly,
                  zeros if self.m5 is None else self.m5, zeros if self.reach is None else self.reach)
        coef = np.empty((width, rows, len(fields)))
        for i, field in enumerate(fields):
            coef[:, :, i] = field.T
        per_bound = np.ascontiguousarray(np.column_stack((self.base, self.total, self.scale, self.sign, self.rounding)))
        return coef, self.count.astype(np.int64), per_bound

    def _compiled(self, which, radii, flags: int):
        """(value, slope, slack) per pair from ``_kernels.pools``; slope and slack None unless
        asked for (flags 4 and 8)."""
        which = np.ascontiguousarray(which, dtype=np.int64)
        radii = np.ascontiguousarray(np.broadcast_to(np.asarray(radii, dtype=np.float64), which.shape))
        value = np.empty(which.size)
        slope = np.empty(which.size) if flags & 4 else None
        slack = np.empty(which.size) if flags & 8 else None
        coef, count, per_bound = self._packed
        _kernels.pools(coef, count, per_bound, which, radii, flags, value, slope, slack, INV_SQRT_2PI, PHI5_SUP, PHI5_PEAK)
        return value, slope, slack

    def __call__(self, which, radii, slack: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """(value, slope in R) of the surrogate for each pair (bound ``which[k]``, ``radii[k]``)
        (with ``slack`` taken off or added, so that a rigorous pool's root is the root of
        ``rigorous_at``; the Taylor sum alone with ``slack`` False). Compiled when
        STATS_KERNEL is on; the NumPy path otherwise (the same sums, in the same order; only
        Phi comes from the C library's erf/erfc instead of SciPy's ndtr)."""
        slack = slack and self.m5 is not None
        if STATS_KERNEL:
            value, slope, _ = self._compiled(which, radii, 4 | int(slack))
            return value, slope
        which = np.asarray(which, dtype=np.intp)
        x = self.centres(which, radii)
        dens = _density(x)
        terms = self._spread(self.value_poly, which, x, dens)
        terms += special.ndtr(x) * self.w[:, which]
        value = self.base[which] + _sequential_sum(terms)
        if slack:
            value += self.sign[which] * self.slack(which, x)
        return value, _sequential_sum(self._spread(self.slope_poly, which, x, dens)) * self.scale[which]

    def slack(self, which: np.ndarray, x: np.ndarray) -> np.ndarray:
        """How far the sum of every term may lie from the Taylor sum, for pairs of bounds
        ``which`` at pool centres ``x`` ([pools, pairs]): the fifth-order remainder,
        sum_j w_j |Phi^(5)(xi_j)| |d_j|^5 / 120 with xi_j between x and x + d_j, so
        |xi_j| >= |x| - reach; plus the rounding allowance."""
        u = np.maximum(np.abs(x) - self.reach[:, which], 0.0)
        tail = _phi5_beyond(u)
        tail *= self.m5[:, which]
        return _sequential_sum(tail) / 120.0 + self.rounding[which]

    def slack_at(self, which, radii) -> np.ndarray:
        """``slack`` for each pair (bound ``which[k]``, ``radii[k]``)."""
        if STATS_KERNEL:
            return self._compiled(which, radii, 8)[2]
        which = np.asarray(which, dtype=np.intp)
        return self.slack(which, self.centres(which, radii))

    def rigorous_at(self, which, radii) -> np.ndarray:
        """The pooled bound for each pair (bound ``which[k]``, ``radii[k]``): the Taylor sum with
        its remainder bound ``slack`` taken off (lower bound, sign -1) or added (upper bound),
        then kept within what every term sum lies in, [base, base + total].

        Per pool, with x = zbar + sign R / sigma and d_j = z_j - zbar (sum_j w_j d_j = 0):
        sum_j w_j Phi(x + d_j) = W Phi(x) + phi(x) (-x m2/2 + (x^2 - 1) m3/6 - (x^3 - 3x) m4/24)
        + sum_j w_j Phi^(5)(xi_j) d_j^5 / 120, and ``slack`` bounds the last sum (with
        |Phi^(5)(xi)| <= PHI5_SUP, or less where every xi of a pool lies far out in a tail). So
        the sum of every term lies within ``slack`` of the Taylor sum, at each radius."""
        if STATS_KERNEL:
            return self._compiled(which, radii, 1 | 2)[0]
        which = np.asarray(which, dtype=np.intp)
        value, _ = self(which, radii, slack=True)
        base = self.base[which]
        return np.minimum(np.maximum(value, base), base + self.total[which])


def _density(x: np.ndarray) -> np.ndarray:
    """phi(x), the standard normal density."""
    dens = np.multiply(x, x)
    dens *= -0.5
    np.exp(dens, out=dens)
    dens *= INV_SQRT_2PI
    return dens


def _phi5_beyond(u: np.ndarray) -> np.ndarray:
    """An upper bound on sup_{|xi| >= u} |Phi^(5)(xi)| for u >= 0: PHI5_SUP up to PHI5_PEAK,
    then Phi^(5)(u) itself (positive and decreasing there)."""
    tail = (u * u - 6.0) * u * u + 3.0
    tail *= np.exp(-0.5 * u * u)
    tail *= INV_SQRT_2PI
    return np.where(u < PHI5_PEAK, PHI5_SUP, tail)


def _horner(coefficients, x: np.ndarray) -> np.ndarray:
    """sum_k c_k x^(d - k) for coefficients c_0 (highest power) .. c_d, each an array per pool."""
    out = coefficients[0] * x
    for c in coefficients[1:-1]:
        out += c
        out *= x
    out += coefficients[-1]
    return out

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


@dataclass(frozen=True)
class SortedSamples:
    """A measure's n samples, clipped to [a, b] and sorted ascending, with their mean: what
    ``cdf_bounds`` needs to run the level pass in count space (``_count_bounds``). Theorem 2's
    terms, written per sample x_1 <= ... <= x_n (x_0 = a, x_{n+1} = b) rather than per distinct
    value: E_k = x_{k+1} - x_k for k = 0..n; the lower bound's term k has width E_k and count
    N = n - k (samples >= x_{k+1}), the upper bound's term k has width E_k and count M = k
    (samples <= x_k). Ties give E_k = 0, terms that add nothing, so the distinct levels of
    ``EmpiricalTail`` are exactly the k with E_k > 0."""

    a: float
    b: float
    n: int
    values: np.ndarray
    mean: float

    @classmethod
    def from_samples(cls, values, a: float, b: float) -> "SortedSamples":
        values = np.clip(np.asarray(values, dtype=np.float64), a, b)  # our copy: sorted in place
        mean = float(values.mean()) if values.size else math.nan  # before sorting: EmpiricalTail's mean
        values.sort()
        return cls(float(a), float(b), values.size, values, mean)

    def tail(self) -> EmpiricalTail:
        """The same samples as an ``EmpiricalTail`` (the per-level path)."""
        tail = EmpiricalTail.from_samples(self.values, self.a, self.b)
        return EmpiricalTail(tail.a, tail.b, tail.n, tail.levels, tail.at_or_above, tail.at_or_below, self.mean)

    def at_edges(self, k: np.ndarray) -> np.ndarray:
        """x_k for indices k in 0..n+1, with x_0 = a and x_{n+1} = b: sum_{j=k}^{l-1} E_j
        telescopes to x_l - x_k."""
        out = self.values[np.minimum(np.maximum(k - 1, 0), self.n - 1)]
        out[k == 0], out[k == self.n + 1] = self.a, self.b
        return out

    def gaps_into(self, k0: int, k1: int, out: np.ndarray) -> np.ndarray:
        """E_k = x_{k+1} - x_k for k = k0..k1-1 (x_0 = a, x_{n+1} = b) into ``out``: the same
        doubles as the per-level widths ``np.diff(levels, prepend=a)`` where E_k > 0."""
        x, n = self.values, self.n
        lo, hi = max(k0, 1), min(k1, n)
        if lo < hi:
            np.subtract(x[lo:hi], x[lo - 1:hi - 1], out=out[lo - k0:hi - k0])
        if k0 == 0:
            out[0] = x[0] - self.a
        if k1 == n + 1:
            out[n - k0] = self.b - x[-1]
        return out


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


def cdf_bounds(tail: "EmpiricalTail | SortedSamples", band, sigma: float) -> tuple[StepBound, StepBound]:
    """Theorem 2 with a simultaneous band, every distinct sampled value a level.

    From ``SortedSamples`` with more than MERGE_MIN_LEVELS levels on both sides and a DKW or
    rank band, the level pass runs in count space (``_count_bounds``): the same terms, merge
    groups and order, summed over the sorted samples (1e-16 relative from the per-level sums;
    tests/test_stats_count_space.py checks it against a level-by-level oracle). Otherwise, and
    from an ``EmpiricalTail``, the levels go through the band and the merge CHUNK_LEVELS at a
    time (``_Merger``), so the per-level arrays (widths, p, q, z, keys) never exist for all
    levels at once. Every merged group is still reduced whole in one call, so those bounds are
    bit for bit those of ``StepBound.from_probabilities`` on the full arrays
    (tests/test_stats_tables.py checks it).
    """
    if isinstance(tail, SortedSamples):
        both = _count_bounds(tail, band, sigma)
        if both is not None:
            return both
        tail = tail.tail()
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
    """The band's table, kept for the last few bands (``_kept``)."""
    return _kept(_TABLES, band, _BandTable)


def _kept(store: dict, band, make):
    """``make(band)``, kept in ``store`` for the last TABLES_KEPT bands: a DKWBand by value
    (certify makes a new one per input), any other band by identity."""
    key = band if type(band) is DKWBand else id(band)
    hit = store.get(key)
    if hit is None or (key is not band and hit.band is not band):
        while len(store) >= TABLES_KEPT:
            store.pop(next(iter(store), None), None)
        hit = store[key] = make(band)
    return hit


def _count_bounds(s: SortedSamples, band, sigma: float) -> tuple[StepBound, StepBound] | None:
    """``cdf_bounds`` in count space, or None where the per-level path must run instead.

    The Jensen merge groups are runs of equal floor(z / MERGE_STEP), and z depends on a term's
    count alone, monotonically (``_CountPlan``): so the groups are fixed ranges of k, the same for
    every input of a band, and the merge is one reduceat per sum over the sorted samples (ties are
    zero-width terms, which add nothing). Used only where both bounds merge (more than
    MERGE_MIN_LEVELS kept levels); the terms, the groups and their order are those of the
    per-level path, so only the order of additions inside a group differs (1e-16 relative)."""
    if s.n <= MERGE_MIN_LEVELS or np.isnan(s.values[-1]):
        return None
    plan = _count_plan(band)
    if plan is None or plan.band.n != s.n:
        return None
    # kept levels: the k < end with E_k > 0; all but at most ties + 2 of them (E_0 = 0 when
    # x_1 = a, E_n = 0 when x_n = b, and one per tie)
    ties = np.count_nonzero(s.values[1:] == s.values[:-1])
    sides = (plan.lower, plan.upper)
    if any(side.end - ties - 2 <= MERGE_MIN_LEVELS for side in sides):
        return None  # a side may stay exact: the per-level path decides, per side
    return tuple(side.bound(s, sigma) for side in sides)


class _CountSide:
    """One bound's merge groups in count space: terms k = 0..end-1 (those with p > 0), groups
    starting at ``starts``. ``seg`` (rank bands): edges of the runs of k with one rank slot, and
    each run's (p, q); None (DKW): p and q are per count, kept for all terms when n is at most
    CACHED_COUNTS (``pq``), else computed a piece of about CHUNK counts at a time."""

    CACHED_COUNTS = 1 << 18  # DKW: (p, q) per term kept up to this n (16 bytes a count a side)
    CHUNK = 1 << 16  # counts per piece of the DKW sums above it (memory)

    def __init__(self, band, sign: int, end: int, starts: np.ndarray, seg):
        self.band, self.sign, self.end, self.starts, self.seg = band, sign, end, starts, seg
        self.pq = self._pq(0, end) if seg is None and band.n <= self.CACHED_COUNTS else None
        cut = np.unique(np.r_[np.searchsorted(starts, np.arange(0, end, self.CHUNK)), starts.size])
        # per piece: its terms k0..k1-1, its groups' starts relative to k0 (int64, as _kernels reads
        # them), and its groups glo..ghi-1
        self.pieces = [(int(starts[lo]), end if hi == starts.size else int(starts[hi]),
                        (starts[lo:hi] - starts[lo]).astype(np.int64), int(lo), int(hi)) for lo, hi in zip(cut[:-1], cut[1:])]
        self.split = self._split() if seg is None else None

    def _split(self) -> tuple[int, int] | None:
        """phi_inv reads q of a group whose mean p is >= 1/2 and p of the others. p falls along
        k, so the groups before ``high`` (every p >= 1/2 + 1e-9) need only sum(E q), those from
        ``low`` on (every p < 1/2 - 1e-9) only sum(E p); the few between need both. The sum not
        made is taken as w minus the other, which decides phi_inv's branch the same way and is
        not read. None when p does not fall along k (then both sums are made everywhere)."""
        ends = np.append(self.starts[1:], self.end) - 1
        first, last = self._p_at(self.starts), self._p_at(ends)
        if not (np.all(last <= first) and np.all(first[1:] <= last[:-1])):
            return None
        high = int(np.count_nonzero(last >= 0.5 + 1e-9))
        low = self.starts.size - int(np.count_nonzero(first < 0.5 - 1e-9))
        return (high, low) if high <= low else None

    def _p_at(self, k: np.ndarray) -> np.ndarray:
        """p of the terms k (an array), as ``_pq`` computes it."""
        counts = (self.band.n - k if self.sign < 0 else k).astype(np.float64)
        g, q = self.band.lower(counts)
        return g if self.sign < 0 else q

    def _sums(self, e, p, q, buf, at, glo: int, ghi: int):
        """(sum E p, sum E q) per group glo..ghi-1 of a piece (``_split``)."""
        if self.split is None:
            return np.add.reduceat(np.multiply(e, p, out=buf), at), np.add.reduceat(np.multiply(e, q, out=buf), at)
        high, low = self.split
        wp, wq = np.empty(ghi - glo), np.empty(ghi - glo)
        gq = min(ghi, low) - glo  # groups glo..glo+gq-1 need sum E q
        if gq > 0:
            kq = int(at[gq]) if gq < at.size else e.size
            wq[:gq] = np.add.reduceat(np.multiply(e[:kq], q[:kq], out=buf[:kq]), at[:gq])
        gp = max(glo, high) - glo  # groups glo+gp..ghi-1 need sum E p
        if gp < at.size:
            kp = int(at[gp])
            wp[gp:] = np.add.reduceat(np.multiply(e[kp:], p[kp:], out=buf[kp:]), at[gp:] - kp)
        return wp, wq

    def _compiled(self, s: SortedSamples, sigma: float) -> StepBound:
        """``bound`` with each piece's group sums from ``_kernels.group_sums``: one pass over the
        sorted samples, the same terms and groups, each group's sums in term order."""
        high, low = self.split if self.split is not None else (0, self.starts.size)
        w, wp, wq = (np.empty(self.starts.size) for _ in range(3))
        values = np.ascontiguousarray(s.values, dtype=np.float64)
        for k0, k1, at, glo, ghi in self.pieces:
            p, q = (self.pq[0][k0:k1], self.pq[1][k0:k1]) if self.pq is not None else self._pq(k0, k1)
            _kernels.group_sums(values, s.a, s.b, k0, np.ascontiguousarray(p), np.ascontiguousarray(q),
                                at, high - glo, low - glo, w[glo:ghi], wp[glo:ghi], wq[glo:ghi])
        keep = w > 0
        w = w[keep]
        return StepBound.build(s.a, w, phi_inv(wp[keep] / w, wq[keep] / w), self.sign, sigma)

    def _pq(self, k0: int, k1: int):
        """(p, q) of terms k0..k1-1 from the band, as the per-level path computes them."""
        n = self.band.n
        if self.sign < 0:
            return self.band.lower(np.arange(n - k0, n - k1, -1, dtype=np.float64))
        g, q = self.band.lower(np.arange(k0, k1, dtype=np.float64))
        return q, g

    def bound(self, s: SortedSamples, sigma: float) -> StepBound:
        if self.seg is not None:
            edges, p, q, at = self.seg
            widths = np.diff(s.at_edges(edges))
            w = np.add.reduceat(widths, at)
            wp, wq = np.add.reduceat(widths * p, at), np.add.reduceat(widths * q, at)
        elif STATS_KERNEL:
            return self._compiled(s, sigma)
        else:
            parts = []
            for k0, k1, at, glo, ghi in self.pieces:
                e, buf = _scratch(k1 - k0)
                s.gaps_into(k0, k1, e)
                p, q = (self.pq[0][k0:k1], self.pq[1][k0:k1]) if self.pq is not None else self._pq(k0, k1)
                wp, wq = self._sums(e, p, q, buf, at, glo, ghi)
                # a group's width telescopes: the sum of its E_k is x at its end minus x at its start
                parts.append((np.diff(s.at_edges(np.append(at + k0, k1))), wp, wq))
            w, wp, wq = _joined(parts)
            if self.split is not None:
                high, low = self.split
                wp[:high] = w[:high] - wq[:high]
                wq[low:] = w[low:] - wp[low:]
        keep = w > 0
        w = w[keep]
        return StepBound.build(s.a, w, phi_inv(wp[keep] / w, wq[keep] / w), self.sign, sigma)


_SCRATCH = threading.local()  # per thread: certify_samples may run in several threads at once


def _scratch(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Two float64 work arrays of ``size`` (about _CountSide.CHUNK), reused between calls of
    this thread: a fresh array of this size costs more in page faults than the arithmetic in it."""
    held = getattr(_SCRATCH, "arrays", None)
    if held is None or held[0].size < size:
        held = _SCRATCH.arrays = (np.empty(max(size, 1024)), np.empty(max(size, 1024)))
    return held[0][:size], held[1][:size]


class _CountPlan:
    """A band's merge groups in count space (``_count_bounds``), made once per band by scanning
    every count's z through the band's table, CHUNK_LEVELS counts at a time. ``lower`` and
    ``upper`` are None where the count-space path does not apply: a band without a table, p > 0
    not a prefix of the terms, or merge keys not monotone (then a key's levels need not be one run)."""

    def __init__(self, band):
        self.band = band
        table = _band_table(band)
        self.lower = self.upper = None
        if table.low is None:
            return
        self.lower = self._side(table, -1)
        self.upper = self._side(table, +1)

    def _side(self, table, sign: int):
        n = self.band.n
        total = n if sign < 0 else n + 1
        starts, edges, end, last_key, last_slot = [], [], total, None, None
        for k0 in range(0, total, CHUNK_LEVELS):
            k = np.arange(k0, min(k0 + CHUNK_LEVELS, total))
            counts = n - k if sign < 0 else k
            g, q, z = table.lower(counts) if sign < 0 else table.upper(counts)
            p = g if sign < 0 else q
            dead = np.flatnonzero(p <= 0)
            if dead.size:
                if np.any(p[dead[0]:] > 0):
                    return None
                end = k0 + int(dead[0])
                k, z = k[:dead[0]], z[:dead[0]]
            keys = np.divide(z, MERGE_STEP)
            np.floor(keys, out=keys)
            keys[~np.isfinite(z)] = np.inf
            if keys.size:
                prev = np.r_[keys[0] if last_key is None else last_key, keys[:-1]]
                if np.any(keys > prev):
                    return None
                new = keys != prev
                if last_key is None:
                    new[0] = True
                starts.append(k[new])
                last_key = keys[-1]
                if table.slot is not None:
                    slot = table.slot[counts[:k.size]]
                    prev_slot = np.r_[-1 if last_slot is None else last_slot, slot[:-1]]
                    edges.append(k[slot != prev_slot])
                    last_slot = slot[-1]
            if end < total:
                break
        starts = np.concatenate(starts) if starts else np.zeros(0, dtype=np.intp)
        if starts.size == 0:
            return None
        seg = None
        if table.slot is not None:
            edges = np.concatenate(edges)
            slot = table.slot[n - edges if sign < 0 else edges]
            p, q = (table.g[slot], table.q[slot]) if sign < 0 else (table.q[slot], table.g[slot])
            at = np.searchsorted(edges, starts)
            if not np.array_equal(edges[np.minimum(at, edges.size - 1)], starts):
                return None  # a group starting inside a rank slot: z is not constant on slots
            seg = (np.r_[edges, end], p, q, at)
        return _CountSide(self.band, sign, end, starts, seg)


_PLANS: dict[object, _CountPlan] = {}


def prepare_band(band) -> None:
    """Build the band's Phi^{-1} table and count-space plan now (each is made once per band and
    kept): a run calls this before sampling, so that the first input does not pay for them."""
    _band_table(band)
    _count_plan(band)


def _count_plan(band) -> _CountPlan | None:
    """The band's count-space plan, kept like ``_band_table``; None when it does not apply."""
    hit = _kept(_PLANS, band, _CountPlan)
    return hit if hit.lower is not None and hit.upper is not None else None


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

