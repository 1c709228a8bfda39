"""The device path: noise drawn inside the graph, and only a few numbers per sample sent back.

On a GPU, drawing the noise with NumPy and copying every noisy batch to the device costs more
than the forward pass of a mid-sized network: an ImageNet sample is 150,528 normals, about a
millisecond of one CPU core. So on CUDA, onnxcert wraps the classifier in a graph that

- takes the clean normalized image once per input, a 64-bit key per noise stream, the index of
  the batch's first sample and the batch size;
- draws the noise itself, ``x + scale * z``, z from a counter-based generator;
- runs the classifier, then a softmax in float64, and returns per sample the predicted class's
  score, the best other score and whether the class won, plus the batch's column sums of the
  softmax (what selection needs) and one finiteness check.

The generator is Squares (Widynski 2020, "Squares: A Fast Counter-Based RNG", arXiv:2004.06278),
4 rounds, 32 bits per counter, which passes BigCrush. Its rounds are uint64 multiplications,
additions and a 32-bit rotation, written as Div and Mul by 2^32: onnxruntime's CUDA provider
runs all of them, while it has no bitwise kernels (Philox or Threefry would fall back to the
CPU node by node). Two 32-bit draws give two normals by Box-Muller. Sample j of a stream uses
the counters j * 2P .. (j + 1) * 2P - 1 (P = ceil(D / 2) normal pairs for D values per sample),
so the noise is the same whatever the batch size, and each (seed, input, stream) has its own key.
The radius uses a 40-bit uniform in float64 (see ``box_muller``), so the Gaussian tail is kept
to 7.5 standard deviations.

This noise differs from the CPU path's stream (``noise``: SFC64 words, one per pair, the same
Box-Muller layout): a report made on the device path is reproducible on the device path, and
statistically equivalent to, not identical with, a CPU one.

Everything here needs only the ``onnx`` package; sessions and I/O binding live in runtime.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .errors import ConfigError

MIN_OPSET = 13  # Softmax over the last axis, ReduceSum/Squeeze with axes as inputs
TWO32 = 1 << 32
PREFIX = "onnxcert_fastpath/"
DEVICE_NOISE = ("auto", "on", "off")
KEY_STREAM_TAG = 2  # spawn_key (index, stream, 2): the device keys never meet the CPU streams
GENERATOR = "squares4-box-muller-40bit"  # the name the report's provenance gives the device noise


# ---------------------------------------------------------------- choosing the path


@dataclass(frozen=True)
class PathChoice:
    """How the Sampler runs: ``device_noise`` (the wrapped graph) or not, ``prefetch`` (a worker
    thread draws the next batch's noise on the host), and why."""

    device_noise: bool
    prefetch: bool
    reason: str


def choose_path(*, provider: str, batch_mode: str, opset: int | None, input_dtype: str,
                device_noise: str = "auto") -> PathChoice:
    """The sampling path for a classifier, from what onnxruntime runs it on.

    ``device_noise`` 'auto' takes the device path on CUDA when the graph allows it; 'on' insists
    (any provider, e.g. to test it on the CPU), 'off' never. The host path always prefetches:
    on CUDA the CPU is idle while the GPU works, and on the 2-core benchmark machine, with
    onnxruntime's threads not spinning, prefetching was as fast or faster for every model at
    every thread count (benchmarks/README.md). With lanes (runtime.choose_lanes) the estimation
    batches draw their noise in the lanes instead; prefetch then serves the selection alone.
    """
    if device_noise not in DEVICE_NOISE:
        raise ConfigError(f"device_noise must be one of {', '.join(DEVICE_NOISE)}; got {device_noise!r}")
    on_gpu = provider == "CUDAExecutionProvider"
    blockers = []
    if batch_mode == "fixed":
        blockers.append("the model's batch dimension is fixed")
    if opset is None or opset < MIN_OPSET:
        blockers.append(f"the model's opset {opset} is below {MIN_OPSET}")
    if input_dtype not in ("float32", "float16"):
        blockers.append(f"the model's input is {input_dtype}")
    if device_noise == "off":
        return PathChoice(False, True, "device noise turned off")
    if blockers:
        if device_noise == "on":
            raise ConfigError("device noise is not possible: " + "; ".join(blockers))
        return PathChoice(False, True, "; ".join(blockers) if on_gpu else f"provider {provider}")
    if device_noise == "on" or on_gpu:
        return PathChoice(True, False, f"noise drawn in the graph on {provider}")
    return PathChoice(False, True, f"provider {provider}")


def default_opset(proto) -> int | None:
    """The model's ai.onnx opset, or None when it imports none."""
    for o in proto.opset_import:
        if o.domain in ("", "ai.onnx"):
            return int(o.version)
    return None


# ---------------------------------------------------------------- the generator (NumPy reference)


def squares_key(seed: int, index: int, stream: int) -> int:
    """The Squares key of one input's noise stream, from ``SeedSequence(seed, (index, stream, 2))``.

    Widynski's rules for keys with enough bit changes: the lowest hex digit odd; digits 1-7
    non-zero, distinct, and distinct from digit 0; digits 8-15 non-zero, each unlike the one
    before.
    """
    g = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index, stream, KEY_STREAM_TAG)))
    first = int(g.choice(np.arange(1, 16, 2)))
    rest = [int(d) for d in g.permutation([d for d in range(1, 16) if d != first])[:7]]
    digits = [first, *rest]
    for _ in range(8):
        digits.append(int(g.choice([d for d in range(1, 16) if d != digits[-1]])))
    return sum(d << (4 * i) for i, d in enumerate(digits))


def squares32(ctr: np.ndarray, key: int) -> np.ndarray:
    """Squares, 4 rounds: 32 random bits (as uint64) per 64-bit counter (Widynski 2020, Fig. 2)."""
    k = np.uint64(key)
    with np.errstate(over="ignore"):
        x = y = np.asarray(ctr, dtype=np.uint64) * k
        z = y + k
        for add in (y, z, y):
            x = _rotate32(x * x + add)
        return (x * x + z) >> np.uint64(32)


def _rotate32(x: np.ndarray) -> np.ndarray:
    return (x >> np.uint64(32)) | (x << np.uint64(32))


def box_muller(bits: np.ndarray) -> np.ndarray:
    """Normals from 32-bit draws [..., 2, P] -> [..., 2P], in float32 as the graph computes them.

    Per pair, words w1, w2: u2 = (w2 // 256 + 0.5) / 2^24 gives the angle; the radius uses a
    40-bit uniform u1 = (256 w1 + w2 mod 256 + 0.5) / 2^40 in float64, r = sqrt(-2 ln u1). With
    24 bits for u1, r would stop at 5.9, dropping a tail of 3e-8 per pair, about 2e-3 of all
    ImageNet-sized samples; at 40 bits the missing tail is 4.5e-13 per pair (3e-8 per ImageNet
    sample), far below any certificate's resolution.
    """
    w1, w2 = bits[..., 0, :], bits[..., 1, :]
    u1 = (w1.astype(np.float64) * 256.0 + (w2 % np.uint64(256)).astype(np.float64) + 0.5) * 2.0 ** -40
    r = np.sqrt(-2.0 * np.log(u1)).astype(np.float32)
    u2 = ((w2 // np.uint64(256)).astype(np.float32) + np.float32(0.5)) * np.float32(2.0 ** -24)
    theta = np.float32(2 * math.pi) * u2
    return np.concatenate([r * np.cos(theta), r * np.sin(theta)], axis=-1)


def pairs(values: int) -> int:
    """Normal pairs P per sample for ``values`` numbers per sample."""
    return -(-values // 2)


def reference_noise(key: int, first: int, count: int, shape: Sequence[int]) -> np.ndarray:
    """The noise the graph draws for samples first .. first + count - 1, [count, *shape] float32."""
    d = math.prod(shape)
    p = pairs(d)
    ctr = np.arange(first * 2 * p, (first + count) * 2 * p, dtype=np.uint64)
    z = box_muller(squares32(ctr, key).reshape(count, 2, p))
    return z[:, :d].reshape(count, *shape)


# ---------------------------------------------------------------- the graphs


class _Graph:
    """A few helpers to write nodes with unique, prefixed names."""

    def __init__(self):
        import onnx
        from onnx import helper

        self.onnx, self.helper = onnx, helper
        self.nodes, self.inits, self._n = [], [], 0

    def name(self, hint: str) -> str:
        self._n += 1
        return f"{PREFIX}{hint}_{self._n}"

    def const(self, value, dtype, hint="c") -> str:
        name = self.name(hint)
        self.inits.append(self.onnx.numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, op_type: str, inputs: Sequence[str], hint: str | None = None, n_out: int = 1, **attrs):
        outs = [self.name(hint or op_type.lower()) for _ in range(n_out)]
        self.nodes.append(self.helper.make_node(op_type, list(inputs), outs, name=self.name(op_type), **attrs))
        return outs[0] if n_out == 1 else outs


def _noise_nodes(g: _Graph, shape: Sequence[int], x: str, scale: str, key: str, first: str, count: str,
                 out_dtype: int) -> str:
    """Nodes computing x + scale * z for ``count`` samples from ``first``; returns the output name."""
    T = g.onnx.TensorProto
    d = math.prod(shape)
    p = pairs(d)
    u64 = lambda v: g.const([v], np.uint64)  # noqa: E731
    zero, one = g.const([0], np.int64), g.const([1], np.int64)
    total = g.op("Mul", [count, g.const([2 * p], np.int64)], "n_counters")
    idx = g.op("Cast", [g.op("Range", [g.op("Squeeze", [zero]), g.op("Squeeze", [total]),
                                       g.op("Squeeze", [one])])], "index", to=T.UINT64)
    ctr = g.op("Add", [g.op("Mul", [first, u64(2 * p)]), idx], "ctr")
    x0 = y = g.op("Mul", [ctr, key], "y")
    z_ = g.op("Add", [y, key], "z")
    two32 = u64(TWO32)
    xs = x0
    for add in (y, z_, y):
        sq = g.op("Add", [g.op("Mul", [xs, xs]), add])
        xs = g.op("Add", [g.op("Div", [sq, two32]), g.op("Mul", [sq, two32])], "rot")
    bits = g.op("Div", [g.op("Add", [g.op("Mul", [xs, xs]), z_]), two32], "bits")
    bits = g.op("Reshape", [bits, g.const([-1, 2, p], np.int64)])
    w1 = g.op("Gather", [bits, g.const(0, np.int64)], axis=1)
    w2 = g.op("Gather", [bits, g.const(1, np.int64)], axis=1)
    w2_high = g.op("Div", [w2, u64(256)])
    w2_low = g.op("Sub", [w2, g.op("Mul", [w2_high, u64(256)])])
    # the radius from a 40-bit uniform in float64 (see box_muller), the angle from 24 bits
    u1 = g.op("Add", [g.op("Mul", [g.op("Cast", [w1], to=T.DOUBLE), g.const(256.0, np.float64)]),
                      g.op("Cast", [w2_low], to=T.DOUBLE)])
    u1 = g.op("Mul", [g.op("Add", [u1, g.const(0.5, np.float64)]), g.const(2.0 ** -40, np.float64)], "u1")
    r = g.op("Sqrt", [g.op("Mul", [g.op("Log", [u1]), g.const(-2.0, np.float64)])])
    r = g.op("Cast", [r], "r", to=T.FLOAT)
    u2 = g.op("Cast", [w2_high], to=T.FLOAT)
    u2 = g.op("Mul", [g.op("Add", [u2, g.const(0.5, np.float32)]), g.const(2.0 ** -24, np.float32)], "u2")
    theta = g.op("Mul", [u2, g.const(2 * math.pi, np.float32)], "theta")
    z = g.op("Concat", [g.op("Mul", [r, g.op("Cos", [theta])]), g.op("Mul", [r, g.op("Sin", [theta])])], axis=1)
    if 2 * p != d:
        starts, ends, axes = g.const([0], np.int64), g.const([d], np.int64), g.const([1], np.int64)
        z = g.op("Slice", [z, starts, ends, axes])  # an odd count of values: drop the last normal
    z = g.op("Reshape", [z, g.const([-1, *shape], np.int64)], "noise")
    noisy = g.op("Add", [x, g.op("Mul", [z, scale])], "noisy")
    return noisy if out_dtype == T.FLOAT else g.op("Cast", [noisy], to=out_dtype)


def _head_nodes(g: _Graph, rows: str, c: str, output_kind: str) -> dict[str, str]:
    """From class scores [B, k]: softmax in float64, then per sample the score of class c, the best
    other score and whether c won; the column sums; the sum of every raw value (finite or not)."""
    T = g.onnx.TensorProto
    r64 = g.op("Cast", [rows], to=T.DOUBLE)
    if output_kind == "logits":
        probs = g.op("Softmax", [r64], axis=-1)
    else:
        probs = g.op("Clip", [r64, g.const(0.0, np.float64), g.const(1.0, np.float64)])
    axis0, axis1 = g.const([0], np.int64), g.const([1], np.int64)
    values, indices = g.op("TopK", [probs, g.const([2], np.int64)], "top2", n_out=2, axis=-1, largest=1, sorted=1)
    won = g.op("Equal", [g.op("Gather", [indices, g.const(0, np.int64)], axis=1), c])
    best = g.op("Gather", [values, g.const(0, np.int64)], axis=1)
    second = g.op("Gather", [values, g.const(1, np.int64)], axis=1)
    score = g.op("Squeeze", [g.op("Gather", [probs, c], axis=1), axis1])
    return {
        "score": g.op("Identity", [score], "score"),
        "other": g.op("Where", [won, second, best], "other"),
        "won": g.op("Identity", [won], "won"),
        "column_sums": g.op("ReduceSum", [probs, axis0], keepdims=0),
        "total": g.op("ReduceSum", [r64], keepdims=0),
    }


OUTPUTS = ("score", "other", "won", "column_sums", "total")
INPUT_NAMES = {k: PREFIX + k for k in ("x", "scale", "key", "first", "count", "c", "noisy")}
OUTPUT_NAMES = {k: PREFIX + "out_" + k for k in OUTPUTS}


def wrap_classifier(proto, input_name: str, output_name: str, sample_shape: Sequence[int], *,
                    output_kind: str, device_noise: bool = True):
    """A copy of the classifier's graph with the noise in front and the measures behind.

    Inputs: ``x`` float32 [1, *shape] (the clean normalized sample), ``scale`` float32
    [1, *shape] (sigma / std, broadcast), ``key`` uint64 [1], ``first`` uint64 [1] (the batch's
    first sample in the stream), ``count`` int64 [1] (the batch size), ``c`` int64 [1] (the
    class to score; any class during selection). With ``device_noise`` False the graph takes the
    noisy batch itself as ``noisy`` instead of x, scale, key, first and count.
    Outputs: ``score``, ``other`` float64 [B], ``won`` bool [B], ``column_sums`` float64 [k],
    ``total`` float64 [] (non-finite when any raw output is).
    """
    import copy

    from onnx import TensorProto as T
    from onnx import helper

    if output_kind not in ("logits", "probabilities"):
        raise ValueError(f"output_kind must be resolved to logits or probabilities, got {output_kind!r}")
    opset = default_opset(proto)
    if opset is None or opset < MIN_OPSET:
        raise ValueError(f"the model's opset {opset} is below {MIN_OPSET}")
    model = copy.deepcopy(proto)
    graph = model.graph
    (old_in,) = [v for v in graph.input if v.name == input_name]
    in_dtype = old_in.type.tensor_type.elem_type
    g = _Graph()
    names = INPUT_NAMES
    c = names["c"]
    inputs = [helper.make_tensor_value_info(c, T.INT64, [1])]
    if device_noise:
        inputs += [helper.make_tensor_value_info(names["x"], T.FLOAT, [1, *sample_shape]),
                   helper.make_tensor_value_info(names["scale"], T.FLOAT, [1, *sample_shape]),
                   helper.make_tensor_value_info(names["key"], T.UINT64, [1]),
                   helper.make_tensor_value_info(names["first"], T.UINT64, [1]),
                   helper.make_tensor_value_info(names["count"], T.INT64, [1])]
        noisy = _noise_nodes(g, sample_shape, names["x"], names["scale"], names["key"], names["first"],
                             names["count"], in_dtype)
        g.nodes.append(helper.make_node("Identity", [noisy], [input_name], name=PREFIX + "to_model"))
    else:
        inputs.append(helper.make_tensor_value_info(names["noisy"], in_dtype, [None, *sample_shape]))
        g.nodes.append(helper.make_node("Identity", [names["noisy"]], [input_name], name=PREFIX + "to_model"))
    head = _head_nodes(g, output_name, c, output_kind)
    graph.input.remove(old_in)
    graph.input.extend(inputs)
    front = [n for n in g.nodes if _feeds_model(n, g.nodes, input_name)]
    back = [n for n in g.nodes if n not in front]
    all_nodes = front + list(graph.node) + back
    del graph.node[:]
    graph.node.extend(all_nodes)
    graph.initializer.extend(g.inits)
    del graph.output[:]
    kinds = {"score": (T.DOUBLE, ["batch"]), "other": (T.DOUBLE, ["batch"]), "won": (T.BOOL, ["batch"]),
             "column_sums": (T.DOUBLE, ["k"]), "total": (T.DOUBLE, [])}
    for key in OUTPUTS:
        graph.node.append(helper.make_node("Identity", [head[key]], [OUTPUT_NAMES[key]], name=PREFIX + "o_" + key))
        graph.output.append(helper.make_tensor_value_info(OUTPUT_NAMES[key], *kinds[key]))
    return model


def _feeds_model(node, nodes, input_name: str) -> bool:
    """Is ``node`` upstream of the classifier (the noise), rather than behind it (the head)?"""
    upstream = {input_name}
    changed = True
    producers = {o: n for n in nodes for o in n.output}
    while changed:
        changed = False
        for name in list(upstream):
            n = producers.get(name)
            if n is not None:
                for i in n.input:
                    if i not in upstream:
                        upstream.add(i)
                        changed = True
    return any(o in upstream for o in node.output)


def noise_model(sample_shape: Sequence[int], opset: int = 17):
    """The noise part alone, ``x + scale * z`` for a batch, as a model: to test it, or to time it."""
    from onnx import TensorProto as T
    from onnx import helper

    g = _Graph()
    names = INPUT_NAMES
    noisy = _noise_nodes(g, sample_shape, names["x"], names["scale"], names["key"], names["first"],
                         names["count"], T.FLOAT)
    inputs = [helper.make_tensor_value_info(names["x"], T.FLOAT, [1, *sample_shape]),
              helper.make_tensor_value_info(names["scale"], T.FLOAT, [1, *sample_shape]),
              helper.make_tensor_value_info(names["key"], T.UINT64, [1]),
              helper.make_tensor_value_info(names["first"], T.UINT64, [1]),
              helper.make_tensor_value_info(names["count"], T.INT64, [1])]
    out = helper.make_tensor_value_info(noisy, T.FLOAT, ["batch", *sample_shape])
    graph = helper.make_graph(g.nodes, "onnxcert_noise", inputs, [out], initializer=g.inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
