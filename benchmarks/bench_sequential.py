"""Sequential certification (``run --gate --sequential``): samples to a decision, and verdicts against fixed n.

    python benchmarks/bench_sequential.py [--part synthetic|model|all] [--n 100000] [--alpha 0.001]
                                          [--inputs 20] [--model-inputs 250] [--wall]

synthetic: for each score law (Beta(990, 10), Beta(8, 2), 0.9 Beta(90, 10) + 0.1 Beta(10, 90),
the laws of bench_bands), ``--inputs`` independent "inputs" of n samples each (votes: score > 1/2),
and for each gate cell (score/cdf-bj c=0.7 r=0.25, score/cdf-bj c=0.5 r=0.5, label r=0.25,
label r=0.5) on its own: the mean samples to a decision / n, the decisions, and how often the
certified verdict agrees with a fixed-n certificate (alpha at n, as ``run`` without
--sequential).

model: the sample model's held-out digits certified once at n with ``run --sequential`` and once at
fixed n, the same cells; samples / n per cell (each cell alone, from the run's per-look samples)
and per gate (all four cells: the input's ``samples`` in the report); per-input agreement; gate
verdicts. With ``--wall``: wall time of ``onnxcert run ... --gate --sequential`` / fixed n on the
README's main command.

All numbers are measured in this run; bands for (n_k, alpha / K) are calibrated on first use
(cached in ~/.cache/onnxcert).
"""

from __future__ import annotations

import argparse
import json
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


def fixed_certified(score: np.ndarray, cell: Cell, alpha: float) -> bool:
    """The fixed-n verdict: the certificate ``run`` writes without --sequential (alpha at n)."""
    n = score.size
    if cell.measure == "label":
        radius = label_certificate(int(np.count_nonzero(score > 0.5)), n, SIGMA, alpha).radius
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
            fixed = [fixed_certified(z, cell, alpha) for z in samples]
            spent = [plan.looks[k - 1] for _, k in got]
            seq = [d == CERTIFIED for d, _ in got]
            rows.append([name, describe(cell), float(np.mean(spent)) / n, sum(seq), sum(fixed),
                         sum(d == FUTILE for d, _ in got), f"{sum(a == b for a, b in zip(seq, fixed))}/{inputs}",
                         time.perf_counter() - t])
    print(table(["law", "cell", "samples / n", "certified seq", "certified fixed", "futile",
                 "agree", "stats s"], rows))


# ---------------------------------------------------------------- the sample model


def onnxcert(*args: str) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "onnxcert", *args], check=False, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def sample_model(n: int, alpha: float, count: int, wall: bool) -> None:
    from onnxcert.api import certify_model

    if not SAMPLE_MODEL.exists():
        print("sample model not found; skipped")
        return
    plan = SequentialPlan.for_n(n, alpha)
    print(f"\nsample model {SAMPLE_MODEL.name} on {count} held-out digits: n = {n:,}, alpha = {alpha:g}, "
          f"looks {list(plan.looks)}")
    rules = [{"measure": c.measure, **({"method": c.method, "threshold": c.threshold} if c.method else {}),
              "radius": c.radius, "min_accuracy": 0.5} for c in CELLS]
    with tempfile.TemporaryDirectory() as tmp:
        rules_path = Path(tmp) / "rules.yaml"
        rules_path.write_text(json.dumps(rules))
        common = dict(sigma=SIGMA, alpha=alpha, n=n, thresholds={"score": [0.5, 0.7]}, radii=[0.25, 0.5],
                      limit=count)
        t = time.perf_counter()
        fixed = certify_model(SAMPLE_MODEL, SAMPLE_IMAGES, **common)
        t_fixed = time.perf_counter() - t
        per_cell = []
        t = time.perf_counter()
        for cell, rule in zip(CELLS, rules):
            one = Path(tmp) / "one.yaml"
            one.write_text(json.dumps([rule]))
            per_cell.append(certify_model(SAMPLE_MODEL, SAMPLE_IMAGES, gate=one, sequential=True,
                                          dataset_stop=False, **common))
        seq = certify_model(SAMPLE_MODEL, SAMPLE_IMAGES, gate=rules_path, sequential=True, dataset_stop=False,
                            **common)
        t_seq = time.perf_counter() - t
    rows = []
    for cell, rep in zip(CELLS, per_cell):
        recs = rep.report["records"]
        got = [r["decisions"][0] for r in recs]
        want = [_certified(r, cell) for r in fixed.report["records"]]
        rows.append([describe(cell), float(np.mean([r["samples"] for r in recs])) / n,
                     sum(d == CERTIFIED for d in got), sum(want), sum(d == FUTILE for d in got),
                     f"{sum((d == CERTIFIED) == w for d, w in zip(got, want))}/{len(recs)}"])
    recs = seq.report["records"]
    rows.append(["all four (one gate)", float(np.mean([r["samples"] for r in recs])) / n, "", "", "", ""])
    print(table(["cell", "samples / n", "certified seq", "certified fixed", "futile", "agree"], rows))
    print(f"statistics + sampling wall time: fixed {t_fixed:.1f} s, sequential (5 runs) {t_seq:.1f} s")
    if wall:
        wall_ratio(n, alpha, count)


def _certified(record: dict, cell: Cell) -> bool:
    if cell.measure == "label":
        r = record["label_certificate"]["radius"]
    else:
        conf = record["confidence"][cell.measure][cell.method]
        r = conf["radius"][{0.5: 0, 0.7: 1}[cell.threshold]]
    return r is not None and (r == "inf" or float(r) >= cell.radius)


def wall_ratio(n: int, alpha: float, count: int) -> None:
    """``onnxcert run`` on the README's main command with a gate, sequential / fixed n."""
    with tempfile.TemporaryDirectory() as tmp:
        rules = Path(tmp) / "rules.yaml"
        rules.write_text(json.dumps([{"measure": "score", "method": "cdf-bj", "threshold": 0.7, "radius": 0.25,
                                      "min_accuracy": 0.6}, {"measure": "label", "radius": 0.5,
                                                             "min_accuracy": 0.5}]))
        base = [str(SAMPLE_MODEL), str(SAMPLE_IMAGES), "--n", str(n), "--alpha", str(alpha), "--gate", str(rules),
                "--limit", str(count), "-q", "--force"]
        t_fixed = onnxcert("run", *base, "-o", f"{tmp}/fixed.json")
        t_seq = onnxcert("run", *base, "--sequential", "-o", f"{tmp}/seq.json")
    print(f"wall time, onnxcert run --gate (README main command, {count} digits, n = {n:,}): fixed {t_fixed:.1f} s, "
          f"--sequential {t_seq:.1f} s, ratio {t_seq / t_fixed:.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=["synthetic", "model", "all"], default="all")
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--alpha", type=float, default=0.001)
    ap.add_argument("--inputs", type=int, default=20, help="synthetic inputs per law")
    ap.add_argument("--model-inputs", type=int, default=250, help="held-out digits of the sample model")
    ap.add_argument("--wall", action="store_true", help="also time onnxcert run --gate, sequential / fixed")
    args = ap.parse_args()
    print_machine()
    if args.part in ("synthetic", "all"):
        synthetic(args.n, args.alpha, args.inputs)
    if args.part in ("model", "all"):
        sample_model(args.n, args.alpha, args.model_inputs, args.wall)


if __name__ == "__main__":
    main()
