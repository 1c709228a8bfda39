"""torch module -> ONNX file with onnxcert metadata, verified against torch with onnxruntime.

The exported graph takes a float32 batch [N, C, H, W] with a dynamic batch axis N. Unless the
normalization is folded into the graph, it receives (x - mean) / std, where x in [0, 1] is the
(noisy) image; folded, it receives x itself and the metadata says mean 0, std 1. Either way
``onnxcert run`` adds the smoothing noise to x, as Cohen et al. (2019) do with their
NormalizeLayer, so sigma and the certified radii are in [0, 1] pixel units.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import onnx
import torch

from onnxcert.config import METADATA_KEYS, build_config, metadata_layer
from onnxcert.errors import ConfigError
from onnxcert.files import atomic_write_bytes
from onnxcert.runtime import import_ort

from .errors import ExportError, ParityError

DEFAULT_OPSET = 17
DEFAULT_ATOL = 1e-4
DEFAULT_RTOL = 1e-3
PROVENANCE_KEY = "onnxcert.export"
_CHANNELS = {"L": 1, "RGB": 3, "BGR": 3}


class NormalizeLayer(torch.nn.Module):
    """(x - means) / sds per channel, as the first layer of the classifier (Cohen et al. 2019).

    The constants are non-persistent buffers: like Cohen et al.'s layer, they are not part of
    the state_dict, so their checkpoints load key for key.
    """

    def __init__(self, means: Sequence[float], sds: Sequence[float]):
        super().__init__()
        self.register_buffer("means", torch.tensor(list(means), dtype=torch.float32).view(1, -1, 1, 1),
                             persistent=False)
        self.register_buffer("sds", torch.tensor(list(sds), dtype=torch.float32).view(1, -1, 1, 1),
                             persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.means) / self.sds


@dataclass(frozen=True)
class Parity:
    """onnxruntime vs torch on ``batch`` random inputs: every |ort - torch| <= atol + rtol |torch|."""

    batch: int
    max_abs_diff: float
    atol: float
    rtol: float


@dataclass(frozen=True)
class ExportResult:
    path: Path
    sha256: str
    opset: int
    input_name: str
    output_name: str
    num_classes: int
    metadata: Mapping[str, Any]
    parity: Parity


def export_model(
    model: torch.nn.Module,
    output: str | Path,
    *,
    input_shape: Sequence[int],
    channels: str = "RGB",
    mean: Sequence[float] = (0.0,),
    std: Sequence[float] = (1.0,),
    resize: str = "exact",
    resize_to: int | None = None,
    crop: str = "none",
    classes: Sequence[str] | None = None,
    output_kind: str = "logits",
    sigma: float | None = None,
    fold_normalization: bool = False,
    opset: int = DEFAULT_OPSET,
    input_name: str = "input",
    output_name: str = "logits",
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
    parity_batch: int = 4,
    seed: int = 0,
    provenance: Mapping[str, Any] | None = None,
) -> ExportResult:
    """Export ``model`` (which takes [N, C, H, W] = [N, *input_shape]) to ``output``.

    ``mean``/``std`` (in [0, 1] pixel units) are the normalization the model expects; with
    ``fold_normalization`` a NormalizeLayer is put in front of it in the graph and the metadata
    says mean 0, std 1. ``sigma`` is the noise level the model was trained with (stored as the
    default ``smoothing.sigma``). The file is written only if onnxruntime reproduces torch on
    ``parity_batch`` random noisy images within atol + rtol |torch|; otherwise ParityError.
    """
    shape = _check_shape(input_shape, channels)
    if parity_batch < 1:
        raise ExportError(f"parity_batch must be >= 1, got {parity_batch}")
    if atol < 0 or rtol < 0:
        raise ExportError(f"atol and rtol must be >= 0, got atol={atol}, rtol={rtol}")
    net = torch.nn.Sequential(NormalizeLayer(mean, std), model) if fold_normalization else model
    net = net.eval()
    stored_mean, stored_std = ([0.0], [1.0]) if fold_normalization else (list(mean), list(std))
    preprocess = {"size": list(shape[1:]), "resize": resize, "crop": crop, "channels": channels,
                  "layout": "NCHW", "mean": [float(v) for v in stored_mean],
                  "std": [float(v) for v in stored_std]}
    if resize_to is not None:
        preprocess["resize_to"] = int(resize_to)

    proto = _to_onnx(net, shape, opset, input_name, output_name)
    k = _num_classes(proto)
    if classes is not None and len(classes) != k:
        raise ExportError(f"{len(classes)} class names given but the model outputs {k} values")
    sections = {"model": {"input": input_name, "output": output_name, "output_kind": output_kind},
                "preprocess": preprocess}
    if classes is not None:
        sections["model"]["classes"] = [str(c) for c in classes]
    if sigma is not None:
        sections["smoothing"] = {"sigma": float(sigma)}
    _write_metadata(proto, sections, sigma)

    x = _random_images(parity_batch, shape, sigma, seed)
    inputs = (x - _channel(stored_mean)) / _channel(stored_std)
    onnx_bytes = proto.SerializeToString()
    diff = check_parity(net, onnx_bytes, inputs, input_name, output_name, atol=atol, rtol=rtol)
    parity = Parity(parity_batch, diff, atol, rtol)
    info = {"exporter": "onnxcert exporters", "torch": torch.__version__, "opset": opset,
            "fold_normalization": fold_normalization,
            "parity": {"batch": parity_batch, "max_abs_diff": diff, "atol": atol, "rtol": rtol},
            **dict(provenance or {})}
    _set_prop(proto, PROVENANCE_KEY, json.dumps(info, sort_keys=True))
    onnx_bytes = proto.SerializeToString()
    path = atomic_write_bytes(Path(output), onnx_bytes)
    return ExportResult(path, hashlib.sha256(onnx_bytes).hexdigest(), opset, input_name,
                        output_name, k, sections, parity)


def check_parity(model: torch.nn.Module, onnx_model: bytes | str | Path, inputs: np.ndarray,
                 input_name: str, output_name: str, *, atol: float = DEFAULT_ATOL,
                 rtol: float = DEFAULT_RTOL) -> float:
    """Run ``inputs`` through torch and onnxruntime; return max |ort - torch|.

    Raises ParityError when any element differs by more than atol + rtol |torch|, when the shapes
    differ, when onnxruntime cannot run the batch, or when torch itself gives NaN/inf.
    """
    inputs = np.ascontiguousarray(inputs, dtype=np.float32)
    with torch.no_grad():
        expected = model.eval()(torch.from_numpy(inputs.copy())).detach().cpu().numpy()
    if not np.all(np.isfinite(expected)):
        raise ParityError("the torch model gives NaN or inf on random inputs; nothing to compare")
    source = str(onnx_model) if isinstance(onnx_model, Path) else onnx_model
    try:
        ort = import_ort()
        options = ort.SessionOptions()
        options.intra_op_num_threads = min(2, os.cpu_count() or 1)
        session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        got = session.run([output_name], {input_name: inputs})[0]
    except Exception as exc:  # onnxruntime raises its own untyped errors
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else exc.__class__.__name__
        raise ParityError(f"onnxruntime cannot run the exported model on a batch of "
                          f"{len(inputs)}: {first}") from None
    if got.shape != expected.shape:
        raise ParityError(f"onnxruntime output shape {list(got.shape)} differs from torch's "
                          f"{list(expected.shape)} (batch {len(inputs)})")
    diff = np.abs(got.astype(np.float64) - expected.astype(np.float64))
    excess = diff - (atol + rtol * np.abs(expected))
    if not np.all(np.isfinite(got)) or np.any(excess > 0):
        i = np.unravel_index(int(np.nanargmax(np.where(np.isfinite(excess), excess, np.inf))), diff.shape)
        raise ParityError(
            f"onnxruntime and torch disagree at output {list(map(int, i))}: torch "
            f"{expected[i]:.6g}, onnxruntime {got[i]:.6g} (max |diff| {np.nanmax(diff):.3g}; "
            f"tolerance {atol:g} + {rtol:g} * |torch|)")
    return float(diff.max())


# ---------------------------------------------------------------- helpers


def _check_shape(input_shape: Sequence[int], channels: str) -> tuple[int, int, int]:
    if channels not in _CHANNELS:
        raise ExportError(f"channels must be one of {', '.join(_CHANNELS)}; got {channels!r}")
    shape = tuple(int(v) for v in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ExportError(f"input_shape must be [C, H, W] with positive sizes, got {list(input_shape)}")
    if shape[0] != _CHANNELS[channels]:
        raise ExportError(f"input_shape {list(shape)} has {shape[0]} channel(s) but channels "
                          f"{channels!r} needs {_CHANNELS[channels]}")
    return shape


def _to_onnx(net: torch.nn.Module, shape: tuple[int, ...], opset: int, input_name: str,
             output_name: str) -> onnx.ModelProto:
    dummy = torch.rand(1, *shape, generator=torch.Generator().manual_seed(0))
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter is legacy
            torch.onnx.export(net, (dummy,), buf, input_names=[input_name], output_names=[output_name],
                              dynamic_axes={input_name: {0: "batch"}, output_name: {0: "batch"}},
                              opset_version=opset, do_constant_folding=True, dynamo=False)
    except Exception as exc:  # torch.onnx raises many unrelated types
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else exc.__class__.__name__
        raise ExportError(f"torch.onnx.export failed at opset {opset}: {first}") from None
    proto = onnx.load_from_string(buf.getvalue())
    if len(proto.graph.output) != 1:
        raise ExportError(f"the model must return one tensor [N, k], it returns {len(proto.graph.output)}")
    return proto


def _num_classes(proto: onnx.ModelProto) -> int:
    dims = proto.graph.output[0].type.tensor_type.shape.dim
    if len(dims) != 2 or not dims[1].HasField("dim_value"):
        shown = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in dims]
        raise ExportError(f"the model must output [N, k] scores with a fixed k, got shape {shown}")
    batch = proto.graph.input[0].type.tensor_type.shape.dim[0]
    if batch.HasField("dim_value"):
        raise ExportError("the exported input has a fixed batch size; the batch axis must be dynamic")
    return int(dims[1].dim_value)


def _write_metadata(proto: onnx.ModelProto, sections: Mapping[str, dict], sigma: float | None) -> None:
    props = {METADATA_KEYS[s]: json.dumps(body, sort_keys=True) for s, body in sections.items()}
    try:
        build_config(metadata_layer(props, source="exported metadata"),
                     {"smoothing": {"sigma": 1.0}} if sigma is None else {})
    except ConfigError as exc:
        raise ExportError(str(exc)) from None
    for key, value in props.items():
        _set_prop(proto, key, value)


def _set_prop(proto: onnx.ModelProto, key: str, value: str) -> None:
    for entry in list(proto.metadata_props):
        if entry.key == key:
            proto.metadata_props.remove(entry)
    proto.metadata_props.add(key=key, value=value)


def _random_images(batch: int, shape: tuple[int, ...], sigma: float | None, seed: int) -> np.ndarray:
    """Images in [0, 1] plus the smoothing noise: the inputs the model will actually see."""
    rng = np.random.default_rng(seed)
    x = rng.random((batch, *shape), dtype=np.float32)
    if sigma:
        x += np.float32(sigma) * rng.standard_normal(x.shape, dtype=np.float32)
    return x


def _channel(values: Sequence[float]) -> np.ndarray:
    return np.asarray(values, dtype=np.float32).reshape(1, -1, 1, 1)
