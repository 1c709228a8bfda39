"""What an ONNX file says about itself, read with the ``onnx`` package only (no onnxruntime):
inputs, outputs, opsets, producer, metadata_props, and the choice of the image input and the
class-score output. ``onnxcert inspect`` needs nothing more."""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .errors import ModelError
from .files import sha256_file

log = logging.getLogger("onnxcert")

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
    weight_bytes: int = 0  # the initializers' and Constant nodes' tensors, by their dims and type


def load_proto(path: str | Path):
    """The ModelProto without external tensor data; garbage or truncated files are a ModelError."""
    import onnx

    from .untrusted import input_file

    path = input_file(path, "model file", ModelError)  # a FIFO would block onnx.load forever
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
        weight_bytes=weight_bytes(proto),
    )


def weight_bytes(proto) -> int:
    """Bytes of the main graph's weights: its initializers and Constant nodes' tensors, counted
    from their dims and element type (so external data counts without being read)."""
    from onnx import helper

    tensors = list(proto.graph.initializer)
    tensors += [a.t for node in proto.graph.node if node.op_type == "Constant"
                for a in node.attribute if a.name == "value" and a.HasField("t")]
    total = 0
    for t in tensors:
        try:
            itemsize = np.dtype(helper.tensor_dtype_to_np_dtype(t.data_type)).itemsize
        except Exception:  # an undefined or exotic element type: count it as 4 bytes
            itemsize = 4
        total += itemsize * math.prod(int(d) for d in t.dims)
    return total


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
