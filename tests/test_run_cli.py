"""`onnxcert run` / `onnxcert inspect` end to end, on tiny ONNX models with known smoothed outputs.

Golden values:
- constant model: every sample's score is v, so the label certificate is Clopper-Pearson with
  n of n votes (p_lower = alpha^(1/n)), and the bounds are Theorems 1-2 of Kumar et al. 2020 in
  closed form (formulas in each test);
- linear threshold model: the smoothed class-0 score is Phi((w.x - t) / (sigma ||w||)) and its
  worst case within radius R is Phi(z0 - R / sigma) (Cohen et al. 2019, the halfspace case).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.stats import norm

import onnx_models as om
from cli_helpers import cli, error_line as _error_line
import onnxcert
import onnxcert.cli  # noqa: F401  (registers every command)
from onnxcert.config import build_config
from onnxcert.runtime import CUDA, import_ort


def _load(path):
    return json.loads(Path(path).read_text())


SHAPE = (3, 4, 4)


@pytest.fixture
def npy(tmp_path):
    x = np.random.default_rng(0).random((3, *SHAPE)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    return tmp_path / "x.npy"


@pytest.fixture
def images(tmp_path):
    """Two 12x10 images per class: class j is bright in channel j (RGB), in sub-folder j."""
    root = tmp_path / "images"
    for label in range(3):
        for i in range(2):
            color = [30, 30, 30]
            color[label] = 220 + 10 * i
            (root / str(label)).mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((10, 12, 3), color, np.uint8)).save(root / str(label) / f"{i}.png")
    return root


FAST = ("--n0", "20", "--n", "200", "--methods", "naive,cdf-dkw")


# ---------------------------------------------------------------- closed forms


def test_constant_model_matches_closed_forms(tmp_path, npy):
    probs = np.array([0.9, 0.06, 0.04], np.float32)
    model = om.constant(tmp_path / "const.onnx", probs)
    n, alpha, sigma = 1000, 0.001, 0.5
    res = cli("run", model, npy, "--sigma", sigma, "--n", n, "--n0", 20, "--alpha", alpha,
              "--methods", "naive,cdf-dkw", "--score-thresholds", "0.5,0.8", "--margin-thresholds", "0,0.5",
              "-o", tmp_path / "r.json", "-q")
    assert res.exit_code == 0, res.output
    report = _load(tmp_path / "r.json")
    assert report["settings"]["output_kind"] == "probabilities"
    v, m = float(probs[0]), float(probs[0]) - float(probs[1])
    eps = math.sqrt(math.log(1 / alpha) / (2 * n))  # Hoeffding = one-sided DKW
    for rec in report["records"]:
        assert rec["prediction"] == 0
        # Clopper-Pearson with n of n successes: p_lower^n = alpha
        assert rec["label_certificate"]["p_lower"] == pytest.approx(alpha ** (1 / n), rel=1e-9)
        assert rec["label_certificate"]["radius"] == pytest.approx(sigma * norm.ppf(alpha ** (1 / n)), rel=1e-7)
        score, margin = rec["confidence"]["score"], rec["confidence"]["margin"]
        assert score["mean"] == pytest.approx(v, abs=1e-12)
        for j, c in enumerate([0.5, 0.8]):
            # cdf-dkw: lower(R) = v * Phi(Phi^-1(1 - eps) - R / sigma)
            assert score["cdf-dkw"]["radius"][j] == pytest.approx(sigma * (norm.isf(eps) - norm.ppf(c / v)), rel=1e-7)
            # naive: lower(R) = Phi(Phi^-1(v - eps) - R / sigma), (a, b) = (0, 1)
            assert score["naive"]["radius"][j] == pytest.approx(sigma * (norm.ppf(v - eps) - norm.ppf(c)), rel=1e-7)
        for j, c in enumerate([0.0, 0.5]):
            # margin in (a, b) = (-1, 1): lower(R) = -1 + (m + 1) Phi(Phi^-1(1 - eps) - R / sigma)
            expected = sigma * (norm.isf(eps) - norm.ppf((c + 1) / (m + 1)))
            assert margin["cdf-dkw"]["radius"][j] == pytest.approx(expected, rel=1e-7)


def _linear_case(tmp_path, sigma=0.25, z0=0.8):
    rng = np.random.default_rng(1)
    w = rng.normal(size=int(np.prod(SHAPE)))
    x = rng.random(SHAPE).astype(np.float32)
    t = float(w @ x.reshape(-1).astype(np.float64)) - z0 * sigma * float(np.linalg.norm(w))
    meta = {"onnxcert.preprocess": {"mean": [0.5], "std": [0.25]}}
    model = om.linear_threshold(tmp_path / "lin.onnx", w, t, shape=SHAPE, mean=0.5, std=0.25, metadata=meta)
    return model, x


def test_linear_threshold_bounds_hold_and_are_tight(tmp_path):
    """The model sees (x + noise - 0.5) / 0.25; had the noise gone in after normalization, the
    smoothed score would be Phi(3.2) = 0.9993 instead of Phi(0.8) = 0.788 and the validity check
    below would fail."""
    sigma, z0, n, alpha = 0.25, 0.8, 1000, 0.001
    model, x = _linear_case(tmp_path, sigma, z0)
    radii = [0.0, 0.1, 0.25, 0.5]
    result = onnxcert.certify_model(model, x[None], sigma=sigma, n=n, n0=50, alpha=alpha, radii=radii)
    rec = result.report["records"][0]
    p = norm.cdf(z0)
    assert rec["prediction"] == 0
    assert abs(rec["confidence"]["score"]["mean"] - p) < 4 * math.sqrt(p * (1 - p) / n)
    eps = math.sqrt(math.log(1 / alpha) / (2 * n))
    for method in ("naive", "cdf-dkw", "cdf-bj"):
        lower = rec["confidence"]["score"][method]["lower_bounds"]
        margin = rec["confidence"]["margin"][method]["lower_bounds"]
        for r, lb, mlb in zip(radii, lower, margin):
            truth = norm.cdf(z0 - r / sigma)  # the smoothed score at the worst x' with ||x' - x|| = r
            assert lb <= truth + 1e-12, (method, r)
            assert mlb <= 2 * truth - 1 + 1e-12, (method, r)  # two classes: margin = 2 score - 1
            if method != "cdf-bj":
                # Bernoulli scores: both bounds are Phi(Phi^-1(mean - eps) - R/sigma); mean >= p - eps here
                assert lb >= norm.cdf(norm.ppf(p - 2 * eps) - r / sigma) - 1e-12, (method, r)
    assert result.report["settings"]["preprocess"]["std"] == [0.25]  # from the model's metadata


def test_same_seed_same_report_across_batch_sizes(tmp_path):
    model, x = _linear_case(tmp_path)
    np.save(tmp_path / "x.npy", np.stack([x, np.clip(x + 0.1, 0, 1), np.clip(x - 0.1, 0, 1)]))
    records = []
    for b in ("1", "7", "200"):
        res = cli("run", model, tmp_path / "x.npy", "--sigma", 0.25, *FAST, "--seed", 3,
                  "--batch-size", b, "-o", tmp_path / f"b{b}.json", "-q")
        assert res.exit_code == 0, res.output
        records.append(_load(tmp_path / f"b{b}.json")["records"])
    assert records[0] == records[1] == records[2]  # 0/1 scores: bitwise identical
    other = cli("run", model, tmp_path / "x.npy", "--sigma", 0.25, *FAST, "--seed", 4, "-o", tmp_path / "s4.json", "-q")
    assert other.exit_code == 0 and _load(tmp_path / "s4.json")["records"] != records[0]


def _close(a, b, tol):
    """Records equal in every discrete field, and in every number up to ``tol``."""
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _close(a[k], b[k], tol)
    elif isinstance(a, list):
        assert len(a) == len(b)
        for u, v in zip(a, b):
            _close(u, v, tol)
    elif isinstance(a, float) and isinstance(b, float):
        assert a == pytest.approx(b, abs=tol)
    else:
        assert a == b


# ---------------------------------------------------------------- third-party-style models


def _run_images(tmp_path, model, images, *extra, name="r.json"):
    res = cli("run", model, images, "--sigma", 0.25, *FAST, "-o", tmp_path / name, "--force", *extra)
    assert res.exit_code == 0, res.output
    return _load(tmp_path / name), res.output


def test_images_end_to_end_with_labels(tmp_path, images):
    report, output = _run_images(tmp_path, om.channel_means(tmp_path / "m.onnx"), images)
    assert [r["label"] for r in report["records"]] == [0, 0, 1, 1, 2, 2]
    assert all(r["correct"] for r in report["records"])
    assert report["records"][0]["input"].endswith(os.path.join("0", "0.png"))
    assert report["settings"]["output_kind"] == "logits"
    assert report["settings"]["preprocess"]["size"] == [6, 5]  # from the model's input shape
    assert report["summary"]["score"]["cdf-dkw"][0][0] == 1.0
    assert "wrote" in output


def test_report_provenance(tmp_path, images):
    model = om.channel_means(tmp_path / "m.onnx")
    report, _ = _run_images(tmp_path, model, images, "--threads", "1", "--batch-size", "64")
    prov = report["provenance"]
    assert report["model"]["sha256"] == hashlib.sha256(model.read_bytes()).hexdigest()
    assert prov["provider"] == "CPUExecutionProvider"
    assert prov["session_options"]["intra_op_num_threads"] == 1
    assert prov["onnxruntime_version"] == import_ort().__version__
    assert prov["numpy_version"] == np.__version__
    assert prov["samples"] == 6 * (20 + 200) and prov["samples_per_second"] > 0 and prov["wall_time_s"] >= 0
    assert report["settings"]["batch_size"] == 64 and not prov["batch_size_automatic"]
    assert "[0, 1] pixel space" in report["settings"]["noise"]
    assert report["onnxcert_version"] == onnxcert.__version__


def test_nhwc_model(tmp_path, images):
    base, _ = _run_images(tmp_path, om.channel_means(tmp_path / "m.onnx"), images)
    report, _ = _run_images(tmp_path, om.channel_means(tmp_path / "nhwc.onnx", layout="NHWC"), images, name="h.json")
    assert report["settings"]["preprocess"]["layout"] == "NHWC"  # read from [N, 6, 5, 3]
    assert [r["prediction"] for r in report["records"]] == [r["prediction"] for r in base["records"]]
    assert all(r["correct"] for r in report["records"])


def test_bgr_model(tmp_path, images):
    (tmp_path / "bgr.yaml").write_text("preprocess:\n  channels: BGR\n")
    report, _ = _run_images(tmp_path, om.channel_means(tmp_path / "m.onnx"), images, "-c", tmp_path / "bgr.yaml")
    # a BGR model's channel 0 is blue: red images (label 0) come out as class 2 and vice versa
    assert [r["prediction"] for r in report["records"]] == [2, 2, 1, 1, 0, 0]


def test_fixed_batch_models(tmp_path, images):
    base, _ = _run_images(tmp_path, om.channel_means(tmp_path / "m.onnx"), images)
    made, _ = _run_images(tmp_path, om.channel_means(tmp_path / "b1.onnx", batch=1), images, name="b1.json")
    fixed, out = _run_images(tmp_path, om.channel_means(tmp_path / "f.onnx", batch=1, fixed_reshape=True), images,
                             name="f.json")
    assert made["provenance"]["batch_mode"] == "made-dynamic"
    assert fixed["provenance"]["batch_mode"] == "fixed" and "one sample at a time" in out
    # the same noise reaches every variant; onnxruntime's reductions may differ in the last bit
    _close(made["records"], base["records"], 1e-6)
    _close(fixed["records"], base["records"], 1e-6)


def test_softmax_and_logits_models_agree(tmp_path, images):
    logits, _ = _run_images(tmp_path, om.channel_means(tmp_path / "m.onnx"), images)
    probs, _ = _run_images(tmp_path, om.channel_means(tmp_path / "s.onnx", softmax=True), images, name="s.json")
    assert probs["settings"]["output_kind"] == "probabilities"
    _close(probs["records"], logits["records"], 1e-5)
    forced, _ = _run_images(tmp_path, om.channel_means(tmp_path / "s.onnx", softmax=True), images,
                            "--output-kind", "logits", name="forced.json")
    assert forced["settings"]["output_kind"] == "logits"  # softmax of probabilities: much flatter
    assert forced["records"][0]["confidence"]["score"]["mean"] < logits["records"][0]["confidence"]["score"]["mean"] - 0.3


def test_float16_model(tmp_path, images):
    base, _ = _run_images(tmp_path, om.channel_means(tmp_path / "m.onnx"), images)
    half, _ = _run_images(tmp_path, om.channel_means(tmp_path / "h.onnx", float16=True), images, name="h.json")
    assert [r["prediction"] for r in half["records"]] == [r["prediction"] for r in base["records"]]
    for a, b in zip(half["records"], base["records"]):
        assert a["confidence"]["score"]["mean"] == pytest.approx(b["confidence"]["score"]["mean"], abs=0.02)


def test_api_on_arrays_writes_nothing_unless_asked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = om.channel_means(tmp_path / "m.onnx")
    x = np.zeros((2, 3, 6, 5), np.float32)
    x[0, 1], x[1, 2] = 0.9, 0.9
    cfg = build_config({"smoothing": {"sigma": 0.25, "n": 200, "n0": 20}, "certify": {"methods": ["naive"]}})
    result = onnxcert.certify_model(model, x, labels=[1, 0], config=cfg)
    assert [r.prediction for r in result.records] == [1, 2]
    assert [r.correct for r in result.records] == [True, False]
    assert list(tmp_path.iterdir()) == [model]
    onnxcert.certify_model(model, x, config=cfg, output=tmp_path / "r.csv")
    header = (tmp_path / "r.csv").read_text().splitlines()[0]
    assert header.startswith("index,input,label,prediction,correct,label_radius,score_mean,score_naive_radius@0.5")


# ---------------------------------------------------------------- one-line errors


@pytest.mark.parametrize("make, code, message", [
    (lambda d: (d / "g.onnx").write_bytes(b"garbage" * 20) and d / "g.onnx", 3, "not a readable ONNX model"),
    (lambda d: om.two_inputs(d / "two.onnx"), 3, "2 inputs .*--input-name"),
    (lambda d: om.rank4_output(d / "r4.onnx"), 3, r"shape \[N, 3, 4, 4\]"),
    (lambda d: om.nan_output(d / "nan.onnx"), 3, r"NaN or inf for input 0"),
    (lambda d: d / "missing.onnx", 3, "does not exist"),
])
def test_bad_models(tmp_path, npy, make, code, message):
    res = cli("run", make(tmp_path), npy, "--sigma", 0.25, *FAST, "-o", tmp_path / "r.json")
    assert res.exit_code == code, res.output
    assert re.search(message, _error_line(res))
    assert not (tmp_path / "r.json").exists()


def test_bad_inputs_and_settings(tmp_path, npy, images):
    model = om.channel_means(tmp_path / "m.onnx")
    cases = [
        (["run", model, tmp_path / "nope"], 2, "does not exist"),
        (["run", model, npy], 2, r"expects \[N, 3, 6, 5\] but preprocessing produces|shape \[3, 4, 4\]"),
        (["run", model, images, "--sigma", "-1"], 2, "sigma must be > 0"),
        (["run", model, images, "--device", "tpu"], 2, "'tpu'"),
        (["run", model, images, "--measures", "bogus"], 2, "bogus"),
    ]
    for args, code, message in cases:
        if "--sigma" not in args:
            args = [*args, "--sigma", "0.25"]
        res = cli(*args, *FAST, "-o", tmp_path / "r.json")
        assert res.exit_code == code, (args, res.output)
        assert re.search(message, _error_line(res)), (args, res.output)
    res = cli("run", model, images, *FAST, "-o", tmp_path / "r.json")
    assert res.exit_code == 2 and "sigma is required" in _error_line(res)


def test_labels_outside_the_model_classes(tmp_path, images):
    (images / "5").mkdir()
    Image.new("RGB", (12, 10)).save(images / "5" / "x.png")
    res = cli("run", om.channel_means(tmp_path / "m.onnx"), images, "--sigma", 0.25, *FAST, "-o", tmp_path / "r.json")
    assert res.exit_code == 2 and "label 5" in _error_line(res) and "0..2" in _error_line(res)


def test_class_names_must_match_the_output(tmp_path, images):
    (tmp_path / "c.yaml").write_text("model:\n  classes: [red, green]\n")
    for d in ("0", "1", "2"):
        (images / d).rename(images / {"0": "red", "1": "green", "2": "blue"}[d])
    res = cli("run", om.channel_means(tmp_path / "m.onnx"), images, "--sigma", 0.25, "-c", tmp_path / "c.yaml",
              *FAST, "-o", tmp_path / "r.json")
    assert res.exit_code == 2 and "'blue'" in _error_line(res)
    (tmp_path / "c.yaml").write_text("model:\n  classes: [red, green, blue, extra]\n")
    res = cli("run", om.channel_means(tmp_path / "m.onnx"), images, "--sigma", 0.25, "-c", tmp_path / "c.yaml",
              *FAST, "-o", tmp_path / "r.json")
    assert res.exit_code == 2 and "4 names but the model outputs k=3" in _error_line(res)


def test_existing_report_needs_force(tmp_path, images):
    (tmp_path / "r.json").write_text("{}")
    model = om.channel_means(tmp_path / "m.onnx")
    res = cli("run", model, images, "--sigma", 0.25, *FAST, "-o", tmp_path / "r.json")
    assert res.exit_code == 2 and "--force" in _error_line(res)
    assert (tmp_path / "r.json").read_text() == "{}"


@pytest.mark.skipif(CUDA in import_ort().get_available_providers(), reason="this machine has CUDA")
def test_device_cuda_without_cuda(tmp_path, images):
    res = cli("run", om.channel_means(tmp_path / "m.onnx"), images, "--sigma", 0.25, *FAST, "--device", "cuda",
              "-o", tmp_path / "r.json")
    assert res.exit_code == 2 and "CUDAExecutionProvider" in _error_line(res)


# ---------------------------------------------------------------- inspect


def test_inspect(tmp_path):
    meta = {"onnxcert.preprocess": {"mean": [0.5], "std": [0.25]}, "onnxcert.smoothing": {"sigma": 0.12}}
    model = om.channel_means(tmp_path / "m.onnx", layout="NHWC", metadata=meta)
    res = cli("inspect", model)
    assert res.exit_code == 0, res.output
    out = res.output
    assert "input: float32 [N, 6, 5, 3]   <- used" in out and "scores: float32 [N, 3]   <- used" in out
    assert f"ai.onnx {om.OPSET}" in out and "onnxcert.smoothing" in out
    assert "size [6, 5]" in out and "layout NHWC" in out and "mean [0.5], std [0.25]" in out
    assert "sigma 0.12" in out
    (tmp_path / "c.yaml").write_text("preprocess:\n  channels: BGR\n")
    assert "channels BGR" in cli("inspect", model, "-c", tmp_path / "c.yaml").output
    two = cli("inspect", om.two_inputs(tmp_path / "two.onnx"))
    assert two.exit_code == 0 and "note: the model has 2 inputs" in two.output
    assert "sigma not set" in cli("inspect", om.channel_means(tmp_path / "plain.onnx")).output
    bad = cli("inspect", tmp_path / "c.yaml")
    assert bad.exit_code == 3 and "not a readable ONNX model" in _error_line(bad)


# ---------------------------------------------------------------- the real console script


def _console_script() -> list[str]:
    exe = Path(sys.executable).with_name("onnxcert")
    return [str(exe)] if exe.exists() else [sys.executable, "-c", "from onnxcert.cli import main; main()"]


def test_console_script(tmp_path, npy):
    model = om.constant(tmp_path / "c.onnx", [0.7, 0.2, 0.1])
    done = subprocess.run([*_console_script(), "run", str(model), str(npy), "--sigma", "0.5", *FAST,
                           "-o", str(tmp_path / "r.json"), "-o", str(tmp_path / "r.csv")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = _load(tmp_path / "r.json")
    assert report["count"] == 3 and report["model"]["path"] == str(model)
    assert len((tmp_path / "r.csv").read_text().splitlines()) == 4
    bad = subprocess.run([*_console_script(), "run", str(tmp_path / "r.csv"), str(npy), "--sigma", "0.5"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 3
    assert "Traceback" not in bad.stderr and bad.stderr.strip().count("\n") == 0
    assert bad.stderr.startswith("onnxcert: error:")


# ---------------------------------------------------------------- presets and precedence

REPO = Path(__file__).resolve().parents[1]


def test_cifar10_preset_is_cohen_et_al():
    from onnxcert.config import load_yaml

    cfg = build_config(load_yaml(REPO / "configs" / "cifar10.yaml"), {"smoothing": {"sigma": 0.25}})
    # golden: locuslab/smoothing code/datasets.py, _CIFAR10_MEAN and _CIFAR10_STDDEV
    assert cfg.preprocess.mean == (0.4914, 0.4822, 0.4465)
    assert cfg.preprocess.std == (0.2023, 0.1994, 0.2010)
    assert cfg.preprocess.size == (32, 32) and cfg.preprocess.layout == "NCHW"
    assert cfg.model.classes[3] == "cat" and len(cfg.model.classes) == 10
    assert cfg.settings.n == 100_000 and cfg.settings.n0 == 100 and cfg.settings.alpha == 0.001


@pytest.mark.parametrize("name", ["cifar10", "imagenet", "template"])
def test_every_preset_key_is_commented(name):
    lines = (REPO / "configs" / f"{name}.yaml").read_text().splitlines()
    keys = [i for i, line in enumerate(lines) if re.match(r"^\s*[a-z_0-9]+:\s*\S", line)]  # keys with values
    assert len(keys) >= 9
    for i in keys:
        assert "#" in lines[i] or lines[i - 1].lstrip().startswith("#"), lines[i]


def test_template_leaves_the_model_in_charge():
    from onnxcert.config import load_yaml

    layer = load_yaml(REPO / "configs" / "template.yaml")
    assert not layer.get("model") and not layer.get("preprocess") and "sigma" not in layer["smoothing"]


def test_imagenet_preset_resizes_the_shorter_side_and_crops_the_centre(tmp_path):
    # 500x375 -> shorter side 256 -> 341x256 -> centre 224x224 = original x in ~[85, 413], y in ~[23, 352]
    a = np.zeros((375, 500, 3), np.uint8)
    a[:, :, 0] = 255  # red everywhere ...
    a[15:360, 75:425] = (0, 110, 0)  # ... but a green centre that covers the crop
    (tmp_path / "img").mkdir()
    Image.fromarray(a).save(tmp_path / "img" / "a.png")
    model = om.channel_means(tmp_path / "in.onnx", size=(224, 224))
    res = cli("run", model, tmp_path / "img", "-c", REPO / "configs" / "imagenet.yaml", "--sigma", 0.1,
              *FAST, "--seed", 0, "-o", tmp_path / "r.json")
    assert res.exit_code == 0, res.output
    report = _load(tmp_path / "r.json")
    # normalized channel means: after the crop R -2.1, G -0.11, B -1.8 (class 1); had the whole
    # image been resized instead, R -0.56 beats G -0.80 (class 0)
    assert report["records"][0]["prediction"] == 1
    assert report["settings"]["preprocess"]["resize_to"] == 256


def test_config_that_contradicts_the_metadata_is_announced(tmp_path, images):
    meta = {"onnxcert.preprocess": {"mean": [0.0], "std": [1.0]}}
    model = om.channel_means(tmp_path / "m.onnx", metadata=meta)
    (tmp_path / "c.yaml").write_text("preprocess:\n  mean: [0.5]\n")
    res = cli("run", model, images, "--sigma", 0.25, "-c", tmp_path / "c.yaml", *FAST, "-o", tmp_path / "r.json")
    assert res.exit_code == 0
    assert "preprocess.mean is [0.5], overriding m.onnx metadata's [0.0]" in res.output
    assert _load(tmp_path / "r.json")["settings"]["preprocess"]["mean"] == [0.5]
