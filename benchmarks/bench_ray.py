"""Ray backend: throughput with 1 and 2 workers against the local backend, and Ray's overhead (issue 9).

    python benchmarks/bench_ray.py [--quick] [--inputs 64] [--n 10000] [--repeat 2]

The sample digits model certifies the first ``--inputs`` sample test images (n0 = 100). Each
configuration runs ``pipeline.certify`` end to end, statistics included, and is timed
``--repeat`` times; the fastest run counts (the machine is shared). One local Ray instance
(``ray.init(num_cpus=2)``, no dashboard) serves every Ray run; each Ray run starts its own
workers, so its wall time includes starting them.

- local, 1 thread: the local backend with one onnxruntime thread (what one Ray worker gets);
- local, 2 threads: the local backend with its default threads (every core of this machine);
- ray, W workers: ``--backend ray --workers W``, one CPU and one onnxruntime thread per worker.

"inputs/s once running" leaves out the start of a Ray run: it counts from the first chunk's
records to the last ones, less one chunk per worker (about what each had done by then). The
records of every Ray run are checked against the local run's.

Overhead, from the 1-worker Ray run against the 1-thread local run: ``per input`` is the Ray
run's time per input once running (below) minus the local time per input: shipping inputs and
records, scheduling chunks. ``startup`` is the rest of the Ray run's wall time: starting the
worker, loading the model into it, the first chunk's wait.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "sample_models" / "digits_sigma0.25.onnx"
IMAGES = ROOT / "sample_models" / "digits_test"


def inputs(count: int):
    """The first ``count`` sample test images, as an array [count, 1, 8, 8] in [0, 1], with labels."""
    import numpy as np
    from PIL import Image

    files = sorted(IMAGES.glob("*/*.png"))[:count]
    x = np.stack([np.asarray(Image.open(f).convert("L"), np.float32)[None] / 255 for f in files])
    return x, np.array([int(f.parent.name) for f in files])


def setup_for(x, y, n: int, threads: int | None):
    from onnxcert import pipeline

    flags = {"smoothing": {"n0": 100, "n": n, "sigma": 0.25}}
    return pipeline.prepare(MODEL, x, cli=flags, labels=y, device="cpu", threads=threads)


def timed(setup, backend=None) -> tuple[float, float, tuple]:
    """Wall time, seconds per input once the first records are in (workers running), records."""
    from onnxcert import pipeline

    arrivals = []
    t = time.perf_counter()
    certify = pipeline.certify if backend is None else backend.certify
    result = certify(setup, on_record=lambda rec: arrivals.append(time.perf_counter()))
    wall = time.perf_counter() - t
    if backend is None:
        return wall, wall / len(arrivals), result.records
    # from the end of the first chunk to the end of the last; by then every worker had about one
    # chunk done, which the count leaves out
    p = backend.provenance
    early = min(len(arrivals) - 1, p["workers"] * p["chunk_size"])
    return wall, (arrivals[-1] - arrivals[0]) / (len(arrivals) - early), result.records


def best(setup, repeat: int, backend=None) -> tuple[float, float, tuple]:
    runs = [timed(setup, backend) for _ in range(max(1, repeat))]
    return min(r[0] for r in runs), min(r[1] for r in runs), runs[0][2]


def machine() -> str:
    import numpy as np
    import onnxruntime
    import ray

    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    return (f"machine: {cpu}; {cores} cores; load avg {load}; python {platform.python_version()}; "
            f"onnxruntime {onnxruntime.__version__}; ray {ray.__version__}; numpy {np.__version__}")


def table(headers, rows) -> str:
    cells = [[(f"{v:,.2f}" if v < 100 else f"{v:,.0f}") if isinstance(v, float) else str(v) for v in row]
             for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    line = lambda vals: "| " + " | ".join(v.rjust(w) for v, w in zip(vals, widths)) + " |"  # noqa: E731
    return "\n".join([line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, cells)])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="16 inputs, n = 500, one repeat")
    ap.add_argument("--inputs", type=int, default=64)
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args(argv)
    if args.quick:
        args.inputs, args.n, args.repeat = 16, 500, 1
    try:
        import ray
    except ImportError:
        print("ray is not installed: pip install 'onnxcert[ray]'", file=sys.stderr)
        return 2
    from onnxcert.ray_backend import RayBackend, RayOptions

    logging.getLogger("onnxcert").setLevel(logging.ERROR)
    x, y = inputs(args.inputs)
    count = args.inputs
    one, many = setup_for(x, y, args.n, threads=1), setup_for(x, y, args.n, threads=None)
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    try:
        print(machine())
        t_one, _, reference = best(one, args.repeat)
        t_many, _, _ = best(many, args.repeat)
        ray_t, steady = {}, {}
        for w in (1, 2):
            ray_t[w], steady[w], records = best(one, args.repeat, RayBackend(RayOptions(workers=w)))
            assert [r.to_dict() for r in records] == [r.to_dict() for r in reference], "ray records differ"
    finally:
        ray.shutdown()

    per_input = 100 + args.n
    rows = [["local, 1 thread", t_one, t_one / count], ["local, 2 threads", t_many, t_many / count],
            ["ray, 1 worker", ray_t[1], steady[1]], ["ray, 2 workers", ray_t[2], steady[2]]]
    print(f"\n{count} inputs x (n0 100 + n {args.n:,}) samples; best of {args.repeat}; records identical to local: yes\n")
    print(table(["backend", "wall s", "inputs/s", "samples/s", "vs local 1 thread", "inputs/s once running"],
                [[name, t, count / t, count * per_input / t, f"{t_one / t:.2f}x", 1 / per]
                 for name, t, per in rows]))
    local_per = t_one / count
    print(f"\nRay overhead (1 worker against local with 1 thread): startup {ray_t[1] - steady[1] * count:.2f} s "
          f"per run; {(steady[1] - local_per) * 1000:.1f} ms per input (ray {steady[1] * 1000:.1f} ms per input "
          f"once running, local {local_per * 1000:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
