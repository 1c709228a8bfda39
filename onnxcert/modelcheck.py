"""Static checks on an ONNX graph before onnxruntime sees it (onnx only, no session).

- **External data.** A tensor may keep its bytes in a file named by its ``location``, relative to
  the model's folder. A hostile model can name ``../../home/user/.ssh/id_rsa`` or an absolute path
  and have onnxruntime read it. Every location must stay inside the model's folder, symbolic links
  resolved; anything else is refused before a byte of it is read.
- **Operator domains.** A node from a custom domain needs that domain's library registered with
  onnxruntime, which onnxcert never does. Such a model would fail inside onnxruntime with a
  long message; here it fails with one line that names the domain and its operators. Operators
  of a function defined in the model itself are fine: onnxruntime inlines them.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Iterator

from .errors import ModelError

# Domains a stock onnxruntime build implements (CPU and GPU packages, training builds included);
# "" and "ai.onnx" are the standard operator set.
RUNTIME_DOMAINS = ("", "ai.onnx", "ai.onnx.ml", "com.microsoft", "com.microsoft.nchwc",
                   "com.ms.internal.nhwc", "com.microsoft.experimental", "com.microsoft.dml",
                   "ai.onnx.preview.training", "ai.onnx.training", "org.pytorch.aten")


def check_model(proto, path: str | Path) -> None:
    """Refuse external data outside the model's folder and operators of custom domains."""
    check_external_data(proto, Path(os.path.realpath(Path(path).absolute().parent)), str(path))
    check_domains(proto, str(path))


# ---------------------------------------------------------------- external data


def check_external_data(proto, folder: Path, name: str = "the model") -> None:
    """Every external ``location`` must be a relative path that stays inside ``folder``."""
    from onnx import TensorProto

    for tensor in _tensors(proto):
        if tensor.data_location != TensorProto.EXTERNAL:
            continue
        entries = {e.key: e.value for e in tensor.external_data}
        location = entries.get("location")
        if not location:
            raise ModelError(f"{name!r}: tensor {tensor.name!r} has external data with no location")
        if not _inside(location, folder):
            raise ModelError(f"{name!r}: tensor {tensor.name!r} keeps its data at {location!r}, outside the "
                             "model's folder; refused (external data must sit beside the model)")


def _inside(location: str, folder: Path) -> bool:
    if "\0" in location:
        return False
    for pure in (PurePosixPath(location), PureWindowsPath(location)):
        if pure.is_absolute() or pure.drive or pure.root or ".." in pure.parts:
            return False
    target = Path(os.path.realpath(folder / location))
    return target == folder or folder in target.parents


def _tensors(proto) -> Iterator:
    """Every TensorProto in the model: initializers, sparse initializers and node attributes,
    in the main graph, its subgraphs and the model's functions."""
    yield from _graph_tensors(proto.graph)
    for fn in proto.functions:
        yield from _node_tensors(fn.node)


def _graph_tensors(graph) -> Iterator:
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    yield from _node_tensors(graph.node)


def _node_tensors(nodes) -> Iterator:
    for node in nodes:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            for sparse in ([attr.sparse_tensor] if attr.HasField("sparse_tensor") else []) + list(attr.sparse_tensors):
                yield sparse.values
                yield sparse.indices
            for g in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                yield from _graph_tensors(g)


# ---------------------------------------------------------------- operator domains


def check_domains(proto, name: str = "the model") -> None:
    """Operators outside RUNTIME_DOMAINS, unless the model defines them as functions."""
    local = {(fn.domain, fn.name) for fn in proto.functions}
    unknown: dict[str, set[str]] = {}
    for node in _nodes(proto):
        domain = node.domain or ""
        if domain not in RUNTIME_DOMAINS and (domain, node.op_type) not in local:
            unknown.setdefault(domain, set()).add(node.op_type)
    if unknown:
        domain, ops = sorted(unknown.items())[0]
        more = f" (and {len(unknown) - 1} more custom domain(s))" if len(unknown) > 1 else ""
        raise ModelError(f"{name!r} uses operator(s) {', '.join(sorted(ops))} of the custom domain {domain!r}{more}, "
                         "which onnxruntime cannot run without that domain's library; export the model "
                         "with standard ONNX operators")


def _nodes(proto) -> Iterator:
    def walk(nodes):
        for node in nodes:
            yield node
            for attr in node.attribute:
                for g in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                    yield from walk(g.node)

    yield from walk(proto.graph.node)
    for fn in proto.functions:
        yield from walk(fn.node)


# ---------------------------------------------------------------- what the output is


SHAPE_OPS = ("Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Cast", "Transpose")


def output_op(proto, output_name: str) -> str | None:
    """The operator that computes ``output_name``, looking through ops that only move values
    (Reshape, Flatten, Cast, ...): "Softmax" means the output is probabilities."""
    producers = {out: node for node in proto.graph.node for out in node.output}
    name = output_name
    for _ in range(len(producers) + 1):
        node = producers.get(name)
        if node is None:
            return None
        if node.op_type not in SHAPE_OPS or not node.input:
            return node.op_type
        name = node.input[0]
    return None
