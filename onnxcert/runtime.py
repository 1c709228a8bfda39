"""Execution providers, onnxruntime sessions and batched inference (``Classifier``, and the
device path's ``WrappedSession``).

This is the only module that imports onnxruntime, and it does so lazily. Describing a model
(``model_info``) needs only the ``onnx`` package; the host's cores come from ``host``. Every problem with a model file becomes
a one-line ModelError; a missing onnxruntime becomes a DependencyError naming the extra.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .errors import ConfigError, DependencyError, ModelError
from .host import available_cores
from .model_info import (ModelInfo, TensorInfo, check_output_shape, describe_model, load_proto, make_batch_dynamic,
                         select_input, select_output)
from .modelcheck import check_model

log = logging.getLogger("onnxcert")

ORT_HINT = "onnxruntime is not installed: pip install 'onnxcert[cpu]' (or 'onnxcert[gpu]' for CUDA)"
DEVICES = ("auto", "cpu", "cuda")
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


def import_ort():
    """onnxruntime, or a DependencyError with the install hint."""
    try:
        import onnxruntime
    except ImportError:
        raise DependencyError(ORT_HINT) from None
    return onnxruntime


def ort_version() -> str | None:
    try:
        return import_ort().__version__
    except DependencyError:
        return None


# ---------------------------------------------------------------- providers and sessions


def choose_providers(device: str, available: Sequence[str]) -> list[str]:
    """Execution providers for ``--device``: auto takes CUDA when onnxruntime offers it."""
    if device not in DEVICES:
        raise ConfigError(f"--device must be one of {', '.join(DEVICES)}; got {device!r}")
    if device == "cpu":
        return [CPU]
    if CUDA in available:
        return [CUDA, CPU]
    if device == "cuda":
        raise ConfigError(f"--device cuda, but onnxruntime offers no {CUDA} (available: "
                          f"{', '.join(available) or 'none'}); install 'onnxcert[gpu]' or use --device cpu")
    return [CPU]


# Lanes: concurrent forward passes of one intra-op thread each, instead of one pass with T
# intra-op threads (benchmarks/bench_lanes.py; benchmarks/README.md, "Lanes"). On the 2-core
# benchmark machine two lanes ran bare onnxruntime 1.04-1.19x as fast as two intra-op threads on
# the 8x8 sample model, 1.06-1.17x on a 32x32 CNN, 0.97-1.04x on a 224x224 CNN and 1.03-1.07x on
# ResNet-110 (6.6 MiB of weights), but 0.79-0.80x on ResNet-50 (97 MiB): two copies of its
# activations and weights stream through the cache.
# The host's own work per batch (noise, measures) runs beside the other lane's forward pass.
LANE_WEIGHT_LIMIT = 16 << 20  # bytes of weights up to which lanes are the default on the CPU


def choose_lanes(threads: int, *, provider: str, weight_bytes: int, lanes: int | None = None) -> int:
    """How many forward passes run at once: ``lanes`` when given (1 turns lanes off), else
    ``threads`` lanes on the CPU provider for a model of at most LANE_WEIGHT_LIMIT bytes of
    weights, and 1 otherwise (CUDA, large models, one thread)."""
    if lanes is not None:
        if lanes < 1:
            raise ConfigError(f"--lanes must be >= 1, got {lanes}")
        return int(lanes)
    if provider != CPU or threads < 2 or weight_bytes > LANE_WEIGHT_LIMIT:
        return 1
    return int(threads)


def forward_threads(threads: int | None) -> int:
    """The threads the forward passes use: ``--threads``, by default one per available core."""
    return int(threads or available_cores())


def session_settings(threads: int | None = None, lanes: int = 1) -> dict[str, Any]:
    """The session options onnxcert uses, as recorded in the report.

    ``threads`` (default: one per available core) is the cores the forward passes use: on the
    2-core benchmark machine, 2 threads run the CIFAR ResNet-110 and ImageNet ResNet-50 1.9-2x
    faster than 1 (benchmarks/README.md). With ``lanes`` > 1 (see ``choose_lanes``) that many
    forward passes run at once, each with threads // lanes intra-op threads (at least one).
    Idle intra-op threads sleep instead of spinning: between forward passes the host draws the
    next batch's noise, and spinning threads take the cores it (and any other process) needs; on
    the shared benchmark machine that made the small models 1.3-2x faster. One inter-op thread
    and sequential execution (classifiers are chains), and every graph optimization onnxruntime
    offers.
    """
    if threads is not None and threads < 1:
        raise ConfigError(f"--threads must be >= 1, got {threads}")
    from .limits import check_threads

    check_threads(threads, available_cores())
    total = forward_threads(threads)
    return {"intra_op_num_threads": max(1, total // lanes) if lanes > 1 else total, "inter_op_num_threads": 1,
            "execution_mode": "sequential", "graph_optimization_level": "all", "allow_spinning": False,
            "lanes": int(lanes)}


def _session_options(ort, settings: Mapping[str, Any]):
    so = ort.SessionOptions()
    so.intra_op_num_threads = settings["intra_op_num_threads"]
    so.inter_op_num_threads = settings["inter_op_num_threads"]
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 4  # fatal only: errors reach the caller as exceptions, warnings are noise
    spin = "1" if settings.get("allow_spinning", True) else "0"
    so.add_session_config_entry("session.intra_op.allow_spinning", spin)
    so.add_session_config_entry("session.inter_op.allow_spinning", spin)
    return so


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return line if len(line) <= 300 else line[:297] + "..."


def _new_session(ort, model, settings, providers, path):
    try:
        return ort.InferenceSession(model, _session_options(ort, settings), providers=providers)
    except Exception as exc:  # onnxruntime's own exception types are not importable portably
        raise ModelError(f"onnxruntime cannot load {str(path)!r}: {_first_line(exc)}") from None


class Classifier:
    """A loaded ONNX classifier: ``classifier(x)`` maps a float32 batch [B, ...] (already
    normalized, in the model's layout) to class scores [B, k] as float32 or float64.

    A fixed batch dimension b is made symbolic in a copy of the graph. On the first call the copy
    is checked against single-sample runs; if it fails, batches are cut into chunks of b (one
    sample at a time for b = 1) and a warning is logged.
    """

    def __init__(self, *, info: ModelInfo, input: TensorInfo, output: TensorInfo, session,
                 provider: str, providers: Sequence[str], settings: Mapping[str, Any],
                 fixed_batch: int | None, batch_mode: str = "dynamic", fallback=None):
        self.info, self.input, self.output = info, input, output
        self.provider, self.providers_requested = provider, tuple(providers)
        self.session_options = dict(settings)
        self._session = session
        self._fixed = fixed_batch
        self._fallback = fallback  # builds the original (fixed-batch) session on demand
        self._dtype = np.dtype(input.dtype)
        self.batch_mode = batch_mode  # dynamic | made-dynamic | fixed
        self._checked = batch_mode != "made-dynamic"

    @property
    def session(self):
        """The onnxruntime InferenceSession that runs the batches (for benchmarks and fast paths)."""
        return self._session

    @property
    def num_classes(self) -> int | None:
        """k from the graph when it is fixed there."""
        k = self.output.shape[1] if self.output.shape is not None and len(self.output.shape) == 2 else None
        return k if isinstance(k, int) else None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if not self._checked:
            self._check_dynamic(x)
        if self.batch_mode == "fixed":
            return self._run_chunks(x, self._fixed)
        return self._run(x)

    def _run(self, x: np.ndarray) -> np.ndarray:
        feed = {self.input.name: x.astype(self._dtype, copy=False)}
        try:
            (y,) = self._session.run([self.output.name], feed)
        except Exception as exc:
            raise ModelError(f"onnxruntime failed on a batch of shape {list(x.shape)}: {_first_line(exc)}") from None
        y = np.asarray(y)
        check_output_shape(self.output, y.shape)
        if y.shape[0] != x.shape[0]:
            raise ModelError(f"output {self.output.name!r} has {y.shape[0]} rows for a batch of {x.shape[0]}")
        return y.astype(np.float32) if y.dtype == np.float16 else y

    def _run_chunks(self, x: np.ndarray, b: int) -> np.ndarray:
        out = []
        for start in range(0, x.shape[0], b):
            chunk = x[start:start + b]
            short = b - chunk.shape[0]
            if short:  # pad with the last row; the extra outputs are dropped
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], short, axis=0)])
            out.append(self._run(chunk)[:b - short])
        return np.concatenate(out)

    def _check_dynamic(self, x: np.ndarray) -> None:
        """Does the symbolic-batch copy give the single-sample answers on a batch of two?"""
        self._checked = True
        probe = np.random.default_rng(0).random((2, *x.shape[1:]), dtype=np.float32)
        try:
            both = self._run(probe)
            one = np.concatenate([self._run(probe[:1]), self._run(probe[1:])])
            scale = max(1.0, float(np.abs(one).max()))
            ok = both.shape == one.shape and np.allclose(both, one, rtol=1e-2, atol=1e-3 * scale)
        except ModelError:
            ok = False
        if ok:
            log.info("model input %r has a fixed batch of %d; running a copy with a dynamic batch",
                     self.input.name, self._fixed)
            return
        self._session = self._fallback()
        self.batch_mode = "fixed"
        log.warning("model input %r has a fixed batch of %d that the graph does not let onnxcert "
                    "change; running %s (slower)", self.input.name, self._fixed,
                    "one sample at a time" if self._fixed == 1 else f"chunks of {self._fixed}")


def open_classifier(path: str | Path, *, device: str = "auto", input_name: str | None = None,
                    output_name: str | None = None, threads: int | None = None,
                    proto=None, info: ModelInfo | None = None, lanes: int | None = None) -> Classifier:
    """Load ``path`` into an onnxruntime session on ``device`` (auto | cpu | cuda).

    The provider actually used is logged and kept in ``Classifier.provider``; ``--device cuda``
    that ends up on the CPU is an error, never a silent fallback. ``lanes``: see ``choose_lanes``
    (None: the automatic choice).
    """
    ort = import_ort()
    proto = load_proto(path) if proto is None else proto
    info = describe_model(path, proto) if info is None else info
    check_model(proto, path)  # external data inside the model's folder, no custom domains
    inp, out = select_input(info, input_name), select_output(info, output_name)
    providers = choose_providers(device, ort.get_available_providers())
    chosen = choose_lanes(forward_threads(threads), provider=providers[0], weight_bytes=info.weight_bytes, lanes=lanes)
    settings = session_settings(threads, chosen)
    fallback = lambda: _new_session(ort, str(path), settings, providers, path)  # noqa: E731

    fixed = inp.shape[0] if isinstance(inp.shape[0], int) else None
    session, mode = None, "dynamic"
    if fixed is not None:
        mode = "fixed"
        data = _serialize(make_batch_dynamic(proto, inp.name, out.name), path)
        if data is not None:
            try:
                session, mode = _new_session(ort, data, settings, providers, path), "made-dynamic"
            except ModelError:
                session = None
        if mode == "fixed":
            log.warning("model input %r has a fixed batch of %d; running chunks of %d (slower)",
                        inp.name, fixed, fixed)
    if session is None:
        session = fallback()

    used = session.get_providers()[0]
    if device == "cuda" and used != CUDA:
        raise ModelError(f"--device cuda, but onnxruntime fell back to {used} "
                         "(are the CUDA and cuDNN libraries installed?)")
    if providers[0] == CUDA and used != CUDA:
        log.warning("CUDA was offered but onnxruntime fell back to %s", used)
    log.info("model %s: provider %s, %d intra-op thread(s)%s", Path(path).name, used,
             settings["intra_op_num_threads"], f" in each of {settings['lanes']} lanes" if settings["lanes"] > 1 else "")
    return Classifier(info=info, input=inp, output=out, session=session, provider=used,
                      providers=providers, settings=settings, fixed_batch=fixed, batch_mode=mode,
                      fallback=fallback)


def _serialize(dyn, path) -> bytes | None:
    """The dynamic copy as bytes, with external tensor data pulled in; None when impossible."""
    if dyn is None:
        return None
    from onnx.external_data_helper import load_external_data_for_model, uses_external_data

    try:
        if any(uses_external_data(t) for t in dyn.graph.initializer):
            load_external_data_for_model(dyn, str(Path(path).resolve().parent))
        return dyn.SerializeToString()
    except Exception as exc:  # protobuf's 2 GiB limit, unreadable external data
        log.info("cannot rewrite the batch dimension (%s); keeping the fixed batch", type(exc).__name__)
        return None


# ---------------------------------------------------------------- the fast path's session


class WrappedSession:
    """The fast-path graph (see fastpath.wrap_classifier) run through onnxruntime's I/O binding.

    The clean sample and the noise scale go to the device once per input (``set_sample``); each
    batch then sends four int64/uint64 numbers and brings back the outputs the graph names, a few
    numbers per sample. On the CPU provider the same calls run on host memory, which is how the
    tests exercise this path without a GPU.
    """

    def __init__(self, session, provider: str, outputs: Mapping[str, str], input_names: Mapping[str, str]):
        ort = import_ort()
        self._ort, self._session, self.provider = ort, session, provider
        self._device = "cuda" if provider == CUDA else "cpu"
        self._outputs, self._names = dict(outputs), dict(input_names)
        self._binding = session.io_binding()

    def set_sample(self, x_norm: np.ndarray, scale: np.ndarray) -> None:
        """Upload the clean normalized sample [1, ...] and sigma / std (float32, broadcast to the
        sample's shape) to the device."""
        for key, value in (("x", x_norm), ("scale", np.broadcast_to(scale, x_norm.shape))):
            arr = np.ascontiguousarray(value, dtype=np.float32)
            ov = self._ort.OrtValue.ortvalue_from_numpy(arr, self._device, 0)
            self._binding.bind_ortvalue_input(self._names[key], ov)
            setattr(self, "_" + key, ov)  # keep the device buffer alive while it is bound

    def run(self, *, key: int, first: int, count: int, c: int) -> dict[str, np.ndarray]:
        """One batch of ``count`` samples starting at sample ``first`` of the stream ``key``."""
        b = self._binding
        b.bind_cpu_input(self._names["key"], np.array([key], dtype=np.uint64))
        b.bind_cpu_input(self._names["first"], np.array([first], dtype=np.uint64))
        b.bind_cpu_input(self._names["count"], np.array([count], dtype=np.int64))
        return self._go(c, f"a batch of {count} samples")

    def run_noisy(self, batch: np.ndarray, c: int) -> dict[str, np.ndarray]:
        """A graph without device noise: the noisy batch comes from the host."""
        self._binding.bind_cpu_input(self._names["noisy"], batch)
        return self._go(c, f"a batch of shape {list(batch.shape)}")

    def _go(self, c: int, what: str) -> dict[str, np.ndarray]:
        b = self._binding
        b.bind_cpu_input(self._names["c"], np.array([c], dtype=np.int64))
        b.clear_binding_outputs()  # outputs bound once keep their first shape; batches vary
        for name in self._outputs.values():
            b.bind_output(name, "cpu")
        try:
            self._session.run_with_iobinding(b)
        except Exception as exc:  # onnxruntime's own exception types are not importable portably
            raise ModelError(f"onnxruntime failed on {what} of the fast-path graph: {_first_line(exc)}") from None
        return dict(zip(self._outputs, b.copy_outputs_to_cpu()))


def open_wrapped(clf: Classifier, wrapped, outputs: Mapping[str, str], input_names: Mapping[str, str]) -> WrappedSession:
    """A session for ``wrapped`` (a ModelProto built from ``clf``'s graph) on ``clf``'s providers,
    with the same session options."""
    ort = import_ort()
    data = _serialize(wrapped, clf.info.path)
    if data is None:
        raise ModelError(f"cannot serialize the fast-path graph of {clf.info.path!r}")
    session = _new_session(ort, data, clf.session_options, list(clf.providers_requested), clf.info.path)
    used = session.get_providers()[0]
    log.info("fast path: noise and measures in the graph, provider %s", used)
    return WrappedSession(session, used, outputs, input_names)


def classifier_proto(clf: Classifier):
    """The graph ``clf`` runs: its file's, with the batch dimension made symbolic when it did so."""
    proto = load_proto(clf.info.path)
    if clf.batch_mode == "made-dynamic":
        proto = make_batch_dynamic(proto, clf.input.name, clf.output.name)
    return proto
