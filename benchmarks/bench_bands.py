"""Radii of naive, cdf-dkw and cdf-bj on the score distributions of issue 3, and their cost.

    python benchmarks/bench_bands.py [--n 100000] [--alpha 0.001] [--sigma 0.25]

Prints one table of certified radii per distribution (thresholds 0.5 .. 0.9) and the ratio
cdf-bj / cdf-dkw, all measured in this run. The sample model's real scores (a held-out digit with the median mean score
and one with the highest) are included when sample_models/digits_sigma0.25.onnx and onnxruntime
are present.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

from onnxcert import prepare_bands
from onnxcert.stats import certify_measure
from onnxcert.stats.berk_jones import clear_bands

ROOT = Path(__file__).resolve().parents[1]
THRESHOLDS = [0.5, 0.6, 0.7, 0.8, 0.9]
METHODS = ["naive", "cdf-dkw", "cdf-bj"]


def distributions(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    mix = np.where(rng.random(n) < 0.9, rng.beta(90, 10, n), rng.beta(10, 90, n))
    out = {
        "Beta(990, 10)": rng.beta(990, 10, n),
        "Beta(8, 2)": rng.beta(8, 2, n),
        "bimodal 0.9/0.1": mix,
        "constant 0.55": np.full(n, 0.55),
    }
    out.update(sample_model_scores(n, rng))
    return out


def sample_model_scores(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Softmax scores of the predicted class under N(0, 0.25^2) noise for two held-out digits:
    the one with the median and the one with the highest mean score among the first 50."""
    model = ROOT / "sample_models" / "digits_sigma0.25.onnx"
    images = sorted((ROOT / "sample_models" / "digits_test").glob("*/*.png"))
    if not model.exists() or not images:
        return {}
    try:
        import onnxruntime as ort
        from PIL import Image
    except ImportError:
        return {}
    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name

    def scores(path, m):
        x = np.asarray(Image.open(path).convert("L"), dtype=np.float32)[None, None] / 255.0
        out = []
        for start in range(0, m, 10_000):
            b = min(10_000, m - start)
            noisy = x + rng.standard_normal((b, *x.shape[1:]), dtype=np.float32) * 0.25
            logits = sess.run(None, {name: noisy})[0].astype(np.float64)
            p = np.exp(logits - logits.max(1, keepdims=True))
            out.append(p / p.sum(1, keepdims=True))
        p = np.concatenate(out)
        return p[:, int(np.argmax(p.mean(0)))]

    step = max(1, len(images) // 50)
    probe = sorted((float(scores(path, 500).mean()), str(path)) for path in images[::step][:50])
    median, top = probe[len(probe) // 2], probe[-1]
    return {f"digit, median ({median[0]:.2f})": scores(median[1], n),
            f"digit, top ({top[0]:.2f})": scores(top[1], n)}


def fmt(r) -> str:
    if r is None:
        return "-"
    return "inf" if math.isinf(r) else f"{r:.3f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--alpha", type=float, default=0.001)
    ap.add_argument("--sigma", type=float, default=0.25)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    clear_bands()
    band = prepare_bands([(args.n, args.alpha)])[(args.n, args.alpha)]
    t_band = time.perf_counter() - t0
    print(f"n={args.n}  alpha={args.alpha}  sigma={args.sigma}  (radii: L2, [0, 1] pixel space)")
    print(f"cdf-bj band: {band.ranks.size} ranks, crossing probability {band.crossing:.6g}, "
          f"shipped, cached or calibrated in {t_band:.2f} s")
    rng = np.random.default_rng(args.seed)
    header = f"{'distribution':<22}{'method':<9}" + "".join(f"{'c=' + str(c):>8}" for c in THRESHOLDS)
    print(header)
    print("-" * len(header))
    worst_ratio = []
    for name, z in distributions(args.n, rng).items():
        t = time.perf_counter()
        res = certify_measure(z, "score", METHODS, sigma=args.sigma, alpha=args.alpha,
                              thresholds=THRESHOLDS, radii=[0.0])
        dt = time.perf_counter() - t
        for m in METHODS:
            print(f"{name:<22}{m:<9}" + "".join(f"{fmt(r):>8}" for r in res[m].radius))
        ratios = []
        for rb, rd in zip(res["cdf-bj"].radius, res["cdf-dkw"].radius):
            if rd is not None and rb is not None and rd > 0:
                ratios.append(rb / rd)
            worst_ratio.append((rb or 0.0) - (rd or 0.0))
        ratio = "  ".join(f"{r:.2f}" for r in ratios) or "-"
        print(f"{'':<22}{'bj/dkw':<9}{ratio}    (3 methods, 5 thresholds: {dt * 1e3:.0f} ms)")
    print(f"smallest (bj - dkw) radius over all cells: {min(worst_ratio):+.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
