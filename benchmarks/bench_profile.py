"""Where the sampling loop's time goes, stage by stage (the profile behind issue 7's fast path).

    python benchmarks/bench_profile.py [--quick] [--models digits,cifar,imagenet] [--prefetch]

Runs onnxcert's real sampling loop (``Sampler.sample`` on one input) with timers around its
stages: drawing the noise into the batch buffer (``sampling._fill``), the forward pass (the
Classifier call, onnxruntime included), the measures (``sampling.batch_measures`` and
``column_sums``: softmax, score, margin, votes, the selection's sums; one C pass when the
compiled kernel draws the noise); the rest is Python. cProfile cannot split the first from the
loop around it, since the noise is a C call inside a Python generator, hence these timers.
Measured in this run; the report names the host noise generator.
With --prefetch the noise is drawn on the worker thread, off the critical path.
"""

from __future__ import annotations

import argparse
import sys
import time

import _common as C

SIZES = {"digits": (100_000, 5_000), "cifar": (512, 64), "imagenet": (48, 8)}  # n: full, --quick


def profile(m: C.BenchModel, key: str, n: int, prefetch: bool) -> list[object]:
    from onnxcert import pipeline, sampling

    n0 = min(100, n)
    setup = C.prepare(m, C.clean_inputs(m, 1), n0=n0, n=n)
    sampler = pipeline.make_sampler(setup)
    sampler.prefetch = prefetch
    s, pre = setup.config.settings, setup.preprocessor
    x = pre.prepare(setup.inputs.load(0))
    xn, scale = pre.normalize(x), pre.noise_scale(s.sigma, x.shape)
    setup.classifier(C.bare_batches(setup, 1)[0])  # warm-up
    fill, forward = C.Clock(sampling._fill), C.Clock(sampler.model)
    measures, sums = C.Clock(sampling.batch_measures), C.Clock(sampling.column_sums)
    sampling._fill, sampling.batch_measures, sampling.column_sums, sampler.model = fill, measures, sums, forward
    try:
        t = time.perf_counter()
        sampler.sample(0, xn, scale)
        total = time.perf_counter() - t
    finally:
        sampling._fill, sampling.batch_measures, sampling.column_sums = fill.fn, measures.fn, sums.fn
        sampler.model = forward.fn
    softmax = measures.seconds + sums.seconds
    rest = total - forward.seconds - softmax - (0 if prefetch else fill.seconds)
    share = lambda v: f"{100 * v / total:.1f}%"  # noqa: E731
    noise = f"({share(fill.seconds)} on the worker)" if prefetch else share(fill.seconds)
    return [m.name, setup.batch_size, f"{n0 + n:,}", total, share(forward.seconds), noise,
            share(softmax), share(rest), (n0 + n) / total]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small n, the sample model only")
    ap.add_argument("--models", default=None, help="comma-separated: digits, cifar, imagenet")
    ap.add_argument("--prefetch", action="store_true", help="draw the noise on the worker thread")
    args = ap.parse_args(argv)
    names = (args.models or ("digits" if args.quick else "digits,cifar,imagenet")).split(",")
    C.print_machine()
    rows = [profile(m, key, SIZES[key][1 if args.quick else 0], args.prefetch)
            for key, m in zip(names, C.models(names))]
    print()
    from onnxcert.sampling import noise_generator
    print(f"host noise: {noise_generator(False)}")
    print(C.table(["model", "batch", "samples", "seconds", "forward pass", "noise", "measures (softmax, score, margin)",
                   "Python", "samples/s"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
