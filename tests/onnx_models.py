"""Tiny ONNX classifiers built with onnx.helper, for tests whose answers are known in closed form.

Every builder writes ``path`` and returns it. Models use opset 17 and IR version 8, which every
supported onnxruntime runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8


def _save(path, nodes, inputs, outputs, inits=(), metadata=None, name="tiny"):
    graph = helper.make_graph(nodes, name, inputs, outputs, initializer=list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="onnxcert-tests")
    model.ir_version = IR_VERSION
    for key, value in (metadata or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value if isinstance(value, str) else json.dumps(value)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return Path(path)


def _init(name, array):
    return numpy_helper.from_array(np.asarray(array), name)


def linear_threshold(path, w, t, *, shape=(3, 4, 4), mean=0.0, std=1.0, metadata=None):
    """p(class 0 | x) = 1[w . x > t] with x in [0, 1] pixel space, while the model receives
    u = (x - mean) / std (scalar mean and std). Two classes, probability rows.

    Smoothed with N(0, sigma^2 I) noise on x, class 0's expected score is
    Phi((w . x - t) / (sigma ||w||)), and its worst case within radius R is
    Phi((w . x - t - R ||w||) / (sigma ||w||)) (a halfspace; Cohen et al. 2019, Appendix).
    """
    w = np.asarray(w, dtype=np.float64).reshape(-1)
    d = int(np.prod(shape))
    assert w.size == d
    # w . x = (w * std) . u + mean * sum(w)
    nodes = [
        helper.make_node("Flatten", ["input"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "W"], ["s"]),
        helper.make_node("Greater", ["s", "T"], ["above"]),
        helper.make_node("Cast", ["above"], ["p0"], to=TensorProto.FLOAT),
        helper.make_node("Sub", ["one", "p0"], ["p1"]),
        helper.make_node("Concat", ["p0", "p1"], ["probs"], axis=1),
    ]
    inits = [_init("W", (w * std).astype(np.float32).reshape(d, 1)),
             _init("T", np.array([t - mean * w.sum()], dtype=np.float32)),
             _init("one", np.array([1.0], dtype=np.float32))]
    return _save(path, nodes, [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", *shape])],
                 [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 2])], inits, metadata)


def constant(path, probs, *, shape=(3, 4, 4), metadata=None):
    """Every input gets the same output row ``probs`` (probabilities or any constant)."""
    probs = np.asarray(probs, dtype=np.float32).reshape(1, -1)
    k, d = probs.shape[1], int(np.prod(shape))
    nodes = [helper.make_node("Flatten", ["input"], ["flat"], axis=1),
             helper.make_node("MatMul", ["flat", "Z"], ["zero"]),
             helper.make_node("Add", ["zero", "C"], ["probs"])]
    inits = [_init("Z", np.zeros((d, k), np.float32)), _init("C", probs)]
    return _save(path, nodes, [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", *shape])],
                 [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", k])], inits, metadata)


def channel_means(path, *, layout="NCHW", size=(6, 5), gain=40.0, batch="N", softmax=False,
                  fixed_reshape=False, float16=False, metadata=None):
    """logits_j = gain * (mean of channel j) - gain / 2, three classes, one per input channel.

    ``batch`` is the input's batch dim ("N" or a fixed 1). ``fixed_reshape`` ends the graph in
    Reshape(to [1, 3]), which no batch but 1 can pass. ``float16`` makes the input and output
    float16 (computed in float32 inside).
    """
    h, w = size
    dims = [batch, 3, h, w] if layout == "NCHW" else [batch, h, w, 3]
    axes = [2, 3] if layout == "NCHW" else [1, 2]
    elem = TensorProto.FLOAT16 if float16 else TensorProto.FLOAT
    nodes, src = [], "input"
    if float16:
        nodes.append(helper.make_node("Cast", ["input"], ["x32"], to=TensorProto.FLOAT))
        src = "x32"
    nodes.append(helper.make_node("ReduceMean", [src], ["m"], axes=axes, keepdims=int(fixed_reshape)))
    if fixed_reshape:
        nodes.append(helper.make_node("Reshape", ["m", "shape13"], ["m2"]))
    nodes += [helper.make_node("Mul", ["m2" if fixed_reshape else "m", "gain"], ["g"]),
              helper.make_node("Sub", ["g", "half"], ["logits"])]
    last = "logits"
    if softmax:
        nodes.append(helper.make_node("Softmax", ["logits"], ["sm"], axis=1))
        last = "sm"
    if float16:
        nodes.append(helper.make_node("Cast", [last], ["out16"], to=TensorProto.FLOAT16))
        last = "out16"
    nodes.append(helper.make_node("Identity", [last], ["scores"]))
    inits = [_init("gain", np.array([gain], np.float32)), _init("half", np.array([gain / 2], np.float32))]
    if fixed_reshape:
        inits.append(_init("shape13", np.array([1, 3], np.int64)))
    out_batch = batch if not fixed_reshape else 1
    return _save(path, nodes, [helper.make_tensor_value_info("input", elem, dims)],
                 [helper.make_tensor_value_info("scores", elem, [out_batch, 3])], inits, metadata)


def two_inputs(path):
    """Two float inputs [N, 3]; output their sum [N, 3]."""
    return _save(path, [helper.make_node("Add", ["a", "b"], ["y"])],
                 [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", 3]),
                  helper.make_tensor_value_info("b", TensorProto.FLOAT, ["N", 3])],
                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])])


def rank4_output(path, shape=(3, 4, 4)):
    """Output [N, 3, 4, 4]: not a classifier."""
    return _save(path, [helper.make_node("Identity", ["input"], ["y"])],
                 [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", *shape])],
                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", *shape])])


def nan_output(path, shape=(3, 4, 4)):
    """log(-1 - x) on the channel means: NaN for every input in [0, 1]."""
    nodes = [helper.make_node("ReduceMean", ["input"], ["m"], axes=[2, 3], keepdims=0),
             helper.make_node("Sub", ["minus1", "m"], ["neg"]),
             helper.make_node("Log", ["neg"], ["y"])]
    return _save(path, nodes, [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", *shape])],
                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
                 [_init("minus1", np.array([-1.0], np.float32))])


def brightness_bins(path, *, k=10, size=(8, 8), scale=255.0, metadata=None):
    """A CIFAR-like model that wants 0..``scale`` inputs: class j when the mean pixel is nearest
    ``scale * (j + 0.5) / k``; logits_j = -((mean - centre_j) / (scale / k))^2. Fed [0, 1] values
    (mean 0, std 1 instead of std 1/255) it predicts class 0 for everything."""
    h, w = size
    centres = np.array([[scale * (j + 0.5) / k for j in range(k)]], np.float32)
    nodes = [helper.make_node("ReduceMean", ["input"], ["m"], axes=[1, 2, 3], keepdims=0),
             helper.make_node("Unsqueeze", ["m", "ax1"], ["m1"]),
             helper.make_node("Sub", ["m1", "centres"], ["d"]),
             helper.make_node("Div", ["d", "width"], ["z"]),
             helper.make_node("Mul", ["z", "z"], ["z2"]),
             helper.make_node("Neg", ["z2"], ["logits"])]
    inits = [_init("centres", centres), _init("width", np.array([scale / k], np.float32)),
             _init("ax1", np.array([1], np.int64))]
    return _save(path, nodes, [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, h, w])],
                 [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", k])], inits, metadata)
