"""Shared by the benchmark scripts: the models, the machine, timing and tables.

The CIFAR ResNet-110 and the ImageNet ResNet-50 of Cohen et al. (2019) are exported once, with
random weights from a fixed torch seed, into a cache folder (``$ONNXCERT_BENCH_DIR``, else
``~/.cache/onnxcert/bench``); they are never written into the repository. Their torch weights
are kept beside them, so the torch benchmark runs exactly the network the ONNX file holds.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the repository's exporters/ (not installed), for the ResNets
    sys.path.insert(0, str(ROOT))
SAMPLE_MODEL = ROOT / "sample_models" / "digits_sigma0.25.onnx"
SAMPLE_IMAGES = ROOT / "sample_models" / "digits_test"
SEED = 0


@dataclass(frozen=True)
class BenchModel:
    """An ONNX model to benchmark, with the shape of one clean sample in [0, 1]."""

    name: str
    path: Path
    shape: tuple[int, ...]
    arch: str | None = None  # exporters.cohen architecture, when torch can rebuild it
    weights: Path | None = None


def cache_dir() -> Path:
    d = Path(os.environ.get("ONNXCERT_BENCH_DIR") or Path.home() / ".cache" / "onnxcert" / "bench")
    d.mkdir(parents=True, exist_ok=True)
    return d


def sample_model() -> BenchModel:
    return BenchModel("digits (sample)", SAMPLE_MODEL, (1, 8, 8))


def cohen_model(arch: str) -> BenchModel:
    """Cohen et al.'s ``arch`` with random weights (torch seed 0), normalization folded in,
    exported to the cache on first use."""
    from exporters.cohen import ARCHITECTURES, DATASETS

    ds = DATASETS[ARCHITECTURES[arch][0]]
    shape = (3, ds.size, ds.size)
    onnx_path, weights = cache_dir() / f"{arch}-random{SEED}.onnx", cache_dir() / f"{arch}-random{SEED}.pt"
    name = {"cifar_resnet110": "CIFAR ResNet-110", "cifar_resnet20": "CIFAR ResNet-20",
            "resnet50": "ImageNet ResNet-50"}.get(arch, arch)
    if not (onnx_path.exists() and weights.exists()):
        _export(arch, ds, shape, onnx_path, weights)
    return BenchModel(name, onnx_path, shape, arch, weights)


def _export(arch, ds, shape, onnx_path: Path, weights: Path) -> None:
    import torch

    from exporters import export_model
    from exporters.cohen import get_architecture

    print(f"exporting {arch} with random weights to {onnx_path} (once) ...", file=sys.stderr, flush=True)
    torch.manual_seed(SEED)
    model = get_architecture(arch).eval()
    tmp = onnx_path.with_suffix(".tmp.onnx")
    # logits of random ResNets are large, so the parity check gets a looser absolute tolerance
    export_model(model[1], tmp, input_shape=shape, channels="RGB", mean=ds.mean, std=ds.std,
                 resize="exact", crop="none", output_kind="logits", sigma=0.25, fold_normalization=True,
                 atol=1e-2, rtol=1e-2, parity_batch=2)
    torch.save(model.state_dict(), weights)
    tmp.replace(onnx_path)


def torch_model(m: BenchModel):
    """The torch network (NormalizeLayer included) that ``m``'s ONNX file was exported from."""
    import torch

    from exporters.cohen import get_architecture

    net = get_architecture(m.arch)
    net.load_state_dict(torch.load(m.weights, weights_only=True))
    return net.eval()


def plain_cnn(key: str) -> BenchModel:
    """A plain CNN with random weights (NumPy seed 0), written with onnx.helper into the cache on
    first use: ``cnn32``, a 32x32 RGB NHWC network (four 3x3 convolutions, 32-128 channels,
    ~13 MFLOPs a sample), or ``cnn224``, a 224x224 RGB NCHW one (four strided 3x3 convolutions,
    16-128 channels, ~50 MFLOPs a sample), each with global pooling and 10 logits."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    size, nhwc, chans, strides = {"cnn32": (32, True, (32, 64, 128, 128), (1, 2, 2, 2)),
                                  "cnn224": (224, False, (16, 32, 64, 128), (2, 2, 2, 2))}[key]
    shape = (size, size, 3) if nhwc else (3, size, size)
    name = {"cnn32": "plain CNN 32x32 NHWC", "cnn224": "plain CNN 224x224"}[key]
    path = cache_dir() / f"{key}-random{SEED}.onnx"
    if not path.exists():
        rng = np.random.default_rng(SEED)
        nodes, inits, x, c_in = [], [], "input", 3
        if nhwc:
            nodes.append(helper.make_node("Transpose", ["input"], ["nchw"], perm=[0, 3, 1, 2]))
            x = "nchw"
        for i, (c, st) in enumerate(zip(chans, strides)):
            w = (rng.standard_normal((c, c_in, 3, 3)) * np.sqrt(2 / (9 * c_in))).astype(np.float32)
            inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(np.zeros(c, np.float32), f"b{i}")]
            nodes += [helper.make_node("Conv", [x, f"w{i}", f"b{i}"], [f"c{i}"], kernel_shape=[3, 3],
                                       pads=[1, 1, 1, 1], strides=[st, st]),
                      helper.make_node("Relu", [f"c{i}"], [f"r{i}"])]
            x, c_in = f"r{i}", c
        fc = (rng.standard_normal((c_in, 10)) / np.sqrt(c_in)).astype(np.float32)
        inits += [numpy_helper.from_array(fc, "fc"), numpy_helper.from_array(np.zeros(10, np.float32), "fcb")]
        nodes += [helper.make_node("GlobalAveragePool", [x], ["gap"]), helper.make_node("Flatten", ["gap"], ["flat"]),
                  helper.make_node("Gemm", ["flat", "fc", "fcb"], ["logits"])]
        graph = helper.make_graph(nodes, key, [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", *shape])],
                                  [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])], inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        meta = {"onnxcert.model": {"output_kind": "logits"},
                "onnxcert.preprocess": {"size": [size, size], "layout": "NHWC" if nhwc else "NCHW", "channels": "RGB",
                                        "resize": "exact", "crop": "none", "mean": [0.0] * 3, "std": [1.0] * 3},
                "onnxcert.smoothing": {"sigma": 0.25}}
        helper.set_model_props(model, {k: json.dumps(v) for k, v in meta.items()})
        onnx.checker.check_model(model)
        tmp = path.with_suffix(".tmp.onnx")
        onnx.save(model, tmp)
        tmp.replace(path)
    return BenchModel(name, path, shape)


def models(names: Sequence[str]) -> list[BenchModel]:
    table = {"digits": sample_model, "cifar": lambda: cohen_model("cifar_resnet110"),
             "cifar20": lambda: cohen_model("cifar_resnet20"), "imagenet": lambda: cohen_model("resnet50"),
             "cnn32": lambda: plain_cnn("cnn32"), "cnn224": lambda: plain_cnn("cnn224")}
    return [table[n]() for n in names]


def clean_inputs(m: BenchModel, count: int) -> np.ndarray:
    """``count`` clean images in [0, 1]: the sample digits for the sample model, else uniform noise."""
    if m.path == SAMPLE_MODEL:
        from PIL import Image

        files = sorted(SAMPLE_IMAGES.glob("*/*.png"))[:count]
        return np.stack([np.asarray(Image.open(f).convert("L"), np.float32)[None] / 255 for f in files])
    return np.random.default_rng(SEED).random((count, *m.shape), dtype=np.float32)


# ---------------------------------------------------------------- the machine


def machine() -> dict[str, str]:
    """CPU model, cores, load, library versions: printed with every table."""
    import onnxruntime

    cpu = platform.processor() or "?"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        cpu = next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration, subprocess.SubprocessError):
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return {"cpu": cpu, "cores": str(cores), "load avg (1/5/15 min)": load,
            "onnxruntime": onnxruntime.__version__, "numpy": np.__version__,
            "python": platform.python_version()}


def print_machine() -> None:
    info = machine()
    print("machine: " + "; ".join(f"{k} {v}" for k, v in info.items()))


# ---------------------------------------------------------------- timing and tables


def best_of(fn: Callable[[], object], repeat: int) -> float:
    """The fastest of ``repeat`` timed calls (seconds): the least disturbed by other processes."""
    times = []
    for _ in range(max(1, repeat)):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process, all its threads) of one call. On a shared
    machine the wall clock counts the time other processes take; the CPU time counts only the
    work done here (plus onnxruntime's spinning threads), so it is the steadier of the two."""
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-markdown table, so that a run's output pastes straight into the README."""
    cells = [[_fmt(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = lambda vals: "| " + " | ".join(v.rjust(w) for v, w in zip(vals, widths)) + " |"  # noqa: E731
    return "\n".join([line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, cells)])


def _fmt(v: object) -> str:
    if isinstance(v, float):
        if v == 0 or 0.01 <= abs(v) < 1e5:
            return f"{v:,.3f}" if abs(v) < 10 else f"{v:,.1f}" if abs(v) < 1000 else f"{v:,.0f}"
        return f"{v:.3g}"
    return str(v)


# ---------------------------------------------------------------- the two loops being compared


def prepare(m: BenchModel, inputs: np.ndarray, *, n0: int, n: int, batch_size: int | None = None,
            threads: int | None = None, device: str = "cpu", lanes: int | None = None):
    """onnxcert's RunSetup for ``inputs`` (clean, in [0, 1]) with the given settings (``lanes``
    None: onnxcert's automatic choice)."""
    from onnxcert import pipeline

    smoothing = {"n0": n0, "n": n, "sigma": 0.25}
    if batch_size:
        smoothing["batch_size"] = batch_size
    return pipeline.prepare(m.path, inputs, cli={"smoothing": smoothing}, device=device, threads=threads,
                            lanes=lanes)


_ONE_LANE: dict[int, object] = {}


def bare_session(setup):
    """The session the bare loops run: one caller, all of the setup's threads as onnxruntime
    intra-op threads (what a user of onnxruntime would run). When onnxcert chose lanes, that is
    another session of the same model and threads, opened once."""
    clf = setup.classifier
    lanes = clf.session_options.get("lanes", 1)
    if lanes == 1:
        return clf.session
    if id(setup) not in _ONE_LANE:
        from onnxcert.runtime import open_classifier

        threads = clf.session_options["intra_op_num_threads"] * lanes
        ref = open_classifier(clf.info.path, device="cpu", input_name=clf.input.name, output_name=clf.output.name,
                              threads=threads, lanes=1)
        _ONE_LANE[id(setup)] = (setup, ref)
    return _ONE_LANE[id(setup)][1].session


def run_bare_lanes_input(setup, batches: list[np.ndarray]) -> None:
    """Bare ``session.run`` the way onnxcert's lanes run it: the setup's session (one intra-op
    thread per lane) called from ``lanes`` threads at once, on one input's batches."""
    clf, s = setup.classifier, setup.config.settings
    session, feed_name, out = clf.session, clf.input.name, [clf.output.name]
    b, lanes = setup.batch_size, clf.session_options.get("lanes", 1)
    sizes = [min(b, c - d) for c in (s.n0, s.n) for d in range(0, c, b)]

    def lane(j):
        for k in range(j, len(sizes), lanes):
            session.run(out, {feed_name: batches[j % len(batches)][:sizes[k]]})

    on_threads(lane, lanes)


def on_threads(fn: Callable[[int], object], count: int) -> None:
    """fn(0) on this thread and fn(1) .. fn(count - 1) on as many others, at once; returns when all are done."""
    import threading

    workers = [threading.Thread(target=fn, args=(j,)) for j in range(1, count)]
    for w in workers:
        w.start()
    fn(0)
    for w in workers:
        w.join()


def run_sampling(setup, sampler) -> None:
    """onnxcert's loop without the statistics: preprocess, noise, forward passes, measures."""
    s, pre, items = setup.config.settings, setup.preprocessor, setup.inputs
    for i in range(len(items)):
        x = pre.prepare(items.load(i))
        sampler.sample(i, pre.normalize(x), pre.noise_scale(s.sigma, x.shape))


def run_certify(setup, sampler) -> None:
    """onnxcert's end-to-end loop: sampling plus the statistics, one Record per input."""
    from onnxcert import pipeline

    for _ in pipeline.iter_records(setup, sampler):
        pass


def bare_batches(setup, count: int = 2) -> list[np.ndarray]:
    """``count`` noisy batches of the setup's batch size, generated before any timing."""
    s, pre = setup.config.settings, setup.preprocessor
    x = pre.prepare(setup.inputs.load(0))
    rng = np.random.default_rng(SEED)
    noise = rng.standard_normal((count, setup.batch_size, *x.shape), dtype=np.float32)
    return list(pre.normalize(x) + noise * pre.noise_scale(s.sigma, x.shape))


def run_bare(setup, batches: list[np.ndarray]) -> None:
    """Bare ``session.run`` on pre-generated batches: the same number and sizes of batches as
    onnxcert's loop for every input, nothing else. The limit a pipeline can reach."""
    clf, s = setup.classifier, setup.config.settings
    session, feed_name, out = bare_session(setup), clf.input.name, [clf.output.name]
    b = setup.batch_size
    sizes = [min(b, c - d) for c in (s.n0, s.n) for d in range(0, c, b)]
    k = 0
    for _ in range(len(setup.inputs)):
        for size in sizes:
            session.run(out, {feed_name: batches[k % len(batches)][:size]})
            k += 1


def run_bare_input(setup, batches: list[np.ndarray]) -> None:
    """``run_bare`` for one input: its n0 + n samples in onnxcert's batch sizes."""
    clf, s = setup.classifier, setup.config.settings
    session, feed_name, out = bare_session(setup), clf.input.name, [clf.output.name]
    b = setup.batch_size
    for k, size in enumerate(min(b, c - d) for c in (s.n0, s.n) for d in range(0, c, b)):
        session.run(out, {feed_name: batches[k % len(batches)][:size]})


def samples_of(setup) -> int:
    return len(setup.inputs) * setup.samples_per_input


def graph_head_loop(setup):
    """The option the issue lists and the benchmark rejected on the CPU: NumPy noise, then the
    classifier wrapped with the softmax, top-2 and column sums in the graph (fastpath's head),
    so that NumPy sees a few numbers per sample instead of [B, k] rows. Returns a function that
    runs it over every input of ``setup``, like ``run_sampling``."""
    from onnxcert import fastpath as fp
    from onnxcert.runtime import classifier_proto, open_wrapped
    from onnxcert.sampling import ESTIMATION, SELECTION, _fill, input_generator

    clf, s, pre = setup.classifier, setup.config.settings, setup.preprocessor
    x0 = pre.prepare(setup.inputs.load(0))
    kind = setup.config.model.output_kind
    if kind == "auto":
        from onnxcert.stats.measures import detect_output_kind

        kind = detect_output_kind(clf(bare_batches(setup, 1)[0]))
    wrapped = fp.wrap_classifier(classifier_proto(clf), clf.input.name, clf.output.name, x0.shape,
                                 output_kind=kind, device_noise=False)
    ws = open_wrapped(clf, wrapped, fp.OUTPUT_NAMES, fp.INPUT_NAMES)
    buf = np.empty((setup.batch_size, *x0.shape), np.float32)

    def batches(rng, count, xn, scale):
        for first in range(0, count, setup.batch_size):
            yield first, _fill(rng, buf[:min(setup.batch_size, count - first)], xn, scale)

    def run() -> None:
        for i in range(len(setup.inputs)):
            x = pre.prepare(setup.inputs.load(i))
            xn, scale = pre.normalize(x), pre.noise_scale(s.sigma, x.shape)
            total = 0.0
            for _, batch in batches(input_generator(s.seed, i, SELECTION), s.n0, xn, scale):
                total = total + ws.run_noisy(batch, 0)["column_sums"]
            c = int(np.argmax(total))
            score, margin, votes = np.empty(s.n), np.empty(s.n), 0
            for first, batch in batches(input_generator(s.seed, i, ESTIMATION), s.n, xn, scale):
                out = ws.run_noisy(batch, c)
                if not np.isfinite(out["total"]):
                    raise RuntimeError("non-finite output")
                score[first:first + len(batch)] = out["score"]
                margin[first:first + len(batch)] = out["score"] - out["other"]
                votes += int(np.count_nonzero(out["won"]))

    return run


class Clock:
    """Wraps a function and adds up the time spent in it."""

    def __init__(self, fn):
        self.fn, self.seconds, self.calls = fn, 0.0, 0

    def __call__(self, *args, **kw):
        t = time.perf_counter()
        try:
            return self.fn(*args, **kw)
        finally:
            self.seconds += time.perf_counter() - t
            self.calls += 1
