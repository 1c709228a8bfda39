"""The compiled noise fill of another build of ``onnxcert._kernels`` against this one, in one process.

    python benchmarks/bench_kernel_ab.py OTHER_KERNELS_SO [--repeat 40]

OTHER_KERNELS_SO is a ``_kernels*.so`` built from another commit, e.g. issue 17's 256-layer
ziggurat (adb0c1c)::

    mkdir /tmp/oldk && cd /tmp/oldk
    git -C REPO show adb0c1c:onnxcert/_kernels.c > _kernels.c
    git -C REPO show adb0c1c:onnxcert/_ziggurat_tables.h > _ziggurat_tables.h
    gcc -O2 -std=c99 -ffp-contract=off -fno-fast-math -shared -fPIC $(python3-config --includes) \\
        _kernels.c -o _kernels$(python3-config --extension-suffix) -lm

Per sample shape, fills one batch buffer with ``x + scale * z`` (one scale per channel) with each
build in turn, alternating which goes first, and prints the thread CPU time per value (fastest and
median) and the median of the paired ratios this / other. Measured in this run.
"""

from __future__ import annotations

import argparse
import importlib.util
import time

import numpy as np

import _common as C
from onnxcert import _kernels as this
from onnxcert.noise import scale_runs

SHAPES = (((3, 224, 224), 27), ((3, 32, 32), 200), ((1, 8, 8), 1024))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("other", help="path of another build's _kernels*.so")
    ap.add_argument("--repeat", type=int, default=40)
    args = ap.parse_args()
    spec = importlib.util.spec_from_file_location("_kernels", args.other)
    other = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(other)
    std = np.array([0.229, 0.224, 0.225], np.float32)
    C.print_machine()
    print("| sample | batch | other ns/value (min / median) | this ns/value (min / median) | paired this / other |")
    print("|---|---|---|---|---|")
    for shape, b in SHAPES:
        buf = np.empty((b, *shape), np.float32)
        x = np.full(shape, 0.3, np.float32)
        s, run = scale_runs((np.float32(0.25) / std[:shape[0]]).reshape(-1, 1, 1), shape)
        seed = np.random.SFC64(np.random.SeedSequence(1, spawn_key=(0, 1))).state["state"]["state"]
        states = {"other": np.array(seed, np.uint64), "this": np.array(seed, np.uint64)}
        times: dict[str, list[float]] = {"other": [], "this": []}
        for r in range(args.repeat):
            order = (("other", other), ("this", this)) if r % 2 else (("this", this), ("other", other))
            for name, mod in order:
                t = time.thread_time_ns()
                mod.fill(states[name], buf, x, s, run)
                times[name].append((time.thread_time_ns() - t) / buf.size)
        o, t = np.array(times["other"]), np.array(times["this"])
        print(f"| {'x'.join(map(str, shape))} | {b} | {o.min():.2f} / {np.median(o):.2f} | "
              f"{t.min():.2f} / {np.median(t):.2f} | {np.median(t / o):.3f} |")


if __name__ == "__main__":
    main()
