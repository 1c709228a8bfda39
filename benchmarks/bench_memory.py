"""Memory: peak RSS of certifying one input at n = 1e4, 1e5, 1e6 (issue 7.3).

    python benchmarks/bench_memory.py [--quick] [--model digits] [--ns 10000,100000,1000000]

Each n runs in a fresh subprocess, which reports its peak RSS (VmHWM) three times: after loading
the model and one warm-up batch (the baseline), after sampling one input (n0 = 100 plus n) and
after certifying it (label certificate, score and margin, naive, cdf-dkw and cdf-bj). The growth
over the baseline, per sample, is what must stay flat in n: the sampler keeps each sample's score
and margin (two float64, 16 bytes), never the [n, k] outputs or the noise. The cdf-bj band for
each n is calibrated (or read from its table or cache) in a separate process first, so that its
one-off cost is not counted.

A second table measures what a batch costs: the peak RSS of a run at two batch sizes, whose
difference per sample, over the input's bytes, is the activation factor that
``sampling.auto_batch_size`` assumes (ACTIVATION_FACTOR).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np

import _common as C

HERE = Path(__file__).resolve().parent


def peak_rss_bytes() -> int:
    """This process's peak resident set size so far."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def child(key: str, n: int, batch_size: int | None, n0: int = 100) -> None:
    """Certify one input with n estimation samples; print the three peaks as JSON."""
    from onnxcert import pipeline
    from onnxcert.stats.certify import certify_samples

    (m,) = C.models([key])
    setup = C.prepare(m, C.clean_inputs(m, 1), n0=n0, n=n, batch_size=batch_size)
    s, pre = setup.config.settings, setup.preprocessor
    sampler = pipeline.make_sampler(setup)
    x = pre.prepare(setup.inputs.load(0))
    sampler.model(pre.normalize(x)[None].repeat(setup.batch_size, axis=0))  # warm-up at full batch
    base = peak_rss_bytes()
    got = sampler.sample(0, pre.normalize(x), pre.noise_scale(s.sigma, x.shape))
    sampled = peak_rss_bytes()
    certify_samples(got.prediction, {"score": got.score, "margin": got.margin}, got.votes, sigma=s.sigma,
                    alpha=s.alpha, methods=s.methods, thresholds=s.thresholds, radii=s.radii)
    certified = peak_rss_bytes()
    print(json.dumps({"base": base, "sampled": sampled, "certified": certified, "batch": setup.batch_size}))


def run_child(key: str, n: int, batch_size: int | None, n0: int = 100) -> dict:
    cmd = [sys.executable, str(HERE / "bench_memory.py"), "--child", "--model", key, "--ns", str(n),
           "--n0", str(n0)]
    if batch_size:
        cmd += ["--batch-size", str(batch_size)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def warm_band(n: int) -> None:
    code = "import sys; from onnxcert.stats import bj_band; bj_band(int(sys.argv[1]), 0.001)"
    subprocess.run([sys.executable, "-c", code, str(n)], check=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="n = 1e3 and 1e4 only")
    ap.add_argument("--model", default="digits", help="digits, cifar or imagenet (large n takes long on the last two)")
    ap.add_argument("--ns", default=None, help="comma-separated n (default 10000,100000,1000000)")
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--activations", default=None,
                    help="models whose memory per batched sample is measured (default digits,cifar,imagenet; "
                         "none with --quick)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--n0", type=int, default=100, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    ns = [int(float(v)) for v in (args.ns or ("1000,10000" if args.quick else "10000,100000,1000000")).split(",")]
    if args.child:
        child(args.model, ns[0], args.batch_size, args.n0)
        return 0

    C.print_machine()
    mib = 1 << 20
    rows = []
    for n in ns:
        warm_band(n)
        r = run_child(args.model, n, args.batch_size)
        grow_s, grow_c = r["sampled"] - r["base"], r["certified"] - r["base"]
        rows.append([f"{n:,}", r["batch"], r["base"] / mib, r["sampled"] / mib, r["certified"] / mib,
                     grow_s / mib, grow_c / mib, grow_s / n, grow_c / n])
    (m,) = C.models([args.model])
    print(f"\n{m.name}, one input, n0 = 100\n")
    print(C.table(["n", "batch", "baseline MiB", "peak after sampling MiB", "peak after certifying MiB",
                   "growth sampling MiB", "growth total MiB", "sampling bytes/sample", "total bytes/sample"],
                  rows))
    big = rows[-1]
    print(f"\nat n = {big[0]}: {big[7]:.1f} bytes per sample while sampling, {big[8]:.1f} with the statistics; "
          f"peak {big[4]:.0f} MiB against a baseline of {big[2]:.0f} MiB")
    keys = (args.activations or ("" if args.quick else "digits,cifar,imagenet")).split(",")
    if keys != [""]:
        activation_table([k for k in keys if k])
    return 0


def activation_table(keys: list[str], small: int = 8, large: int = 32) -> None:
    """Peak RSS at batch ``small`` and ``large``: the memory one more sample in a batch costs."""
    from onnxcert.sampling import ACTIVATION_FACTOR

    rows = []
    for key, m in zip(keys, C.models(keys)):
        peaks = [run_child(key, 2 * b, b, n0=b)["sampled"] for b in (small, large)]
        per_sample = (peaks[1] - peaks[0]) / (large - small)
        input_bytes = 4 * int(np.prod(m.shape))
        rows.append([m.name, f"{small} -> {large}", peaks[0] / (1 << 20), peaks[1] / (1 << 20),
                     per_sample / (1 << 20), per_sample / input_bytes])
    print(f"\nmemory per sample in a batch (ACTIVATION_FACTOR assumes {ACTIVATION_FACTOR} x the input's bytes)\n")
    print(C.table(["model", "batch", "peak MiB (small)", "peak MiB (large)", "MiB per batched sample",
                   "x input bytes"], rows))


if __name__ == "__main__":
    sys.exit(main())
