"""Cost of certifying one input from its samples (no model): issue 2's "milliseconds" check.

    python benchmarks/bench_stats.py [--n 100000] [--repeat 5]

Both measures, the three methods, 5 thresholds and 7 radii, at the default alpha and sigma, on
Dirichlet softmax rows. Prints the median time per input and the split by method, measured in
this run. The cdf-bj band is loaded from the shipped table (n = 100,000) or calibrated first.
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
