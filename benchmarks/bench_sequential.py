"""Sequential certification (``run --gate --sequential``): samples to a decision, and verdicts against fixed n.

    python benchmarks/bench_sequential.py [--part synthetic|model|wall|all] [--n 100000] [--alpha 0.001]
                                          [--inputs 20] [--model-inputs 250] [--wall] [--quick]

synthetic: for each score law (Beta(990, 10), Beta(8, 2), 0.9 Beta(90, 10) + 0.1 Beta(10, 90),
the laws of bench_bands), ``--inputs`` independent "inputs" of n samples each (votes: score > 1/2),
and for each gate cell (score/cdf-bj c=0.7 r=0.25, score/cdf-bj c=0.5 r=0.5, label r=0.25,
label r=0.5) on its own: the mean samples to a decision / n, the decisions, and how often the
certified verdict agrees with a fixed-n certificate (alpha at n, as ``run`` without
--sequential).

model: the sample model's held-out digits, sampled look by look with the sampler ``run --sequential``
uses (so the same noise); for each cell alone, the look its sequential decision is made at
(samples / n) and the fixed-n certificate from all n samples; certified accuracy of both, and the
certificates a futility stop lost or the sequential bound gained. "all four at once" is an input's
samples under a gate with all four cells. With ``--wall``: wall time of ``onnxcert run ... --gate``
with and without ``--sequential`` on the README's main command (n = 10,000), and the exit codes.

All numbers are measured in this run; bands for (n_k, alpha / K) are calibrated on first use
(cached in ~/.cache/onnxcert).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SAMPLE_IMAGES, SAMPLE_MODEL, print_machine, table  # noqa: E402

from onnxcert.stats.confidence import EmpiricalTail  # noqa: E402
from onnxcert.stats.label import label_certificate  # noqa: E402
from onnxcert.stats.sequential import CERTIFIED, FUTILE, Cell, SequentialPlan, simulate_cell  # noqa: E402
from onnxcert.stats.sequential import lower_bound  # noqa: E402

SIGMA = 0.25
CELLS = (Cell("score", "cdf-bj", 0.7, 0.25), Cell("score", "cdf-bj", 0.5, 0.5),
         Cell("label", None, None, 0.25), Cell("label", None, None, 0.5))


def describe(cell: Cell) -> str:
    if cell.measure == "label":
        return f"label r={cell.radius:g}"
    return f"{cell.measure}/{cell.method} c={cell.threshold:g} r={cell.radius:g}"


def laws(n: int, rng: np.random.Generator) -> dict[str, callable]:
    return {
        "Beta(990, 10)": lambda: rng.beta(990, 10, n),
        "Beta(8, 2)": lambda: rng.beta(8, 2, n),
        "bimodal 0.9/0.1": lambda: np.where(rng.random(n) < 0.9, rng.beta(90, 10, n), rng.beta(10, 90, n)),
    }


def fixed_certified(score: np.ndarray, votes: int, cell: Cell, alpha: float) -> bool:
    """The fixed-n verdict: the certificate ``run`` writes without --sequential (alpha at n)."""
    n = score.size
    if cell.measure == "label":
        radius = label_certificate(votes, n, SIGMA, alpha).radius
        return radius is not None and radius >= cell.radius
    tail = EmpiricalTail.from_samples(score, 0.0, 1.0)
    return bool(lower_bound(tail, cell.method, alpha, SIGMA).at([cell.radius])[0] >= cell.threshold)


def decide(score: np.ndarray, cell: Cell, plan: SequentialPlan) -> tuple[str, int]:
    votes = np.cumsum(score > 0.5) if cell.measure == "label" else None
    return simulate_cell(score, votes, cell, plan, SIGMA)


def synthetic(n: int, alpha: float, inputs: int) -> None:
    plan = SequentialPlan.for_n(n, alpha)
    print(f"\nsynthetic score laws: n = {n:,}, alpha = {alpha:g}, looks {list(plan.looks)}, "
          f"alpha/K = {plan.alpha_per_look:.3g}, {inputs} inputs per law")
    rows = []
    for name, draw in laws(n, np.random.default_rng(0)).items():
        samples = [draw() for _ in range(inputs)]
        for cell in CELLS:
            t = time.perf_counter()
            got = [decide(z, cell, plan) for z in samples]
            fixed = [fixed_certified(z, int(np.count_nonzero(z > 0.5)), cell, alpha) for z in samples]
            spent = [plan.looks[k - 1] for _, k in got]
            seq = [d == CERTIFIED for d, _ in got]
            rows.append([name, describe(cell), float(np.mean(spent)) / n, sum(seq), sum(fixed),
                         sum(d == FUTILE for d, _ in got), f"{sum(a == b for a, b in zip(seq, fixed))}/{inputs}",
                         time.perf_counter() - t])
    print(table(["law", "cell", "samples / n", "certified seq", "certified fixed", "futile",
                 "agree", "stats s"], rows))


# ---------------------------------------------------------------- the sample model


def digit_folder(count: int, root: Path) -> Path:
    """The first ``count`` held-out digits (every one when count >= 250), in label sub-folders."""
    files = sorted(SAMPLE_IMAGES.glob("*/*.png"))
    if count >= len(files):
        return SAMPLE_IMAGES
    for f in files[:: max(1, len(files) // count)][:count]:
        (root / f.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(f, root / f.parent.name / f.name)
    return root


def model_looks(folder: Path, n: int, plan: SequentialPlan):
    """Per digit: (label, prediction, per-look score arrays, per-look vote counts), drawn look by look
    with the sampler a sequential run uses (the same noise as ``run --sequential``)."""
    from onnxcert import pipeline

    setup = pipeline.prepare(SAMPLE_MODEL, folder, cli=[{"smoothing": {"n": n, "sigma": SIGMA}}], device="cpu")
    sampler = pipeline.make_sampler(setup)
    pre, items = setup.preprocessor, setup.inputs
    for i in range(len(items)):
        x = pre.prepare(items.load(i))
        xn, scale = pre.normalize(x), pre.noise_scale(SIGMA, x.shape)
        c, _ = sampler.select(i, xn, scale)
        draw = sampler.estimation(i, xn, scale, c)
        scores, votes, start = [], [], 0
        for n_k in plan.looks:
            score, _, v = draw(start, n_k)
            scores.append(score)
            votes.append(v)
            start = n_k
        yield items.labels[i], c, scores, votes


def sample_model(n: int, alpha: float, count: int, wall: bool) -> None:
    if not SAMPLE_MODEL.exists():
        print("sample model not found; skipped")
        return
    plan = SequentialPlan.for_n(n, alpha)
    print(f"\nsample model {SAMPLE_MODEL.name}, {count} held-out digits: n = {n:,}, alpha = {alpha:g}, "
          f"looks {list(plan.looks)}, alpha/K = {plan.alpha_per_look:.3g}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = digit_folder(count, Path(tmp))
        t = time.perf_counter()
        got = {cell: [] for cell in CELLS}
        correct = []
        for label, c, scores, votes in model_looks(folder, n, plan):
            score = np.concatenate(scores)
            prefix = np.zeros(n, np.int64)
            prefix[np.asarray(plan.looks) - 1] = np.cumsum(votes)
            correct.append(label == c)
            for cell in CELLS:
                seq = simulate_cell(score, prefix if cell.measure == "label" else None, cell, plan, SIGMA)
                got[cell].append((seq, fixed_certified(score, int(sum(votes)), cell, alpha)))
        spent = time.perf_counter() - t
    rows, stop_all = [], np.zeros(len(correct), int)
    for cell in CELLS:
        looks = np.array([k for (_, k), _ in got[cell]])
        stop_all = np.maximum(stop_all, looks)
        seq = np.array([d == CERTIFIED for (d, _), _ in got[cell]])
        fixed = np.array([f for _, f in got[cell]])
        futile = np.array([d == FUTILE for (d, _), _ in got[cell]])
        ok = np.array(correct)
        rows.append([describe(cell), float(np.mean(np.asarray(plan.looks)[looks - 1])) / n,
                     float(np.mean(seq & ok)), float(np.mean(fixed & ok)),
                     int(np.sum(futile)), int(np.sum(~seq & fixed)), int(np.sum(futile & fixed)),
                     int(np.sum(seq & ~fixed)), f"{int(np.sum(seq == fixed))}/{len(seq)}"])
    rows.append(["all four at once", float(np.mean(np.asarray(plan.looks)[stop_all - 1])) / n,
                 "", "", "", "", "", "", ""])
    print(table(["cell", "samples / n", "cert. acc. seq", "cert. acc. fixed", "futile", "lost",
                 "lost by futility", "gained", "agree"], rows))
    print(f"(sampling {count} x {n:,} samples in looks and both decisions: {spent:.0f} s)")
    if wall:
        wall_ratio(alpha)


def wall_ratio(alpha: float) -> None:
    """The README's main command (250 digits, n = 10,000) with a gate: sequential / fixed n."""
    with tempfile.TemporaryDirectory() as tmp:
        rules = Path(tmp) / "rules.yaml"
        rules.write_text(json.dumps([{"measure": "score", "method": "cdf-bj", "threshold": 0.7, "radius": 0.25,
                                      "min_accuracy": 0.6}, {"measure": "label", "radius": 0.5,
                                                             "min_accuracy": 0.5}]))
        base = [str(SAMPLE_MODEL), str(SAMPLE_IMAGES), "--n", "10000", "--alpha", str(alpha), "--gate", str(rules),
                "-q", "--force"]
        onnxcert("run", *base, "--sequential", "-o", f"{tmp}/warm.json")  # calibrates the look bands once
        runs = {"fixed n": (), "--sequential --no-dataset-stop": ("--sequential", "--no-dataset-stop"),
                "--sequential": ("--sequential",)}
        times, verdicts = {}, {}
        for _ in range(2):  # interleaved, the faster of two: the least disturbed by other processes
            for name, extra in runs.items():
                t, verdicts[name] = onnxcert("run", *base, *extra, "-o", f"{tmp}/r.json")
                times[name] = min(t, times.get(name, t))
    print(f"\nwall time of onnxcert run --gate (README main command: 250 digits, n = 10,000; exit code = verdict):")
    print(table(["run", "wall s", "/ fixed n", "exit"],
                [[k, v, v / times["fixed n"], verdicts[k]] for k, v in times.items()]))


def onnxcert(*args: str) -> tuple[float, int]:
    t = time.perf_counter()
    rc = subprocess.run([sys.executable, "-m", "onnxcert.cli", *args], check=False,
                        stdout=subprocess.DEVNULL).returncode
    return time.perf_counter() - t, rc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=["synthetic", "model", "wall", "all"], default="all")
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--alpha", type=float, default=0.001)
    ap.add_argument("--inputs", type=int, default=20, help="synthetic inputs per law")
    ap.add_argument("--model-inputs", type=int, default=250, help="held-out digits of the sample model")
    ap.add_argument("--wall", action="store_true", help="also time onnxcert run --gate, sequential / fixed")
    ap.add_argument("--quick", action="store_true", help="n = 2,000, 3 inputs per law, 10 digits (a smoke test)")
    args = ap.parse_args()
    if args.quick:
        args.n, args.inputs, args.model_inputs, args.wall = 2000, 3, 10, False
    print_machine()
    if args.part in ("synthetic", "all"):
        synthetic(args.n, args.alpha, args.inputs)
    if args.part in ("model", "all"):
        sample_model(args.n, args.alpha, args.model_inputs, args.wall)
    elif args.part == "wall":
        wall_ratio(args.alpha)


if __name__ == "__main__":
    main()
