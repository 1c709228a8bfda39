"""Against the peers' way: a torch eager loop like Cohen et al.'s against onnxcert (issue 7.2).

    python benchmarks/bench_peers.py [--quick] [--models cifar,imagenet] [--repeat 2]

The torch loop follows locuslab/smoothing ``code/core.py`` (``Smooth._sample_noise``), with the
softmax scores that Kumar et al. (2020) certify instead of argmax votes, on the CPU:
``batch = x.repeat(b, 1, 1, 1)``, ``noise = torch.randn_like(batch) * sigma``, forward pass of
``Sequential(NormalizeLayer, net)`` under ``torch.no_grad()``, ``softmax``, then the predicted
class's score and the margin to the runner-up, moved to NumPy. onnxcert runs its sampling loop
(the same work: noise, forward pass, score and margin) on the ONNX export of the very same
network and weights. Same batch size (onnxcert's default unless --batch-size) and threads
(``torch.set_num_threads`` = onnxruntime's intra-op threads). Fastest of ``--repeat``, measured
in this run; the statistics are left out of both. CPU time per 1,000 samples (all threads) is
shown too: on a shared machine it is the steadier comparison.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

import _common as C

SAMPLES = {"cifar": (1_024, 64), "cifar20": (2_048, 64), "imagenet": (96, 8)}  # full, --quick


def torch_loop(net, x: np.ndarray, *, n: int, batch: int, sigma: float, c: int):
    """Cohen et al.'s sampling loop with softmax scores: (score, margin) for class c, [n] each."""
    import torch

    score, margin = np.empty(n), np.empty(n)
    xt = torch.from_numpy(x)[None]
    done = 0
    with torch.no_grad():
        while done < n:
            b = min(batch, n - done)
            inp = xt.repeat((b, 1, 1, 1))
            noise = torch.randn_like(inp) * sigma
            probs = torch.softmax(net(inp + noise), dim=1)
            top2 = torch.topk(probs, 2, dim=1)
            pc = probs[:, c]
            other = torch.where(top2.indices[:, 0] == c, top2.values[:, 1], top2.values[:, 0])
            score[done:done + b] = pc.numpy()
            margin[done:done + b] = (pc - other).numpy()
            done += b
    return score, margin


def measure(m: C.BenchModel, key: str, *, quick: bool, repeat: int, batch_size: int | None,
            threads: int | None) -> list[object]:
    import torch

    from onnxcert import pipeline

    n = SAMPLES[key][1 if quick else 0]
    setup = C.prepare(m, C.clean_inputs(m, 1), n0=1, n=n, batch_size=batch_size, threads=threads)
    sampler = pipeline.make_sampler(setup)
    batches = C.bare_batches(setup)
    setup.classifier(batches[0])  # warm-up
    threads_used = setup.classifier.session_options["intra_op_num_threads"]
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads_used)
    net = C.torch_model(m)
    x = C.clean_inputs(m, 1)[0]
    b = setup.batch_size
    try:
        torch_loop(net, x, n=min(b, n), batch=b, sigma=0.25, c=0)  # warm-up
        loops = {"bare": lambda: C.run_bare(setup, batches), "onnxcert": lambda: C.run_sampling(setup, sampler),
                 "torch": lambda: torch_loop(net, x, n=setup.samples_per_input, batch=b, sigma=0.25, c=0)}
        wall = {k: float("inf") for k in loops}
        cpu = dict(wall)
        for _ in range(repeat):
            for k, fn in loops.items():
                w, c = C.timed(fn)
                wall[k], cpu[k] = min(wall[k], w), min(cpu[k], c)
    finally:
        torch.set_num_threads(old_threads)
    rate = {k: setup.samples_per_input / t for k, t in wall.items()}
    ms = {k: 1e6 * t / setup.samples_per_input for k, t in cpu.items()}
    return [m.name, b, threads_used, setup.samples_per_input, rate["torch"], rate["onnxcert"], rate["bare"],
            rate["onnxcert"] / rate["torch"], ms["torch"], ms["onnxcert"], ms["torch"] / ms["onnxcert"]]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a CIFAR ResNet-20, tiny n, one repeat")
    ap.add_argument("--models", default=None, help="comma-separated: cifar, cifar20, imagenet")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=None, help="default: onnxcert's automatic choice")
    ap.add_argument("--threads", type=int, default=None, help="default: onnxcert's default")
    args = ap.parse_args(argv)
    names = (args.models or ("cifar20" if args.quick else "cifar,imagenet")).split(",")
    repeat = 1 if args.quick else args.repeat

    import torch

    C.print_machine()
    print(f"torch {torch.__version__}")
    rows = [measure(m, key, quick=args.quick, repeat=repeat, batch_size=args.batch_size, threads=args.threads)
            for key, m in zip(names, C.models(names))]
    print()
    print(C.table(["model", "batch", "threads", "samples", "torch eager samples/s", "onnxcert samples/s",
                   "bare onnxruntime samples/s", "onnxcert / torch", "torch CPU ms/1k",
                   "onnxcert CPU ms/1k", "torch / onnxcert (CPU)"], rows))
    print()
    for row in rows:
        verdict = "at least as fast as" if row[7] >= 1 else "slower than"
        print(f"{row[0]}: onnxcert is {row[7]:.2f}x the torch loop ({verdict} it); "
              f"{row[10]:.2f}x in CPU time")
    return 0


if __name__ == "__main__":
    sys.exit(main())
