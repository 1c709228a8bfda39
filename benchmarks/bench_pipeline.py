"""Pipeline efficiency: onnxcert's certify loop against bare onnxruntime on the same model (issue 7.1).

    python benchmarks/bench_pipeline.py [--quick] [--models digits,cifar,imagenet] [--repeat 3]

For each model, same session options, batch size (the automatic default unless --batch-size) and
threads, all measured in this run:

- bare:     ``session.run`` on noisy batches generated before the clock starts (the limit);
- sampling: onnxcert's loop without the statistics (noise, forward pass, measures);
- certify:  onnxcert's end-to-end loop, ``pipeline.iter_records``, statistics included.

Each is timed ``--repeat`` times, interleaved, and the fastest run counts (the machine is shared;
the fastest run is the one least disturbed). The CIFAR ResNet-110 and ImageNet ResNet-50 have
random weights (see _common.py); their speed does not depend on the weights.
"""

from __future__ import annotations

import argparse
import sys

import _common as C

# (inputs, n0, n) per model: full scale, and --quick
SIZES = {"digits": ((3, 100, 100_000), (1, 10, 2_000)),
         "cifar": ((2, 16, 512), (1, 4, 64)),
         "imagenet": ((1, 4, 60), (1, 2, 8))}
TARGET = 0.95


def measure(m: C.BenchModel, key: str, *, quick: bool, repeat: int, batch_size: int | None,
            threads: int | None) -> list[object]:
    from onnxcert import pipeline

    count, n0, n = SIZES[key][1 if quick else 0]
    setup = C.prepare(m, C.clean_inputs(m, count), n0=n0, n=n, batch_size=batch_size, threads=threads)
    sampler = pipeline.make_sampler(setup)
    batches = C.bare_batches(setup)
    setup.classifier(batches[0][:2])  # warm-up (and the dynamic-batch check of fixed-batch models)
    runs = {"bare": lambda: C.run_bare(setup, batches), "sampling": lambda: C.run_sampling(setup, sampler),
            "certify": lambda: C.run_certify(setup, sampler)}
    best = {k: float("inf") for k in runs}
    for _ in range(repeat):
        for k, fn in runs.items():
            best[k] = min(best[k], C.best_of(fn, 1))
    total = C.samples_of(setup)
    rate = {k: total / t for k, t in best.items()}
    threads_used = setup.classifier.session_options["intra_op_num_threads"]
    return [m.name, setup.batch_size, threads_used, f"{count} x {n0}+{n}", rate["bare"], rate["sampling"],
            rate["certify"], rate["sampling"] / rate["bare"], rate["certify"] / rate["bare"]]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny n, one repeat, the sample model only")
    ap.add_argument("--models", default=None, help="comma-separated: digits, cifar, imagenet")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=None, help="default: onnxcert's automatic choice")
    ap.add_argument("--threads", type=int, default=None, help="default: onnxcert's default")
    args = ap.parse_args(argv)
    names = (args.models or ("digits" if args.quick else "digits,cifar,imagenet")).split(",")
    repeat = 1 if args.quick else args.repeat

    C.print_machine()
    rows = [measure(m, key, quick=args.quick, repeat=repeat, batch_size=args.batch_size, threads=args.threads)
            for key, m in zip(names, C.models(names))]
    print()
    print(C.table(["model", "batch", "threads", "inputs x n0+n", "bare samples/s", "sampling samples/s",
                   "certify samples/s", "sampling / bare", "certify / bare"], rows))
    print()
    for row in rows:
        verdict = "meets" if row[7] >= TARGET else "misses"
        print(f"{row[0]}: sampling loop at {row[7]:.3f} of bare onnxruntime ({verdict} the {TARGET} target); "
              f"with the statistics {row[8]:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
