"""Lanes: bare onnxruntime, T single-threaded ``session.run`` calls at once against one call with T
intra-op threads (the measurement behind ``runtime.choose_lanes`` and LANE_WEIGHT_LIMIT).

    python benchmarks/bench_lanes.py [--quick] [--models digits,cnn32,cnn224,cifar,imagenet]
                                     [--threads 2] [--repeat 5]

Per model, at onnxcert's automatic batch size for one lane, two sessions of the same model: one
with T intra-op threads called from one thread ("1xT", what a user of onnxruntime runs), one
with one intra-op thread called from T threads at once ("Tx1", onnxcert's lanes). Both run the
same number of batches on batches generated before the clock starts, alternated ``--repeat``
times; the fastest run of each counts (the machine is shared). Also shown: the model's weights
and whether onnxcert would choose lanes for it. All numbers measured in this run.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

import _common as C

BATCHES = {"digits": (100, 10), "cnn32": (60, 6), "cnn224": (6, 2), "cifar": (4, 2), "imagenet": (3, 1)}


def measure(m: C.BenchModel, key: str, threads: int, repeat: int, quick: bool) -> list[object]:
    from onnxcert.runtime import LANE_WEIGHT_LIMIT, choose_lanes, open_classifier

    one = open_classifier(m.path, device="cpu", threads=threads, lanes=1)
    lanes = open_classifier(m.path, device="cpu", threads=threads, lanes=threads)
    setup = C.prepare(m, C.clean_inputs(m, 1), n0=1, n=100_000, threads=threads, lanes=1)
    batch = setup.batch_size
    batches = C.bare_batches(setup, threads)
    feed, out = one.input.name, [one.output.name]
    count = BATCHES[key][1 if quick else 0]

    def run_one():
        for k in range(count):
            one.session.run(out, {feed: batches[k % len(batches)]})

    def lane(j):
        for _ in range(j, count, threads):
            lanes.session.run(out, {feed: batches[j]})

    def run_lanes():
        C.on_threads(lane, threads)

    run_one(), run_lanes()  # warm-up
    best = {"one": float("inf"), "lanes": float("inf")}
    for _ in range(repeat):
        for name, fn in (("one", run_one), ("lanes", run_lanes)):
            t = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t)
    weights = one.info.weight_bytes
    chosen = choose_lanes(threads, provider=one.provider, weight_bytes=weights)
    return [m.name, batch, count, f"{weights / 2**20:.2f}", f"1x{threads}: {count * batch / best['one']:.4g}",
            f"{threads}x1: {count * batch / best['lanes']:.4g}", best["one"] / best["lanes"],
            f"{chosen} (limit {LANE_WEIGHT_LIMIT / 2**20:g} MiB)"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="the sample model only, few batches, one repeat")
    ap.add_argument("--models", default=None, help="comma-separated: digits, cnn32, cnn224, cifar, imagenet")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)
    names = (args.models or ("digits" if args.quick else "digits,cnn32,cnn224,cifar,imagenet")).split(",")
    repeat = 1 if args.quick else args.repeat
    C.print_machine()
    rows = [measure(m, key, args.threads, repeat, args.quick) for key, m in zip(names, C.models(names))]
    print()
    print(C.table(["model", "batch", "batches", "weights MiB", "bare samples/s, one call",
                   "bare samples/s, lanes", "lanes / one call", "onnxcert's lanes"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
