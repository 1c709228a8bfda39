"""Scaling: throughput against batch size and intra-op threads (issue 7.5).

    python benchmarks/bench_scaling.py [--quick] [--models digits,cifar,imagenet] [--repeat 2]

For every (model, threads, batch size): bare ``session.run`` on pre-generated noisy batches, and
onnxcert's sampling loop with and without the noise worker thread (``Sampler(prefetch=...)``),
in samples per second, measured in this run (fastest of ``--repeat``; the machine may be shared).
The defaults in ``onnxcert/sampling.py`` (batch size) and ``onnxcert/runtime.py`` (threads) are
chosen from this table; the row onnxcert picks by itself is marked ``*``.
"""

from __future__ import annotations

import argparse
import os
import sys

import _common as C

GRID = {  # model: (batch sizes, samples per measurement), full and --quick
    "digits": (((32, 128, 256, 512, 1024, 2048, 4096, 8192), 60_000), ((64, 1024), 4_096)),
    "cifar": (((8, 32, 64, 128, 256, 512), 512), ((16,), 32)),
    "imagenet": (((4, 8, 16, 32), 64), ((4,), 8)),
}


def measure(m: C.BenchModel, key: str, threads: int, batch: int, total: int, repeat: int) -> dict[str, float]:
    from onnxcert import pipeline

    n = max(total, batch)
    setup = C.prepare(m, C.clean_inputs(m, 1), n0=1, n=n, batch_size=batch, threads=threads)
    batches = C.bare_batches(setup)
    setup.classifier(batches[0])  # warm-up: onnxruntime allocates per batch shape
    loops = {"bare": lambda: C.run_bare(setup, batches)}
    for name, prefetch in (("sampling", False), ("sampling+prefetch", True)):
        sampler = pipeline.make_sampler(setup)
        sampler.prefetch = prefetch
        loops[name] = lambda s=sampler: C.run_sampling(setup, s)
    best = {k: float("inf") for k in loops}
    for _ in range(repeat):
        for k, fn in loops.items():
            best[k] = min(best[k], C.best_of(fn, 1))
    return {k: C.samples_of(setup) / t for k, t in best.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="two batch sizes, tiny n, the sample model only")
    ap.add_argument("--models", default=None, help="comma-separated: digits, cifar, imagenet")
    ap.add_argument("--threads", default=None, help="comma-separated intra-op thread counts (default 1..cores)")
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args(argv)
    names = (args.models or ("digits" if args.quick else "digits,cifar,imagenet")).split(",")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    threads = [int(t) for t in args.threads.split(",")] if args.threads else list(range(1, cores + 1))
    repeat = 1 if args.quick else args.repeat

    from onnxcert.runtime import session_settings
    from onnxcert.sampling import auto_batch_size

    C.print_machine()
    for key, m in zip(names, C.models(names)):
        sizes, total = GRID[key][1 if args.quick else 0]
        default_batch = auto_batch_size(m.shape, 100_000)
        default_threads = session_settings()["intra_op_num_threads"]
        rows = []
        for t in threads:
            for b in sizes:
                r = measure(m, key, t, b, total, repeat)
                mark = "*" if (b, t) == (default_batch, default_threads) else ""
                rows.append([f"{t}{mark}", f"{b}{mark}", r["bare"], r["sampling"], r["sampling+prefetch"],
                             r["sampling"] / r["bare"], r["sampling+prefetch"] / r["bare"]])
        best = max(rows, key=lambda row: row[4])
        print(f"\n{m.name} (onnxcert's default: batch {default_batch}, {default_threads} thread(s))\n")
        print(C.table(["threads", "batch", "bare samples/s", "sampling", "sampling+prefetch",
                       "sampling / bare", "prefetch / bare"], rows))
        print(f"\nfastest onnxcert loop: {best[4]:,.0f} samples/s at {best[0].rstrip('*')} thread(s), "
              f"batch {best[1].rstrip('*')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
