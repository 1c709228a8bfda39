"""Write onnxcert/stats/bj_tables.py: the cdf-bj scales shipped with onnxcert.

    python tools/make_bj_tables.py

Calibrates every (n, alpha) below from scratch (no cache, no shipped guess) and writes the
module. Run it after any change to the band or its calibration (``berk_jones.ALGORITHM``); the
tests recompute every shipped crossing probability.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from onnxcert.stats import berk_jones as bj

ALPHA = 0.001
COMMON_N = [100, 200, 500, 1000, 2000, 5000, 10_000, 20_000, 50_000, 100_000, 200_000, 500_000, 1_000_000]


def sequential_looks(n: int) -> list[int]:
    """The fixed look schedule of the sequential mode: min(1000, n), doubling, then n."""
    looks = [min(1000, n)]
    while looks[-1] * 2 < n:
        looks.append(looks[-1] * 2)
    if looks[-1] != n:
        looks.append(n)
    return looks


def requests() -> list[tuple[int, float]]:
    out = [(n, ALPHA) for n in COMMON_N]
    for n in (100_000, 10_000):
        looks = sequential_looks(n)
        out += [(m, ALPHA / len(looks)) for m in looks]
    for alpha in (0.05, 0.01, 1e-6):
        out += [(n, alpha) for n in (100, 1000, 10_000, 100_000)]
    return list(dict.fromkeys(out))


def main() -> int:
    lines = []
    for n, alpha in requests():
        t = time.perf_counter()
        band = bj.calibrate(n, alpha, guess=bj.union_band(n, alpha).scale * 3.0)
        print(f"n={n:>8} alpha={alpha!r:<10} scale={band.scale!r} crossing/alpha={band.crossing / alpha:.6f} "
              f"{time.perf_counter() - t:.1f} s", flush=True)
        lines.append(f"    ({n}, {alpha!r}): ({band.scale!r}, {band.crossing!r}),")
    path = Path(bj.__file__).with_name("bj_tables.py")
    head = path.read_text().split("ALGORITHM = ")[0]
    path.write_text(head + f"ALGORITHM = {bj.ALGORITHM!r}\n"
                    "SCALES: dict[tuple[int, float], tuple[float, float]] = {\n" + "\n".join(lines) + "\n}\n")
    print(f"wrote {len(lines)} scales to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
