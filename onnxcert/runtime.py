"""The ONNX model: loading, inspection, execution providers and batched inference.

This is the only module that imports onnxruntime, and it does so lazily: ``describe_model`` (and
so ``onnxcert inspect``) needs only the ``onnx`` package. Every problem with a model file becomes
a one-line ModelError; a missing onnxruntime becomes a DependencyError naming the extra.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .errors import ConfigError, DependencyError, ModelError
from .modelcheck import check_model

log = logging.getLogger("onnxcert")

ORT_HINT = "onnxruntime is not installed: pip install 'onnxcert[cpu]' (or 'onnxcert[gpu]' for CUDA)"
DEVICES = ("auto", "cpu", "cuda")
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
FLOAT_INPUTS = ("float16", "float32", "float64")
BATCH_DIM = "batch"


@dataclass(frozen=True)
class TensorInfo:
    """A graph input or output: dims are ints (fixed), strings (symbolic) or None (unknown)."""

    name: str
    shape: tuple[int | str | None, ...] | None
    dtype: str

    def describe(self) -> str:
        dims = "?" if self.shape is None else "[" + ", ".join("?" if d is None else str(d) for d in self.shape) + "]"
        return f"{self.name}: {self.dtype} {dims}"


@dataclass(frozen=True)
class ModelInfo:
    """What the ONNX file says about itself, without running it."""

    path: str
    sha256: str
    ir_version: int
    opsets: Mapping[str, int]
    producer: str
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    metadata: Mapping[str, str] = field(default_factory=dict)


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


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------- the graph (onnx only)


def load_proto(path: str | Path):
    """The ModelProto without external tensor data; garbage or truncated files are a ModelError."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file {str(path)!r} does not exist")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf raises several unrelated types on garbage
        raise ModelError(f"{str(path)!r} is not a readable ONNX model ({type(exc).__name__})") from None
    if not proto.HasField("graph") or len(proto.graph.output) == 0:
        raise ModelError(f"{str(path)!r} is not a readable ONNX model (no graph or no outputs)")
    return proto


def _tensor_info(value_info) -> TensorInfo:
    import onnx

    t = value_info.type
    if not t.HasField("tensor_type"):
        return TensorInfo(value_info.name, None, t.WhichOneof("value") or "unknown")
    elem = t.tensor_type.elem_type
    try:
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem)).name
    except Exception:
        dtype = onnx.TensorProto.DataType.Name(elem).lower()
    if not t.tensor_type.HasField("shape"):
        return TensorInfo(value_info.name, None, dtype)
    dims = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                 for d in t.tensor_type.shape.dim)
    return TensorInfo(value_info.name, dims, dtype)


def describe_model(path: str | Path, proto=None) -> ModelInfo:
    """Inputs (initializers excluded), outputs, opsets, producer and metadata_props."""
    proto = load_proto(path) if proto is None else proto
    g = proto.graph
    weights = {init.name for init in g.initializer}
    return ModelInfo(
        path=str(path),
        sha256=sha256_file(path),
        ir_version=int(proto.ir_version),
        opsets={(o.domain or "ai.onnx"): int(o.version) for o in proto.opset_import},
        producer=" ".join(p for p in (proto.producer_name, proto.producer_version) if p),
        inputs=tuple(_tensor_info(v) for v in g.input if v.name not in weights),
        outputs=tuple(_tensor_info(v) for v in g.output),
        metadata={p.key: p.value for p in proto.metadata_props},
    )


def select_input(info: ModelInfo, name: str | None = None) -> TensorInfo:
    """The image input: the one graph input, or the one named by model.input / --input-name."""
    names = [t.name for t in info.inputs]
    if name is not None:
        for t in info.inputs:
            if t.name == name:
                return _check_input(t)
        raise ModelError(f"the model has no input named {name!r} (inputs: {', '.join(names) or 'none'})")
    if len(info.inputs) != 1:
        raise ModelError(f"the model has {len(info.inputs)} inputs ({', '.join(names) or 'none'}); "
                         "name the image input with --input-name or model.input")
    return _check_input(info.inputs[0])


def _check_input(t: TensorInfo) -> TensorInfo:
    if t.dtype not in FLOAT_INPUTS:
        raise ModelError(f"input {t.name!r} has type {t.dtype}; onnxcert feeds float images "
                         f"(one of {', '.join(FLOAT_INPUTS)})")
    if t.shape is not None and len(t.shape) < 2:
        raise ModelError(f"input {t.name!r} has shape {_dims(t.shape)}; expected a batch of images [N, ...]")
    return t


def select_output(info: ModelInfo, name: str | None = None) -> TensorInfo:
    """The class scores: the one output, the one named, or the only [N, k] output among several."""
    names = [t.name for t in info.outputs]
    if name is not None:
        for t in info.outputs:
            if t.name == name:
                return check_output_shape(t)
        raise ModelError(f"the model has no output named {name!r} (outputs: {', '.join(names)})")
    if len(info.outputs) == 1:
        return check_output_shape(info.outputs[0])
    rank2 = [t for t in info.outputs if t.shape is not None and len(t.shape) == 2]
    if len(rank2) == 1:
        log.info("using output %r, the only [N, k] output of %s", rank2[0].name, ", ".join(names))
        return rank2[0]
    raise ModelError(f"the model has {len(names)} outputs ({', '.join(names)}); "
                     "name the class scores with --output-name or model.output")


def check_output_shape(t: TensorInfo, shape: Sequence[int] | None = None) -> TensorInfo:
    """Reject any output that is not [N, k] class scores (k >= 2); ``shape`` is a runtime shape."""
    dims = t.shape if shape is None else tuple(shape)
    if dims is None:
        return t
    k = dims[1] if len(dims) == 2 else None
    if len(dims) != 2 or (isinstance(k, int) and k < 2):
        raise ModelError(f"output {t.name!r} has shape {_dims(dims)}; onnxcert needs class scores "
                         "of shape [N, k] with k >= 2 (logits or probabilities)")
    return t


def _dims(dims) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"


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


CGROUP_FILES = ("/sys/fs/cgroup/cpu.max", "/sys/fs/cgroup/cpu/cpu.cfs_quota_us")


def available_cores() -> int:
    """The cores this process may use: its CPU affinity, capped by a container's CPU quota (a
    container limited to 2 CPUs on a 64-core host sees 64 cores in its affinity; 64 threads on
    2 CPUs' worth of time would thrash)."""
    try:
        cores = max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        cores = max(1, os.cpu_count() or 1)
    quota = cgroup_cpu_quota()
    return cores if quota is None else max(1, min(cores, math.ceil(quota)))


def cgroup_cpu_quota(files: Sequence[str] = CGROUP_FILES) -> float | None:
    """CPUs' worth of time the cgroup allows (cgroup v2 ``cpu.max``, or v1 quota / period);
    None when unlimited or unknown."""
    for path in files:
        try:
            text = Path(path).read_text()
            if path.endswith("cfs_quota_us"):
                text += " " + Path(path).with_name("cpu.cfs_period_us").read_text()
        except OSError:
            continue
        return parse_cpu_quota(text)
    return None


def parse_cpu_quota(text: str) -> float | None:
    """'200000 100000' -> 2.0; 'max 100000' or '-1 100000' -> None (no limit)."""
    parts = text.split()
    try:
        quota, period = (int(parts[0]), int(parts[1])) if parts[0] != "max" else (-1, 1)
    except (IndexError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None


def session_settings(threads: int | None = None) -> dict[str, Any]:
    """The session options onnxcert uses, as recorded in the report.

    One intra-op thread per available core: on the 2-core benchmark machine, 2 threads run the
    CIFAR ResNet-110 and ImageNet ResNet-50 1.9-2x faster than 1 (benchmarks/README.md). Idle
    intra-op threads sleep instead of spinning: between forward passes the host draws the next
    batch's noise, and spinning threads take the cores it (and any other process) needs; on the
    shared benchmark machine that made the small models 1.3-2x faster. One inter-op thread and
    sequential execution (classifiers are chains), and every graph optimization onnxruntime offers.
    """
    if threads is not None and threads < 1:
        raise ConfigError(f"--threads must be >= 1, got {threads}")
    return {"intra_op_num_threads": int(threads or available_cores()), "inter_op_num_threads": 1,
            "execution_mode": "sequential", "graph_optimization_level": "all", "allow_spinning": False}


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


def make_batch_dynamic(proto, input_name: str, output_name: str):
    """A copy of the graph whose input and output batch dimension is symbolic, or None when the
    batch dimension is not fixed. Intermediate shape hints are dropped: they may pin the batch."""
    dims = {v.name: v for v in proto.graph.input}
    vi = dims.get(input_name)
    if vi is None or not vi.type.tensor_type.shape.dim or not vi.type.tensor_type.shape.dim[0].HasField("dim_value"):
        return None
    dyn = copy.deepcopy(proto)
    for v in list(dyn.graph.input) + list(dyn.graph.output):
        if v.name in (input_name, output_name) and v.type.tensor_type.shape.dim:
            d = v.type.tensor_type.shape.dim[0]
            d.Clear()
            d.dim_param = BATCH_DIM
    del dyn.graph.value_info[:]
    return dyn


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
                    proto=None, info: ModelInfo | None = None) -> Classifier:
    """Load ``path`` into an onnxruntime session on ``device`` (auto | cpu | cuda).

    The provider actually used is logged and kept in ``Classifier.provider``; ``--device cuda``
    that ends up on the CPU is an error, never a silent fallback.
    """
    ort = import_ort()
    proto = load_proto(path) if proto is None else proto
    info = describe_model(path, proto) if info is None else info
    check_model(proto, path)  # external data inside the model's folder, no custom domains
    inp, out = select_input(info, input_name), select_output(info, output_name)
    providers = choose_providers(device, ort.get_available_providers())
    settings = session_settings(threads)
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
    log.info("model %s: provider %s, %d intra-op threads", Path(path).name, used,
             settings["intra_op_num_threads"])
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
