"""runtime.py: providers, graph inspection, batch handling, dtype casts, one-line model errors."""

from __future__ import annotations

import logging
import sys

import numpy as np
import pytest

import onnx_models as om
from onnxcert.errors import ConfigError, DependencyError, ModelError
from onnxcert.model_info import describe_model, select_input, select_output
from onnxcert.runtime import CPU, CUDA, choose_providers, import_ort, open_classifier, session_settings


# ---------------------------------------------------------------- providers (pure, no GPU needed)


@pytest.mark.parametrize("device, available, expected", [
    ("auto", [CUDA, CPU], [CUDA, CPU]),
    ("auto", ["AzureExecutionProvider", CPU], [CPU]),
    ("cpu", [CUDA, CPU], [CPU]),
    ("cuda", [CUDA, CPU], [CUDA, CPU]),
])
def test_choose_providers(device, available, expected):
    assert choose_providers(device, available) == expected


def test_cuda_without_cuda_provider_is_a_clear_error():
    with pytest.raises(ConfigError, match="--device cuda.*CUDAExecutionProvider.*onnxcert\\[gpu\\]"):
        choose_providers("cuda", [CPU])


def test_unknown_device():
    with pytest.raises(ConfigError, match="'tpu'"):
        choose_providers("tpu", [CPU])


def test_session_settings_are_explicit():
    s = session_settings(3)
    assert s == {"intra_op_num_threads": 3, "inter_op_num_threads": 1, "execution_mode": "sequential",
                 "graph_optimization_level": "all", "allow_spinning": False, "lanes": 1}
    assert session_settings()["intra_op_num_threads"] >= 1
    with pytest.raises(ConfigError, match="0"):
        session_settings(0)
    # lanes share the threads: each lane's session runs threads // lanes intra-op threads, at least one
    assert session_settings(4, 2)["intra_op_num_threads"] == 2 and session_settings(4, 2)["lanes"] == 2
    assert session_settings(3, 2)["intra_op_num_threads"] == 1
    assert session_settings(2, 4)["intra_op_num_threads"] == 1


def test_choose_lanes():
    from onnxcert.runtime import LANE_WEIGHT_LIMIT, choose_lanes

    small, big = LANE_WEIGHT_LIMIT, LANE_WEIGHT_LIMIT + 1
    assert choose_lanes(2, provider=CPU, weight_bytes=small) == 2
    assert choose_lanes(4, provider=CPU, weight_bytes=0) == 4
    assert choose_lanes(2, provider=CPU, weight_bytes=big) == 1  # ResNet-50-sized: one pass, all threads
    assert choose_lanes(1, provider=CPU, weight_bytes=0) == 1
    assert choose_lanes(2, provider=CUDA, weight_bytes=0) == 1
    assert choose_lanes(2, provider=CPU, weight_bytes=big, lanes=3) == 3  # the user's choice wins
    assert choose_lanes(4, provider=CPU, weight_bytes=0, lanes=1) == 1
    with pytest.raises(ConfigError, match="--lanes must be >= 1, got 0"):
        choose_lanes(2, provider=CPU, weight_bytes=0, lanes=0)


def test_weight_bytes_counts_initializers_and_constants():
    import onnx
    from onnx import TensorProto, helper

    from onnxcert.model_info import weight_bytes

    w = helper.make_tensor("w", TensorProto.FLOAT, [3, 5], [0.0] * 15)
    h = helper.make_tensor("h", TensorProto.FLOAT16, [7], [0.0] * 7)
    const = helper.make_node("Constant", [], ["k"], value=helper.make_tensor("k", TensorProto.DOUBLE, [2, 2], [0.0] * 4))
    node = helper.make_node("Add", ["x", "k"], ["y"])
    g = helper.make_graph([const, node], "g", [helper.make_tensor_value_info("x", TensorProto.DOUBLE, [2, 2])],
                          [helper.make_tensor_value_info("y", TensorProto.DOUBLE, [2, 2])], initializer=[w, h])
    assert weight_bytes(helper.make_model(g)) == 15 * 4 + 7 * 2 + 4 * 8
    assert weight_bytes(onnx.ModelProto()) == 0


def test_open_classifier_chooses_lanes_for_small_models(tmp_path):
    path = om.channel_means(tmp_path / "m.onnx")
    clf = open_classifier(path, device="cpu", threads=2)
    assert clf.session_options["lanes"] == 2 and clf.session_options["intra_op_num_threads"] == 1
    one = open_classifier(path, device="cpu", threads=2, lanes=1)
    assert one.session_options["lanes"] == 1 and one.session_options["intra_op_num_threads"] == 2
    assert open_classifier(path, device="cpu", threads=1).session_options["lanes"] == 1


def test_missing_onnxruntime_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    with pytest.raises(DependencyError, match=r"pip install 'onnxcert\[cpu\]'"):
        import_ort()


# ---------------------------------------------------------------- graph inspection


def test_describe_model(tmp_path):
    path = om.channel_means(tmp_path / "m.onnx", metadata={"onnxcert.smoothing": {"sigma": 0.5}})
    info = describe_model(path)
    assert [t.describe() for t in info.inputs] == ["input: float32 [N, 3, 6, 5]"]
    assert [t.describe() for t in info.outputs] == ["scores: float32 [N, 3]"]
    assert info.opsets == {"ai.onnx": om.OPSET}
    assert info.metadata == {"onnxcert.smoothing": '{"sigma": 0.5}'}
    assert len(info.sha256) == 64


def test_several_inputs_need_a_name(tmp_path):
    info = describe_model(om.two_inputs(tmp_path / "two.onnx"))
    with pytest.raises(ModelError, match="2 inputs \\(a, b\\).*--input-name"):
        select_input(info)
    assert select_input(info, "b").name == "b"
    with pytest.raises(ModelError, match="no input named 'c'.*a, b"):
        select_input(info, "c")


def test_output_must_be_n_by_k(tmp_path):
    info = describe_model(om.rank4_output(tmp_path / "r4.onnx"))
    with pytest.raises(ModelError, match=r"output 'y' has shape \[N, 3, 4, 4\].*\[N, k\]"):
        select_output(info)


@pytest.mark.parametrize("content", [b"", b"this is not an onnx model at all" * 10, b"\x08\x07\x12\xff\xff"])
def test_garbage_files_are_model_errors(tmp_path, content):
    path = tmp_path / "bad.onnx"
    path.write_bytes(content)
    with pytest.raises(ModelError) as err:
        open_classifier(path)
    assert "bad.onnx" in str(err.value) and "\n" not in str(err.value)


def test_truncated_model_is_a_model_error(tmp_path):
    good = om.linear_threshold(tmp_path / "good.onnx", np.ones(48), 1.0).read_bytes()
    path = tmp_path / "cut.onnx"
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(ModelError, match="cut.onnx"):
        open_classifier(path)


def test_missing_model_file(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        open_classifier(tmp_path / "nope.onnx")


# ---------------------------------------------------------------- running


def _probe(shape=(3, 6, 5), count=9, seed=3):
    return np.random.default_rng(seed).random((count, *shape), dtype=np.float32)


def test_dynamic_batch_runs_whole_batches(tmp_path):
    clf = open_classifier(om.channel_means(tmp_path / "m.onnx"), device="cpu", threads=1)
    x = _probe()
    y = clf(x)
    expected = 40.0 * x.mean(axis=(2, 3)) - 20.0  # the graph's closed form
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-4)
    assert clf.batch_mode == "dynamic" and clf.provider == CPU and clf.num_classes == 3


def test_fixed_batch_of_one_is_made_dynamic(tmp_path):
    clf = open_classifier(om.channel_means(tmp_path / "b1.onnx", batch=1), device="cpu")
    ref = open_classifier(om.channel_means(tmp_path / "m.onnx"), device="cpu")
    x = _probe()
    np.testing.assert_allclose(clf(x), ref(x), rtol=1e-6, atol=1e-5)
    assert clf.batch_mode == "made-dynamic"


def test_fixed_batch_that_cannot_be_made_dynamic_runs_one_at_a_time(tmp_path):
    clf = open_classifier(om.channel_means(tmp_path / "fr.onnx", batch=1, fixed_reshape=True), device="cpu")
    ref = open_classifier(om.channel_means(tmp_path / "m.onnx"), device="cpu")
    x = _probe()
    seen = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: seen.append(record.getMessage())
    logging.getLogger("onnxcert").addHandler(handler)  # the CLI's logger does not propagate
    try:
        y = clf(x)
    finally:
        logging.getLogger("onnxcert").removeHandler(handler)
    np.testing.assert_allclose(y, ref(x), rtol=1e-6, atol=1e-5)
    assert clf.batch_mode == "fixed"
    assert any("one sample at a time" in m for m in seen)


def test_float16_model_gets_float16_input(tmp_path):
    clf = open_classifier(om.channel_means(tmp_path / "h.onnx", float16=True), device="cpu")
    assert clf.input.dtype == "float16"
    x = _probe()
    y = clf(x)
    assert y.dtype == np.float32  # float16 output widened
    np.testing.assert_allclose(y, 40.0 * x.mean(axis=(2, 3)) - 20.0, atol=0.05)  # float16 resolution


def test_wrong_sample_shape_is_a_model_error(tmp_path):
    clf = open_classifier(om.channel_means(tmp_path / "m.onnx"), device="cpu")
    with pytest.raises(ModelError, match=r"batch of shape \[2, 3, 7, 7\]"):
        clf(np.zeros((2, 3, 7, 7), np.float32))
