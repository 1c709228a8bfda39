"""Hostile and broken inputs to `onnxcert run` (issue 8): paths, images, models, configs, labels,
overwrites. Every case must end with its documented exit code (docs/errors.md), exactly one
`onnxcert: error:` line that names the problem, no traceback, and no report left behind.

Images of a folder that cannot be decoded are the exception: they are skipped with a warning and
listed in the report, unless --strict-inputs makes them fatal.
"""

from __future__ import annotations

import json
import os
import re
import struct
import zlib
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image
from typer.testing import CliRunner

import onnx_models as om
import onnxcert
from onnxcert.cli import app
from onnxcert.config import build_config, load_yaml, merge

SHAPE = (3, 4, 4)
FAST = ("--n0", "10", "--n", "50", "--methods", "naive,cdf-dkw")


def cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def assert_one_error(res, code: int, pattern: str) -> str:
    """Exit code, exactly one error line matching ``pattern``, no traceback."""
    assert "Traceback" not in res.output, res.output
    assert res.exit_code == code, res.output
    lines = [ln for ln in res.output.splitlines() if ln.startswith("onnxcert: error:")]
    assert len(lines) == 1, res.output
    assert re.search(pattern, lines[0]), lines[0]
    return lines[0]


# ---------------------------------------------------------------- builders


def png_header(path: Path, width: int, height: int) -> Path:
    """A PNG that claims width x height 8-bit grey pixels but holds no pixel data: Pillow reads
    the size from the header alone, so no memory is spent on it."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b""))
                     + chunk(b"IEND", b""))
    return path


def good_png(path: Path, color=(200, 30, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((4, 4, 3), color, np.uint8)).save(path)
    return path


def truncated_png(path: Path) -> Path:
    """A valid header, then half the pixel data (noise, so that it does not compress away)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(path)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    return path


def not_an_image(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("this is a text file wearing a .png extension\n")
    return path


def external_data_model(folder: Path, location: str, data_at: Path | None = None) -> Path:
    """The constant model with its output row C kept as external data at ``location``; the bytes
    are written to ``data_at`` so that only onnxcert's check stands between onnxruntime and them."""
    folder.mkdir(parents=True, exist_ok=True)
    model = onnx.load(str(om.constant(folder / "base.onnx", [0.7, 0.2, 0.1], shape=SHAPE)))
    tensor = next(t for t in model.graph.initializer if t.name == "C")
    raw = numpy_helper.to_array(tensor).tobytes()
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", str(len(raw)))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    if data_at is not None:
        data_at.parent.mkdir(parents=True, exist_ok=True)
        data_at.write_bytes(raw)
    path = folder / "ext.onnx"
    path.write_bytes(model.SerializeToString())
    return path


def custom_domain_model(path: Path) -> Path:
    nodes = [helper.make_node("ReduceMean", ["input"], ["m"], axes=[2, 3], keepdims=0),
             helper.make_node("Frobnicate", ["m"], ["scores"], domain="com.example.ops")]
    graph = helper.make_graph(nodes, "custom", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", *SHAPE])],
                              [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", om.OPSET),
                                                    helper.make_opsetid("com.example.ops", 1)])
    model.ir_version = om.IR_VERSION
    path.write_bytes(model.SerializeToString())
    return path


def unknown_standard_op_model(path: Path) -> Path:
    nodes = [helper.make_node("ReduceMean", ["input"], ["m"], axes=[2, 3], keepdims=0),
             helper.make_node("NoSuchOperator", ["m"], ["scores"])]
    graph = helper.make_graph(nodes, "unknown", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", *SHAPE])],
                              [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", om.OPSET)])
    model.ir_version = om.IR_VERSION
    path.write_bytes(model.SerializeToString())
    return path


def two_score_outputs(path: Path) -> Path:
    """Two [N, 3] outputs: which one holds the class scores?"""
    nodes = [helper.make_node("ReduceMean", ["input"], ["a"], axes=[2, 3], keepdims=0),
             helper.make_node("Neg", ["a"], ["b"])]
    graph = helper.make_graph(nodes, "two", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", *SHAPE])],
                              [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", 3]),
                               helper.make_tensor_value_info("b", TensorProto.FLOAT, ["N", 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", om.OPSET)])
    model.ir_version = om.IR_VERSION
    path.write_bytes(model.SerializeToString())
    return path


def one_class_model(path: Path) -> Path:
    return om.constant(path, [1.0], shape=SHAPE)


def truncated_model(path: Path) -> Path:
    data = om.constant(path, [0.7, 0.2, 0.1], shape=SHAPE).read_bytes()
    path.write_bytes(data[:len(data) * 2 // 3])
    return path


@pytest.fixture
def npy(tmp_path) -> Path:
    np.save(tmp_path / "x.npy", np.random.default_rng(0).random((3, *SHAPE)).astype(np.float32))
    return tmp_path / "x.npy"


@pytest.fixture
def model(tmp_path) -> Path:
    """sigma comes from the metadata, so that a config file can override it (the flag would win)."""
    return om.constant(tmp_path / "const.onnx", [0.7, 0.2, 0.1], shape=SHAPE,
                       metadata={"onnxcert.smoothing": {"sigma": 0.25}})


def _folder(root: Path, *bad: tuple[str, callable]) -> Path:
    """Two good images in class sub-folders 0 and 1, plus ``bad`` (relative path, builder)."""
    good_png(root / "0" / "a.png")
    good_png(root / "1" / "b.png", (30, 200, 30))
    for rel, make in bad:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        make(root / rel)
    return root


# ---------------------------------------------------------------- the table

# (id, builder of the CLI arguments after "run", exit code, pattern of the error line)
# Builders get (tmp_path, model, npy) and return [MODEL, INPUTS, *options].

def _mkdir(path: Path, files: dict[str, str] | None = None) -> Path:
    path.mkdir()
    for name, text in (files or {}).items():
        (path / name).write_text(text)
    return path


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _inputs_case(make_input):
    return lambda d, m, x: [m, make_input(d)]


def _model_case(make_model):
    return lambda d, m, x: [make_model(d), x]


def _yaml_case(text):
    def build(d, m, x):
        (d / "c.yaml").write_text(text)
        return [m, x, "-c", d / "c.yaml"]
    return build


def _ext_escape(d, m, x):
    return [external_data_model(d / "models", "../secret.bin", data_at=d / "secret.bin"), x]


def _ext_absolute(d, m, x):
    return [external_data_model(d / "models", str(d / "abs" / "secret.bin"), data_at=d / "abs" / "secret.bin"), x]


def _ext_symlink(d, m, x):
    (d / "outside").mkdir()
    (d / "models").mkdir()
    os.symlink(d / "outside", d / "models" / "link")
    return [external_data_model(d / "models", "link/secret.bin", data_at=d / "outside" / "secret.bin"), x]


def _labels_outside(d, m, x):
    _folder(d / "imgs", ("7/c.png", good_png))
    return [om.constant(d / "c3.onnx", [0.7, 0.2, 0.1], shape=(3, 4, 4)), d / "imgs"]


def _unknown_class_name(d, m, x):
    good_png(d / "imgs" / "cat" / "a.png")
    good_png(d / "imgs" / "dog" / "b.png")
    (d / "c.yaml").write_text("model:\n  classes: [cat, cow, eel]\n")
    return [m, d / "imgs", "-c", d / "c.yaml"]


def _existing_report(d, m, x):
    (d / "r.json").write_text("{}")
    return [m, x]


def _existing_journal(d, m, x):
    (d / "r.jsonl").write_text("{}\n")
    return [m, x]


def _strict(d, m, x):
    return [m, _folder(d / "imgs", ("1/c.png", truncated_png)), "--strict-inputs"]


def _all_corrupt(d, m, x):
    truncated_png(d / "imgs" / "a.png")
    not_an_image(d / "imgs" / "b.png")
    return [m, d / "imgs"]


def _npy(array):
    def build(d, m, x):
        np.save(d / "bad.npy", array, allow_pickle=True)
        return [m, d / "bad.npy"]
    return build


def _nan_npy():
    a = np.random.default_rng(0).random((2, *SHAPE)).astype(np.float32)
    a[1, 0, 0, 0] = np.nan
    return a


CASES = [
    # paths
    ("missing-path", _inputs_case(lambda d: d / "nope"), 2, r"'.*nope' does not exist"),
    ("empty-folder", _inputs_case(lambda d: _mkdir(d / "e")), 2, r"folder '.*e' is empty"),
    ("folder-without-images", _inputs_case(lambda d: _mkdir(d / "t", {"a.txt": "x", "labels.csv": "file,label\n"})),
     2, "holds no images"),
    # images given one at a time, or a folder with --strict-inputs, or a folder of nothing but bad images
    ("truncated-image", _inputs_case(lambda d: truncated_png(d / "t.png")), 2,
     r"image '.*t.png' cannot be decoded \(OSError: image file is truncated"),
    ("not-an-image", _inputs_case(lambda d: not_an_image(d / "f.png")), 2,
     r"image '.*f.png' cannot be decoded \(not an image format Pillow reads\)"),
    ("decompression-bomb", _inputs_case(lambda d: png_header(d / "bomb.png", 20_000, 20_000)), 2,
     r"'.*bomb.png' is too large to decode safely"),
    ("decompression-bomb-warning-range", _inputs_case(lambda d: png_header(d / "warn.png", 10_000, 10_000)), 2,
     r"'.*warn.png' is too large to decode safely"),
    ("strict-inputs", _strict, 2, r"image '.*c.png' cannot be decoded"),
    ("folder-of-corrupt-images", _all_corrupt, 2, r"none of the 2 image\(s\) in '.*imgs' can be decoded"),
    ("npy-with-nan", _npy(_nan_npy()), 2, r"bad.npy: x holds NaN or inf"),
    ("npy-out-of-range", _npy(np.full((2, *SHAPE), 255.0, np.float32)), 2, r"pixel values in \[0, 1\]"),
    ("npy-of-objects", _npy(np.array([{"a": 1}, None], dtype=object)), 2, r"not a readable .npy file"),
    # models
    ("garbage-model", _model_case(lambda d: _write(d / "g.onnx", bytes(range(256)) * 4)), 3,
     "not a readable ONNX model"),
    ("truncated-model", _model_case(lambda d: truncated_model(d / "t.onnx")), 3, "not a readable ONNX model"),
    ("output-rank-4", _model_case(lambda d: om.rank4_output(d / "r4.onnx", SHAPE)), 3,
     r"output 'y' has shape \[N, 3, 4, 4\]; onnxcert needs class scores of shape \[N, k\]"),
    ("one-class-output", _model_case(lambda d: one_class_model(d / "k1.onnx")), 3, r"\[N, 1\].*k >= 2"),
    ("several-inputs-unnamed", _model_case(lambda d: om.two_inputs(d / "two.onnx")), 3,
     "2 inputs .*--input-name"),
    ("several-outputs-unnamed", _model_case(lambda d: two_score_outputs(d / "two.onnx")), 3,
     r"2 outputs \(a, b\); name the class scores with --output-name"),
    ("nan-output", _model_case(lambda d: om.nan_output(d / "nan.onnx", SHAPE)), 3,
     r"output holds NaN or inf for input 0 \(.*x.npy\[0\]\); no certificate"),
    ("inf-output", _model_case(lambda d: om.constant(d / "inf.onnx", [np.inf, 0.0, 0.0], shape=SHAPE)), 3,
     r"NaN or inf for input 0"),
    ("external-data-dotdot", _ext_escape, 3, r"tensor 'C' keeps its data at '\.\./secret\.bin', outside the model's folder"),
    ("external-data-absolute", _ext_absolute, 3, r"tensor 'C' keeps its data at '/.*secret\.bin', outside the model's folder"),
    ("external-data-symlink", _ext_symlink, 3, r"'link/secret\.bin', outside the model's folder"),
    ("custom-op-domain", _model_case(lambda d: custom_domain_model(d / "custom.onnx")), 3,
     r"operator\(s\) Frobnicate of the custom domain 'com.example.ops'"),
    ("unknown-standard-op", _model_case(lambda d: unknown_standard_op_model(d / "u.onnx")), 3,
     "onnxruntime cannot load .*u.onnx"),
    # config files
    ("yaml-unknown-key", _yaml_case("smoothing:\n  sigam: 0.25\n"), 2, r"unknown key smoothing.sigam \(did you mean 'sigma'\?\)"),
    ("yaml-unknown-section", _yaml_case("smoothin:\n  sigma: 0.25\n"), 2, r"unknown section 'smoothin' \(did you mean 'smoothing'\?\)"),
    ("yaml-sigma-string", _yaml_case("smoothing:\n  sigma: big\n"), 2, r"smoothing.sigma must be a finite number, got 'big'"),
    ("yaml-n-float", _yaml_case("smoothing:\n  n: 100.5\n"), 2, r"smoothing.n must be an integer, got 100.5"),
    ("yaml-sigma-zero", _yaml_case("smoothing:\n  sigma: 0\n"), 2, r"smoothing.sigma must be > 0, got 0"),
    ("yaml-sigma-negative", _yaml_case("smoothing:\n  sigma: -0.5\n"), 2, r"smoothing.sigma must be > 0"),
    ("yaml-sigma-nan", _yaml_case("smoothing:\n  sigma: .nan\n"), 2, r"smoothing.sigma must be a finite number"),
    ("yaml-alpha-one", _yaml_case("smoothing:\n  alpha: 1\n"), 2, r"smoothing.alpha must be in \(0, 1\), got 1"),
    ("yaml-alpha-zero", _yaml_case("smoothing:\n  alpha: 0.0\n"), 2, r"smoothing.alpha must be in \(0, 1\)"),
    ("yaml-n0-zero", _yaml_case("smoothing:\n  n0: 0\n"), 2, r"smoothing.n0 must be >= 1, got 0"),
    ("yaml-n-one", _yaml_case("smoothing:\n  n: 1\n"), 2, r"smoothing.n must be >= 2, got 1"),
    ("yaml-score-threshold-1", _yaml_case("certify:\n  thresholds: {score: [0.5, 1.0]}\n"), 2,
     r"certify.thresholds.score must lie in \(0, 1\), got 1.0"),
    ("yaml-margin-threshold--1", _yaml_case("certify:\n  thresholds: {margin: [-1]}\n"), 2,
     r"certify.thresholds.margin must lie in \(-1, 1\)"),
    ("yaml-radii-negative", _yaml_case("certify:\n  radii: [0, -0.5]\n"), 2, r"certify.radii must be >= 0"),
    ("yaml-not-a-mapping", _yaml_case("- sigma\n- 0.25\n"), 2, "must hold a mapping of sections, got list"),
    ("yaml-syntax", _yaml_case("smoothing: {sigma: [0.25\n"), 2, r"is not valid YAML at line"),
    ("yaml-python-tag", _yaml_case("smoothing: !!python/object/apply:os.system ['touch pwned']\n"), 2,
     "is not valid YAML"),
    ("yaml-missing-file", lambda d, m, x: [m, x, "-c", d / "nope.yaml"], 2, r"config file '.*nope.yaml' does not exist"),
    # labels
    ("label-outside-classes", _labels_outside, 2, r"label 7 of .*c.png is outside the model's classes 0..2"),
    ("class-name-not-in-classes", _unknown_class_name, 2, r"label 'dog' .* must be one of model.classes \(cat, cow, eel\)"),
    ("classes-and-k-disagree", _yaml_case("model:\n  classes: [a, b, c, d]\n"), 2,
     "model.classes lists 4 names but the model outputs k=3 classes"),
    # overwriting
    ("existing-report", _existing_report, 2, r"'.*r.json' exists; pass --force to overwrite it"),
    ("existing-journal", _existing_journal, 2, r"'.*r.jsonl' holds an earlier run's journal; pass --resume"),
]


@pytest.mark.parametrize("build, code, pattern", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_gets_one_line_and_its_exit_code(tmp_path, model, npy, monkeypatch, build, code, pattern):
    monkeypatch.chdir(tmp_path)
    args = build(tmp_path, model, npy)
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "r.json", tmp_path / "r.jsonl") if p.exists()}
    # a config file's cases fail before any sampling; flags would override what the file says
    flags = () if "-c" in args else ("--sigma", 0.25, *FAST)
    res = cli("run", *args, *flags, "-o", tmp_path / "r.json")
    assert_one_error(res, code, pattern)
    report = tmp_path / "r.json"
    assert not report.exists() or before.get(report) == report.stat().st_mtime_ns  # never written
    assert not (tmp_path / "pwned").exists()


def test_case_count():
    """The closing note of issue 8 reports this number; keep it honest."""
    assert len(CASES) == 48


# ---------------------------------------------------------------- skipped images


def test_bad_images_in_a_folder_are_skipped_listed_and_counted(tmp_path):
    root = _folder(tmp_path / "imgs", ("0/t.png", truncated_png), ("1/f.png", not_an_image),
                   ("1/z.png", lambda p: png_header(p, 20_000, 20_000)))
    model = om.channel_means(tmp_path / "m.onnx", size=(4, 4))
    res = cli("run", model, root, "--sigma", 0.25, *FAST, "-o", tmp_path / "r.json", "-o", tmp_path / "r.csv")
    assert res.exit_code == 0, res.output
    assert "Traceback" not in res.output
    report = json.loads((tmp_path / "r.json").read_text())
    skipped = {Path(s["input"]).name: s["reason"] for s in report["skipped"]}
    assert set(skipped) == {"t.png", "f.png", "z.png"}
    assert "image file is truncated" in skipped["t.png"] and "not an image format" in skipped["f.png"]
    assert "too large" in skipped["z.png"]
    assert [Path(r["input"]).name for r in report["records"]] == ["a.png", "b.png"]
    assert report["count"] == report["total"] == 2 and report["complete"] is True
    assert report["provenance"]["inputs_found"] == 5
    assert [r["index"] for r in report["records"]] == [0, 2]  # indices (and so seeds) of the whole folder
    assert len((tmp_path / "r.csv").read_text().splitlines()) == 3
    assert "3 input(s) skipped" in res.output
    assert len([ln for ln in res.output.splitlines() if ln.startswith("onnxcert: skipping:")]) == 3


def test_skipping_does_not_change_the_other_records(tmp_path):
    """A bad image is skipped in place: the good ones keep their index, noise and record."""
    root = _folder(tmp_path / "imgs")
    model = om.channel_means(tmp_path / "m.onnx", size=(4, 4))
    clean = cli("run", model, root, "--sigma", 0.25, *FAST, "-o", tmp_path / "a.json")
    assert clean.exit_code == 0, clean.output
    not_an_image(root / "1" / "zz.png")  # sorts last: indices 0 and 1 are unchanged
    dirty = cli("run", model, root, "--sigma", 0.25, *FAST, "-o", tmp_path / "b.json")
    assert dirty.exit_code == 0, dirty.output
    a, b = (json.loads((tmp_path / f).read_text()) for f in ("a.json", "b.json"))
    assert a["records"] == b["records"] and len(b["skipped"]) == 1


# ---------------------------------------------------------------- legitimate neighbours of the hostile cases


def test_external_data_inside_the_model_folder_is_fine(tmp_path, npy):
    model = external_data_model(tmp_path / "models", "weights/c.bin", data_at=tmp_path / "models" / "weights" / "c.bin")
    res = cli("run", model, npy, "--sigma", 0.25, *FAST, "-o", tmp_path / "r.json")
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "r.json").read_text())["records"][0]["prediction"] == 0


def test_model_local_function_in_a_custom_domain_is_fine(tmp_path):
    """onnxruntime inlines functions defined in the model, whatever their domain."""
    from onnxcert.modelcheck import check_domains

    fn = helper.make_function("com.example.fns", "Double", ["x"], ["y"], [helper.make_node("Add", ["x", "x"], ["y"])],
                              [helper.make_opsetid("", om.OPSET)])
    graph = helper.make_graph([helper.make_node("Double", ["a"], ["b"], domain="com.example.fns")], "g",
                              [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", 3])],
                              [helper.make_tensor_value_info("b", TensorProto.FLOAT, ["N", 3])])
    model = helper.make_model(graph, functions=[fn], opset_imports=[helper.make_opsetid("", om.OPSET),
                                                                    helper.make_opsetid("com.example.fns", 1)])
    check_domains(model)  # no error
    del model.functions[:]
    with pytest.raises(onnxcert.ModelError, match="Double of the custom domain 'com.example.fns'"):
        check_domains(model)


def test_external_data_in_a_subgraph_is_checked():
    from onnxcert.modelcheck import check_external_data

    inner_t = numpy_helper.from_array(np.ones(3, np.float32), "k")
    inner_t.ClearField("raw_data")
    inner_t.data_location = TensorProto.EXTERNAL
    entry = inner_t.external_data.add()
    entry.key, entry.value = "location", "../../x.bin"
    body = helper.make_graph([helper.make_node("Constant", [], ["c"], value=inner_t)], "body", [],
                             [helper.make_tensor_value_info("c", TensorProto.FLOAT, [3])])
    node = helper.make_node("If", ["cond"], ["out"], then_branch=body, else_branch=body)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [3])])
    with pytest.raises(onnxcert.ModelError, match=r"'\.\./\.\./x\.bin', outside the model's folder"):
        check_external_data(helper.make_model(graph), Path("/tmp"))


# ---------------------------------------------------------------- config: YAML null, safe_load


def test_yaml_null_means_not_set(tmp_path):
    """A null in a higher layer leaves the lower layer's value (the model's metadata here)."""
    (tmp_path / "c.yaml").write_text("smoothing:\n  sigma: null\n  n: null\n"
                                     "certify:\n  thresholds: {score: null, margin: [0.5]}\n")
    yaml_layer = load_yaml(tmp_path / "c.yaml")
    meta = {"smoothing": {"sigma": 0.12, "n": 500}, "certify": {"thresholds": {"score": [0.9]}}}
    cfg = build_config(meta, yaml_layer)
    assert cfg.settings.sigma == 0.12 and cfg.settings.n == 500
    assert cfg.settings.thresholds == {"score": (0.9,), "margin": (0.5,)}
    assert merge({"model": {"classes": ["a", "b"]}}, {"model": {"classes": None}})["model"]["classes"] == ["a", "b"]
    with pytest.raises(onnxcert.ConfigError, match="sigma is required"):
        build_config(yaml_layer)  # null everywhere is still "not set"


def test_yaml_null_on_the_command_line_path(tmp_path):
    meta = {"onnxcert.smoothing": {"sigma": 0.3}}
    model = om.constant(tmp_path / "m.onnx", [0.7, 0.2, 0.1], shape=SHAPE, metadata=meta)
    np.save(tmp_path / "x.npy", np.zeros((1, *SHAPE), np.float32))
    (tmp_path / "c.yaml").write_text("smoothing:\n  sigma: null\n  batch_size: null\n")
    res = cli("run", model, tmp_path / "x.npy", "-c", tmp_path / "c.yaml", *FAST, "-o", tmp_path / "r.json", "-q")
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "r.json").read_text())["settings"]["sigma"] == 0.3


def test_yaml_is_loaded_with_safe_load(tmp_path, monkeypatch):
    """A python tag is refused before it can run anything (the file would exist otherwise)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.yaml").write_text("smoothing: !!python/object/apply:os.system ['touch pwned']\n")
    with pytest.raises(onnxcert.ConfigError, match="not valid YAML at line 1"):
        load_yaml(tmp_path / "c.yaml")
    assert not (tmp_path / "pwned").exists()

