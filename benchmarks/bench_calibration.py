"""The cdf-bj band's cost: calibration seconds per n, and what a first run at an n without a
shipped table pays over a second run (issue 17: target < 1 s).

    python benchmarks/bench_calibration.py [--quick] [--old]

1. ``calibrate(n, 0.001)`` in this process for each n (CPU and wall seconds, crossing
   evaluations). With ``--old``, the calibration before issue 15 (1 - a Poissonised
   non-crossing probability, Brent's method from the Bonferroni bracket) runs beside it on the
   same n, interleaved, for the ratio.
2. ``onnxcert certify-scores`` on one input at n without a shipped table, in fresh processes
   sharing one empty cache folder: the first run calibrates (and caches), the second verifies the
   cached table. Pairs alternate with a run at a shipped n (n = 10,000), so all see the same load.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from onnxcert.stats import berk_jones as bj

ROOT = Path(__file__).resolve().parents[1]


def old_crossing(n, ranks, g):
    """The crossing probability before issue 15: 1 - P(no crossing), Poissonised."""
    from scipy import signal, stats

    probs, offset, t = np.ones(1), 0, 0.0
    for beta, k in zip(g, ranks):
        mu = n * (beta - t)
        if mu > 0:
            width = int(math.ceil(mu + 12 * math.sqrt(mu) + 20))
            kernel = stats.poisson.pmf(np.arange(width), mu)
            probs = signal.oaconvolve(probs, kernel) if probs.size > 64 else np.convolve(probs, kernel)
        keep = int(k) - offset
        if keep <= 0:
            return 1.0
        probs = np.maximum(probs[:keep], 0.0)
        low = int(n * beta - 12 * math.sqrt(n * beta)) - offset
        if low > 0:
            probs, offset = probs[low:], offset + low
        t = float(beta)
    counts = offset + np.arange(probs.size)
    last = stats.poisson.pmf(n - counts, n * (1.0 - t))
    return 1.0 - float(np.dot(probs, last) / stats.poisson.pmf(n, n))


def old_calibrate(n, alpha):
    from scipy import optimize

    ranks, calls = bj.rank_grid(n), [0]
    w = bj.level_weights(n, ranks)

    def f(x):
        calls[0] += 1
        return old_crossing(n, ranks, bj.betas(n, ranks, math.exp(x) * w)[0]) / alpha - 1.0

    lo, hi = math.log(alpha / w.sum()), math.log(alpha / w.max())
    optimize.brentq(f, lo, hi, xtol=1e-5, rtol=1e-6)
    return calls[0]


def new_calibrate(n, alpha):
    calls, real = [0], bj.crossing_probability

    def counted(*a, **k):
        calls[0] += 1
        return real(*a, **k)

    bj.crossing_probability = counted
    try:
        bj.calibrate(n, alpha)
    finally:
        bj.crossing_probability = real
    return calls[0]


def timed(fn, *args):
    w, c = time.perf_counter(), time.process_time()
    out = fn(*args)
    return time.perf_counter() - w, time.process_time() - c, out


def run_once(n: int, cache: str) -> float:
    code = ("import numpy as np, onnxcert; r = np.random.default_rng(0); "
            f"onnxcert.certify_scores(r.dirichlet([20, 1, 1], size=(1, {n})), r.dirichlet([20, 1, 1], size=(1, 100)), "
            f"sigma=0.25, n={n}, n0=100, methods=['cdf-bj'])")
    env = dict(os.environ, ONNXCERT_CACHE_DIR=cache, PYTHONPATH=str(ROOT))
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)
    return time.perf_counter() - t


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--old", action="store_true", help="also time the calibration before issue 15 (n <= 10,000)")
    args = ap.parse_args(argv)
    sizes = [1500, 7000] if args.quick else [1500, 7000, 30_000, 70_000, 150_000]  # none shipped
    print(f"python {sys.version.split()[0]}, load average {os.getloadavg()[0]:.1f}, {os.cpu_count()} CPUs")
    print("\n| n | ranks | calibration wall s | CPU s | crossing evaluations |" + (" old CPU s | old evaluations | old / new CPU |" if args.old else ""))
    print("|---|---|---|---|---|" + ("---|---|---|" if args.old else ""))
    for n in sizes:
        wall, cpu, calls = timed(new_calibrate, n, 0.001)
        row = f"| {n:,} | {bj.rank_grid(n).size} | {wall:.2f} | {cpu:.2f} | {calls} |"
        if args.old and n <= 10_000:  # the old one takes minutes above
            _, ocpu, ocalls = timed(old_calibrate, n, 0.001)
            row += f" {ocpu:.2f} | {ocalls} | {ocpu / cpu:.0f}x |"
        print(row, flush=True)

    print("\n| n (no shipped table) | first run s | second run s | first - second s | shipped n=10,000 run s |")
    print("|---|---|---|---|---|")
    for n in ([5000] if args.quick else [5000, 30_000, 300_000]):
        firsts, seconds, shipped = [], [], []
        for _ in range(1 if args.quick else 3):
            with tempfile.TemporaryDirectory() as cache:
                firsts.append(run_once(n, cache))
                shipped.append(run_once(10_000, cache))
                seconds.append(run_once(n, cache))
        f, s, sh = min(firsts), min(seconds), min(shipped)
        print(f"| {n:,} | {f:.2f} | {s:.2f} | {f - s:+.2f} | {sh:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
