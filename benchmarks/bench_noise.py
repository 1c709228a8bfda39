"""The host noise draw alone: onnxcert's generators against NumPy's float32 ziggurat (issue 17).

    python benchmarks/bench_noise.py [--quick] [--repeat 15]

Per sample shape (the 8x8 sample model, a 32x32 RGB image, a 224x224 RGB image), fills one
batch buffer with ``x + scale * z`` the way the sampler does, three ways, alternating fill by
fill:
- NumPy's ``standard_normal(dtype=float32)`` (a ziggurat) on PCG64, plus the same in-place scale
  and shift: the host noise before issue 17;
- ``noise.NoiseStream`` with ``sfc64-box-muller-40bit``: SFC64 words, Box-Muller in NumPy ufuncs,
  the fallback when the compiled kernel is not built;
- ``noise.NoiseStream`` with ``sfc64-ziggurat1024``: the compiled kernel (``onnxcert._kernels``),
  the default when built (a 256-layer ziggurat, ``sfc64-ziggurat256``, until issue 17's last
  pass).
Per method the fastest of ``--repeat`` fills counts, in CPU time of this thread, which other
processes on a shared machine disturb less than the wall clock. Measured in this run.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import numpy as np

import _common as C

SHAPES = {"8x8 sample": (1, 8, 8), "32x32 RGB": (32, 32, 3), "224x224 RGB": (3, 224, 224)}


def legacy_fill(rng: np.random.Generator, batch, x, scale):
    rng.standard_normal(out=batch, dtype=np.float32)
    batch *= scale
    batch += x
    return batch


def measure(shape, values_per_fill: int, repeat: int) -> list[object]:
    from onnxcert import noise

    batch = np.empty((max(1, values_per_fill // math.prod(shape)), *shape), np.float32)
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    scale = np.float32(0.25)
    theirs = np.random.Generator(np.random.PCG64(0))
    fills = {"numpy": lambda: legacy_fill(theirs, batch, x, scale)}
    bm = noise.NoiseStream(0, 0, 1, noise.BOX_MULLER)
    fills["box-muller"] = lambda: bm.fill(batch, x, scale)
    if noise.compiled():
        zig = noise.NoiseStream(0, 0, 1, noise.ZIGGURAT)
        fills["compiled"] = lambda: zig.fill(batch, x, scale)
    best = {key: math.inf for key in fills}
    for _ in range(repeat):
        for key, fill in fills.items():
            t = time.thread_time()
            fill()
            best[key] = min(best[key], time.thread_time() - t)
    ns = {k: 1e9 * v / batch.size for k, v in best.items()}
    row = [batch.shape[0], batch.size, ns["numpy"], ns["box-muller"]]
    if "compiled" in ns:
        return row + [ns["compiled"], ns["numpy"] / ns["compiled"], ns["box-muller"] / ns["compiled"]]
    return row + ["not built", "-", "-"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small batches, 3 repeats")
    ap.add_argument("--repeat", type=int, default=15)
    args = ap.parse_args(argv)
    values, repeat = (1 << 16, 3) if args.quick else (1 << 21, args.repeat)
    C.print_machine()
    rows = [[name, *measure(shape, values, repeat)] for name, shape in SHAPES.items()]
    print()
    print(C.table(["sample", "batch", "values", "NumPy ziggurat ns/value", "Box-Muller (NumPy) ns/value",
                   "onnxcert ns/value (compiled ziggurat)", "speed-up vs NumPy ziggurat", "vs Box-Muller"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
