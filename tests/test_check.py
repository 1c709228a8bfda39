"""`onnxcert check`: noise-free predictions, clean accuracy, warnings, --dump, --reference.

Known clean accuracies: the sample models' held-out accuracy measured by their training script
(sample_models/metrics.json, 'clean'); the tiny ONNX models of tests/onnx_models.py, whose
answers are known in closed form (channel_means picks the brightest channel; brightness_bins the
bin of the mean pixel in 0..255).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests import onnx_models as om
from tests.cli_helpers import cli, error_line

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_models"


def _warnings(res) -> list[str]:
    return [ln for ln in res.output.splitlines() if ln.startswith("onnxcert: warning:")]


@pytest.mark.parametrize("model", ["digits_sigma0.25.onnx", "digits_sigma0.50.onnx"])
def test_sample_models_give_their_known_clean_accuracy(tmp_path, model):
    known = json.loads((SAMPLES / "metrics.json").read_text())["models"][model]["accuracy"]["clean"]
    res = cli("check", SAMPLES / model, SAMPLES / "digits_test", "-o", tmp_path / "c.json", "--show", "3")
    assert res.exit_code == 0, res.output
    data = json.loads((tmp_path / "c.json").read_text())
    assert data["count"] == 250
    assert data["clean_accuracy"] == pytest.approx(known, abs=1e-9)
    assert f"clean accuracy {known:.3f}" in res.output
    assert "'7' -> 7" in res.output  # the folder -> class mapping
    assert not _warnings(res)


@pytest.fixture
def coloured(tmp_path) -> Path:
    """Six images labelled by their dominant channel (0 red, 1 green, 2 blue), two per class."""
    colours = {0: [(200, 30, 20), (250, 90, 60)], 1: [(10, 220, 40), (80, 160, 90)], 2: [(5, 5, 100), (60, 70, 240)]}
    for c, cs in colours.items():
        for j, rgb in enumerate(cs):
            (tmp_path / "in" / str(c)).mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((7, 9, 3), rgb, np.uint8)).save(tmp_path / "in" / str(c) / f"{j}.png")
    return tmp_path / "in"


def test_channel_means_model_is_right_on_every_colour(tmp_path, coloured):
    model = om.channel_means(tmp_path / "m.onnx")
    res = cli("check", model, coloured, "--classes", "red,green,blue", "-o", tmp_path / "c.json", "--top", "2")
    assert res.exit_code == 0, res.output
    data = json.loads((tmp_path / "c.json").read_text())
    assert data["clean_accuracy"] == 1.0 and data["count"] == 6
    rec = data["records"][0]
    assert set(rec) >= {"index", "input", "label", "prediction", "correct", "top"}
    assert rec["label"] == rec["prediction"] == 0 and rec["correct"] is True
    assert [t["class"] for t in rec["top"]][0] == 0 and rec["top"][0]["name"] == "red" and len(rec["top"]) == 2
    # logits_j = 40 * mean_j - 20 on the 7x9 image of colour (200, 30, 20) / 255: softmax by hand
    logits = 40 * np.array([200, 30, 20]) / 255 - 20
    p = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    assert rec["top"][0]["score"] == pytest.approx(p[0], abs=1e-6)
    assert rec["top"][1]["score"] == pytest.approx(p[1], abs=1e-6)
    assert [m["folder"] for m in data["mapping"]] == ["0", "1", "2"] and data["mapping"][2]["name"] == "blue"
    assert "0 red" in res.output and "ok" in res.output


def _grey_bins(root: Path, k: int = 10, per_class: int = 2) -> Path:
    for j in range(k):
        for r in range(per_class):
            v = int(255 * (j + 0.3 + 0.4 * r) / k)
            (root / str(j)).mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((8, 8, 3), v, np.uint8)).save(root / str(j) / f"{r}.png")
    return root


def test_cifar_like_model_without_its_0_255_scaling_is_warned_about(tmp_path):
    """The issue's case: a model wanting 0..255, configured without scaling, predicts one class."""
    model = om.brightness_bins(tmp_path / "m.onnx")
    images = _grey_bins(tmp_path / "in")
    wrong = cli("check", model, images, "-o", tmp_path / "wrong.json")
    assert wrong.exit_code == 0, wrong.output
    lines = _warnings(wrong)
    assert any("all 20 clean predictions are class 0" in ln and "std 1/255" in ln for ln in lines), wrong.output
    assert any("clean accuracy 0.100" in ln and "near chance" in ln for ln in lines), wrong.output
    assert json.loads((tmp_path / "wrong.json").read_text())["clean_accuracy"] == pytest.approx(0.1)

    (tmp_path / "right.yaml").write_text("preprocess: {mean: [0], std: [0.00392156862745098]}\n")
    right = cli("check", model, images, "-c", tmp_path / "right.yaml", "-o", tmp_path / "right.json")
    assert right.exit_code == 0, right.output
    assert json.loads((tmp_path / "right.json").read_text())["clean_accuracy"] == 1.0
    assert not _warnings(right)


def test_mean_std_in_0_255_units_warns_with_the_fix(tmp_path, coloured):
    (tmp_path / "c.yaml").write_text("preprocess: {mean: [123.675, 116.28, 103.53], std: [58.395, 57.12, 57.375]}\n")
    res = cli("check", om.channel_means(tmp_path / "m.onnx"), coloured, "-c", tmp_path / "c.yaml")
    assert any("preprocess.mean [123.675, 116.28, 103.53] looks like 0..255 units" in ln
               and "0.485, 0.456, 0.406" in ln for ln in res.output.splitlines()), res.output


def test_softmax_graph_read_as_logits_is_warned_about(tmp_path, coloured):
    model = om.channel_means(tmp_path / "m.onnx", softmax=True)
    res = cli("check", model, coloured, "--output-kind", "logits")
    assert any("the graph ends in Softmax" in ln and "output_kind: probabilities" in ln for ln in _warnings(res))
    plain = cli("check", model, coloured)
    assert not _warnings(plain) and "read as probabilities" in plain.output and "last op Softmax" in plain.output
    logits = cli("check", om.channel_means(tmp_path / "l.onnx"), coloured, "--output-kind", "probabilities")
    assert any("rows that are not in [0, 1] summing to 1" in ln for ln in _warnings(logits)), logits.output


def test_dump_writes_the_tensor_the_model_gets_and_the_picture(tmp_path, coloured):
    (tmp_path / "c.yaml").write_text("preprocess: {channels: BGR, mean: [0.5], std: [0.25]}\n")
    res = cli("check", om.channel_means(tmp_path / "m.onnx"), coloured, "-c", tmp_path / "c.yaml",
              "--dump", "1", "--dump-dir", tmp_path / "d")
    assert res.exit_code == 0, res.output
    rgb = np.array([250, 90, 60], np.float32) / 255  # input 1 is 0/1.png
    x = np.load(tmp_path / "d" / "check-input-1.npy")
    assert x.shape == (3, 6, 5)  # channel_means' input is [N, 3, 6, 5]
    np.testing.assert_allclose(x[:, 0, 0], (rgb[::-1] - 0.5) / 0.25, atol=1e-6)  # BGR, normalized
    png = np.asarray(Image.open(tmp_path / "d" / "check-input-1.png"))
    assert png.shape == (6, 5, 3) and tuple(png[0, 0]) == (250, 90, 60)  # shown in RGB order
    again = cli("check", om.channel_means(tmp_path / "m.onnx"), coloured, "--dump", "1", "--dump-dir", tmp_path / "d")
    assert again.exit_code == 2 and "--force" in error_line(again)
    out_of_range = cli("check", om.channel_means(tmp_path / "m.onnx"), coloured, "--dump", "6")
    assert out_of_range.exit_code == 2 and "--dump 6 is outside the inputs 0..5" in error_line(out_of_range)


def test_reference_scores_and_predictions(tmp_path, coloured):
    model = om.channel_means(tmp_path / "m.onnx")
    means = []
    for c in range(3):
        for j in range(2):
            means.append(np.asarray(Image.open(coloured / str(c) / f"{j}.png"), np.float64).mean(axis=(0, 1)) / 255)
    logits = 40 * np.array(means) - 20
    np.savez(tmp_path / "ref.npz", logits=logits)
    same = cli("check", model, coloured, "--reference", tmp_path / "ref.npz", "-o", tmp_path / "c.json")
    ref = json.loads((tmp_path / "c.json").read_text())["reference"]
    assert ref["max_difference"] < 1e-4 and ref["disagreements"] == 0 and ref["compared_as"] == "raw", same.output
    logits[4, 1] += 0.5
    np.savez(tmp_path / "ref2.npz", logits=logits)
    off = cli("check", model, coloured, "--reference", tmp_path / "ref2.npz", "-o", tmp_path / "c2.json")
    ref = json.loads((tmp_path / "c2.json").read_text())["reference"]
    assert ref["max_difference"] == pytest.approx(0.5, abs=1e-4) and ref["at"] == {"index": 4, "class": 1}
    assert "largest score difference 0.5" in off.output
    (tmp_path / "pred.csv").write_text("prediction\n0\n0\n1\n2\n2\n2\n")
    pred = cli("check", model, coloured, "--reference", tmp_path / "pred.csv")
    assert "1 predicted class(es) differ (first: input 2, expected 1, got 1)" not in pred.output
    assert "1 predicted class(es) differ (first: input 3, expected 2, got 1)" in pred.output, pred.output
    (tmp_path / "short.csv").write_text("0\n1\n")
    short = cli("check", model, coloured, "--reference", tmp_path / "short.csv")
    assert short.exit_code == 2 and "has 2 row(s) but 6 input(s)" in error_line(short)


def test_skip_limit_labels_csv_and_npz_keys(tmp_path, coloured):
    model = om.channel_means(tmp_path / "m.onnx")
    res = cli("check", model, coloured, "--skip", "2", "--limit", "2", "-o", tmp_path / "c.json")
    data = json.loads((tmp_path / "c.json").read_text())
    assert [Path(r["input"]).relative_to(coloured).as_posix() for r in data["records"]] == ["0/0.png", "1/0.png"]
    (tmp_path / "l.csv").write_text("name,cls\n0/0,2\n2/1.png,2\n")
    res = cli("check", model, coloured, "--labels-csv", tmp_path / "l.csv", "--label-columns", "name,cls",
              "-o", tmp_path / "l.json", "--force")
    data = json.loads((tmp_path / "l.json").read_text())
    assert [r["label"] for r in data["records"]] == [2, None, None, None, None, 2] and data["clean_accuracy"] == 0.5
    x = np.stack([np.full((3, 6, 5), v, np.float32) for v in (0.9, 0.1, 0.1)])
    x[1, 1], x[2, 2] = 0.9, 0.9
    np.savez(tmp_path / "d.npz", images=x, targets=np.array([0, 1, 2]))
    res = cli("check", model, tmp_path / "d.npz", "--npz-keys", "images,targets", "-o", tmp_path / "n.json")
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "n.json").read_text())["clean_accuracy"] == 1.0


@pytest.mark.parametrize("args, code, message", [
    (["--skip", "0"], 2, "--skip must be >= 1"),
    (["--reference", "nope.npz"], 2, "--reference 'nope.npz' does not exist"),
    (["--label-columns", "a"], 2, "--label-columns must be FILE,LABEL"),
    (["--classes", "a,b"], 2, "label 2 (sub-folder of '2/0.png') is outside the classes 0..1"),
    (["--classes", "a,b,c,d"], 2, "model.classes lists 4 names but the model outputs k=3"),
    (["--preprocess-from", "nope.json"], 2, "preprocess.from 'nope.json' does not exist"),
    (["-o", "x.csv"], 2, "--output must end in .json"),
])
def test_bad_input_is_one_line(tmp_path, coloured, args, code, message):
    res = cli("check", om.channel_means(tmp_path / "m.onnx"), coloured, *args)
    assert res.exit_code == code and message in error_line(res), res.output


def test_a_model_that_is_not_onnx_is_exit_3(tmp_path, coloured):
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    res = cli("check", tmp_path / "bad.onnx", coloured)
    assert res.exit_code == 3, res.output
    error_line(res)


def test_near_chance_is_a_binomial_test_at_level_0_01():
    """P(X >= c) for X ~ Binomial(20, 0.1) (scipy.stats.binom.sf): c = 6 -> 0.0113, c = 7 -> 0.0024."""
    from onnxcert.diagnostics import chance_level, near_chance

    assert near_chance(6, 20, 0.1) and not near_chance(7, 20, 0.1)
    assert near_chance(0, 20, 0.1) and not near_chance(3, 4, 0.1)  # fewer than 5 inputs say nothing
    assert chance_level([0, 0, 0, 1, None], k=10) == 0.75  # the commonest label, not 1/k
    assert chance_level([0, 1, 2, 3], k=2) == 0.5
    assert chance_level([None, None], k=10) is None


def test_one_class_needs_several_inputs_and_labels_of_several_classes():
    from onnxcert.diagnostics import one_class

    assert one_class([3] * 5, [None] * 5, ["a", "b", "c", "d"]).startswith("all 5 clean predictions are class 3 (d)")
    assert one_class([3] * 4, [None] * 4) is None
    assert one_class([3] * 6, [3] * 6) is None  # every label is that class: nothing is wrong
    assert one_class([3, 3, 3, 3, 3, 2], [None] * 6) is None


def _rec(label, prediction, clean, radius=0.3):
    return {"label": label, "prediction": prediction, "clean_prediction": clean,
            "correct": None if label is None else label == prediction, "label_certificate": {"radius": radius}}


def test_run_warnings_use_clean_predictions_first_then_smoothed():
    from onnxcert.diagnostics import run_warnings

    labels = [j % 10 for j in range(20)]
    all_cat = [_rec(lab, 3, 3) for lab in labels]
    lines = run_warnings(all_cat, k=10, classes=[str(i) for i in range(10)])
    assert len(lines) == 2 and "all 20 clean predictions are class 3" in lines[0] and "near chance" in lines[1]
    # right without noise, wrong with it and never abstaining: the noise decides (sigma too large)
    noisy = [_rec(lab, 3, lab) for lab in labels]
    assert [ln.split(" is near chance")[0] for ln in run_warnings(noisy, k=10)] == ["smoothed accuracy 0.100"]
    abstaining = [_rec(lab, 3, lab, radius=None if j % 2 else 0.2) for j, lab in enumerate(labels)]
    assert run_warnings(abstaining, k=10) == []
    fine = [_rec(lab, lab, lab) for lab in labels]
    assert run_warnings(fine, k=10) == []
    assert "ends in Softmax" in run_warnings(fine, k=10, last_op="Softmax", configured_kind="logits")[0]


def test_run_reports_clean_and_smoothed_accuracy_prints_the_mapping_and_warns(tmp_path):
    model = om.brightness_bins(tmp_path / "m.onnx")
    images = _grey_bins(tmp_path / "in")
    common = ["--sigma", "0.25", "--n", "100", "--n0", "10", "--methods", "cdf-dkw"]
    wrong = cli("run", model, images, *common, "-o", tmp_path / "wrong.json")
    assert wrong.exit_code == 0, wrong.output
    report = json.loads((tmp_path / "wrong.json").read_text())
    assert report["clean_accuracy"] == pytest.approx(0.1)
    assert [r["clean_prediction"] for r in report["records"]] == [0] * 20
    assert any("all 20 clean predictions are class 0" in ln for ln in _warnings(wrong)), wrong.output
    assert "labels from sub-folders: '0' -> 0, '1' -> 1" in wrong.stderr
    assert "clean accuracy 0.100 (no noise), smoothed accuracy" in wrong.stderr

    (tmp_path / "right.yaml").write_text("preprocess: {mean: [0], std: [0.00392156862745098]}\n")
    right = cli("run", model, images, *common, "-c", tmp_path / "right.yaml", "-o", tmp_path / "right.json")
    report = json.loads((tmp_path / "right.json").read_text())
    assert report["clean_accuracy"] == 1.0
    assert [r["clean_prediction"] for r in report["records"]] == [r["label"] for r in report["records"]]
    assert report["smoothed_accuracy"] == pytest.approx(sum(r["correct"] for r in report["records"]) / 20)
    assert not _warnings(right), right.output


def test_python_api_check_model_mirrors_the_command(tmp_path, coloured):
    import onnxcert

    model = om.channel_means(tmp_path / "m.onnx")
    result = onnxcert.check_model(model, coloured, top_k=1, limit=4)
    res = cli("check", model, coloured, "--top", "1", "--limit", "4", "-o", tmp_path / "c.json")
    assert result.to_dict()["records"] == json.loads((tmp_path / "c.json").read_text())["records"]
    assert result.clean_accuracy == 1.0 and len(result.records) == 4 and not result.warnings


def test_preprocess_from_a_hf_file_reaches_the_model(tmp_path, coloured):
    """--preprocess-from on the command line: the dumped tensor is transformers' (to 1e-5)."""
    from tests.test_preprocess_configs import _hf_reference

    hf = {"do_resize": True, "size": {"height": 6, "width": 5}, "resample": 3, "do_rescale": True,
          "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": [0.5, 0.4, 0.3], "image_std": [0.2, 0.3, 0.4]}
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(hf))
    res = cli("check", om.channel_means(tmp_path / "m.onnx"), coloured, "--preprocess-from",
              tmp_path / "preprocessor_config.json", "--dump", "2", "--dump-dir", tmp_path)
    assert res.exit_code == 0, res.output
    want = _hf_reference(coloured / "1" / "0.png", resize=("hw", (6, 5)), resample=3, mean=hf["image_mean"],
                         std=hf["image_std"])
    np.testing.assert_allclose(np.load(tmp_path / "check-input-2.npy"), want, rtol=0, atol=1e-5)
    assert "resize exact (bicubic)" in res.output


def test_inspect_shows_what_a_timm_file_sets(tmp_path):
    (tmp_path / "timm.json").write_text(json.dumps({"input_size": [3, 6, 5], "crop_mode": "squash",
                                                    "interpolation": "lanczos", "crop_pct": 0.5}))
    res = cli("inspect", om.channel_means(tmp_path / "m.onnx"), "--preprocess-from", tmp_path / "timm.json",
              "--classes", "r,g,b")
    assert res.exit_code == 0, res.output
    assert "resize exact (to [12, 10] before the crop) with lanczos, crop center (offsets rounded)" in res.output
    assert "mean [0.485, 0.456, 0.406]" in res.output and "3 class names" in res.output
