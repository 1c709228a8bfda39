"""Cost of certifying one input from its samples (no model): issue 2's "milliseconds" check.

    python benchmarks/bench_stats.py [--n 100000] [--repeat 5] [--parts]

Both measures, the three methods, 5 thresholds and 7 radii, at the default alpha and sigma, on
Dirichlet softmax rows. Prints the median time per input and the split by method, measured in
this run. The cdf-bj band is loaded from the shipped table (n = 100,000) or calibrated first.
``--parts`` adds the minimum thread CPU time (``time.thread_time``, so another process's load
counts less) of ``certify_samples`` and of its parts on the score samples: ``cdf_bounds`` for
cdf-dkw plus cdf-bj (from the samples), the lower bounds' ``radii`` at 5 thresholds that all
have a root (0.3 to 0.99 of the bound at R = 0) and ``at`` at the 7 radii. It runs on any tree of the code (``PYTHONPATH`` picks it), so that two
trees can be compared in alternating fresh processes.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np

from onnxcert.config import DEFAULT_RADII, DEFAULT_THRESHOLDS
from onnxcert.stats import bj_band, certify_measure, certify_samples, score_and_margin

METHODS = ["naive", "cdf-dkw", "cdf-bj"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--parts", action="store_true", help="thread CPU ms of certify_samples and its parts")
    args = ap.parse_args(argv)

    rng = np.random.default_rng(0)
    probs = rng.dirichlet([8.0] + [1.0] * (args.k - 1), size=args.n)
    score, margin = score_and_margin(probs, 0)
    kw = dict(sigma=0.25, alpha=0.001, thresholds=DEFAULT_THRESHOLDS, radii=DEFAULT_RADII)
    t = time.perf_counter()
    bj_band(args.n, 0.001)
    print(f"cdf-bj band for n={args.n}: {time.perf_counter() - t:.2f} s (table, cache or calibration)")

    def timed(fn) -> float:
        runs = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            fn()
            runs.append(time.perf_counter() - t0)
        return statistics.median(runs)

    total = timed(lambda: certify_samples(0, {"score": score, "margin": margin}, args.n // 2,
                                          methods=METHODS, **kw))
    print(f"one input, n={args.n}, 2 measures x 3 methods x 5 thresholds x 7 radii: {total * 1e3:.1f} ms")
    for m in METHODS:
        dt = timed(lambda m=m: [certify_measure(v, name, [m], sigma=0.25, alpha=0.001,
                                                thresholds=DEFAULT_THRESHOLDS[name], radii=DEFAULT_RADII)
                                for name, v in (("score", score), ("margin", margin))])
        print(f"  {m:<8} both measures: {dt * 1e3:7.1f} ms")
    if args.parts:
        parts(score, margin, args.n, kw, max(args.repeat, 10))
    return 0


def parts(score, margin, n: int, kw, repeat: int) -> None:
    """Minimum thread CPU ms of certify_samples and of its parts (score samples)."""
    from onnxcert.stats import DKWBand, cdf_bounds, confidence

    def cpu(fn) -> float:
        runs = []
        for _ in range(repeat):
            t0 = time.thread_time()
            fn()
            runs.append(time.thread_time() - t0)
        return min(runs) * 1e3

    tail_type = getattr(confidence, "SortedSamples", confidence.EmpiricalTail)  # trees before it
    bands = [DKWBand(n, 0.001), bj_band(n, 0.001)]
    bounds = [cdf_bounds(tail_type.from_samples(score, 0.0, 1.0), b, 0.25)[0] for b in bands]
    radii = list(kw["radii"])
    fractions = [0.3, 0.5, 0.7, 0.9, 0.99]  # of lower(0): every threshold has a root to search
    print(f"thread CPU ms, min of {repeat} ({tail_type.__name__}):")
    print(f"  certify_samples, one input:        "
          f"{cpu(lambda: certify_samples(0, {'score': score, 'margin': margin}, n // 2, methods=METHODS, **kw)):7.2f}")
    print(f"  cdf_bounds, DKW + BJ, from samples: "
          f"{cpu(lambda: [cdf_bounds(tail_type.from_samples(score, 0.0, 1.0), b, 0.25) for b in bands]):7.2f}")
    for band, lower in zip(("DKW", "BJ"), bounds):
        cs = [f * float(lower.at([0.0])[0]) for f in fractions]
        print(f"  radii, {band} lower ({lower.z.size:,} terms), 5 roots: {cpu(lambda: lower.radii(cs)):7.2f}"
              f"   at, 7 radii: {cpu(lambda: lower.at(radii)):6.2f}")


if __name__ == "__main__":
    sys.exit(main())
