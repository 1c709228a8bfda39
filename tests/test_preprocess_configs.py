"""preprocess: {from: FILE} against reference tensors computed independently, to 1e-5.

The references below are written from the libraries' own definitions, not from onnxcert's code:
- timm ``transforms_imagenet_eval`` (crop_mode center): ``Resize(floor(size / crop_pct))`` with
  torchvision's PIL path (shorter side to that, longer side ``int(s * long / short)``), then
  ``CenterCrop(size)`` with offsets ``int(round((H - h) / 2))``, ``ToTensor``, ``Normalize``;
  crop_mode squash resizes both sides to ``floor(size / crop_pct)``.
- transformers' PIL image processors: ``convert('RGB')``, ``PIL.resize`` with ``resample``
  (``shortest_edge``: longer side ``int(s * long / short)``), ``center_crop`` with offsets
  ``(H - h) // 2``, ``rescale`` (float64 times rescale_factor, cast to float32), ``normalize``
  ((x - mean) / std in float32); ConvNext resizes the shorter side to ``int(s / crop_pct)``.
torchvision itself is not installed (it cannot sit beside this torch build), so ToTensor and
Normalize are spelled out with torch; the resampling is Pillow's, which is what both libraries
call on PIL images.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from onnxcert.config import build_config, load_yaml
from onnxcert.errors import ConfigError
from onnxcert.inputs import open_image
from onnxcert.preprocess import Preprocessor

TOL = 1e-5
FILTERS = {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC,
           "lanczos": Image.LANCZOS}
CLIP_MEAN, CLIP_STD = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
INCEPTION = [0.5, 0.5, 0.5]


# ---------------------------------------------------------------- images


def _smooth(h: int, w: int, seed: int) -> np.ndarray:
    """A smooth RGB image with some texture: resampling filters differ on it."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([128 + 100 * np.sin(xx / (5 + c) + yy / (7 + 2 * c) + c) for c in range(3)], -1)
    return np.clip(base + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[Path]:
    """Landscape and portrait RGB, a palette image, RGBA and grey: every one converts to RGB first."""
    d = tmp_path_factory.mktemp("imgs")
    out = []
    for name, (h, w), seed in (("land.png", (83, 121), 1), ("port.jpg", (133, 97), 2)):
        Image.fromarray(_smooth(h, w, seed)).save(d / name)
        out.append(d / name)
    Image.fromarray(_smooth(77, 90, 3)).quantize(64).save(d / "pal.png")
    rgba = np.concatenate([_smooth(70, 101, 4), np.full((70, 101, 1), 200, np.uint8)], -1)
    Image.fromarray(rgba, "RGBA").save(d / "rgba.png")
    Image.fromarray(_smooth(99, 80, 5)[..., 0], "L").save(d / "grey.png")
    out += [d / "pal.png", d / "rgba.png", d / "grey.png"]
    return out


def _write(path: Path, data: dict) -> Path:
    path.write_text(json.dumps(data))
    return path


def _onnxcert(config_file: Path, image: Path) -> np.ndarray:
    cfg = build_config({"preprocess": {"from": str(config_file)}, "smoothing": {"sigma": 0.25}})
    pre = Preprocessor(cfg.preprocess)
    return pre.normalize(pre.image(open_image(image)))


def _to_tensor(img: Image.Image) -> torch.Tensor:
    """torchvision's ToTensor on an RGB PIL image."""
    return torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1).float().div(255)


def _normalize(t: torch.Tensor, mean, std) -> torch.Tensor:
    return (t - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]


# ---------------------------------------------------------------- timm


def _timm_reference(path: Path, size: int, crop_pct: float, interpolation: str, mean, std, mode="center"):
    img = Image.open(path).convert("RGB")
    scale = math.floor(size / crop_pct)
    w, h = img.size
    if mode == "squash":
        img = img.resize((scale, scale), FILTERS[interpolation])
    else:
        if w <= h:
            ow, oh = scale, int(scale * h / w)
        else:
            ow, oh = int(scale * w / h), scale
        if (ow, oh) != (w, h):
            img = img.resize((ow, oh), FILTERS[interpolation])
    w, h = img.size
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    img = img.crop((left, top, left + size, top + size))
    return _normalize(_to_tensor(img), mean, std).numpy()


TIMM_CASES = [
    # (input_size, crop_pct, interpolation, crop_mode, mean, std)
    (64, 0.9, "bicubic", "center", [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
    (57, 0.875, "bilinear", "center", INCEPTION, INCEPTION),
    (48, 0.95, "lanczos", "squash", [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
    (41, 1.0, "nearest", "center", INCEPTION, INCEPTION),
]


@pytest.mark.parametrize("size, crop_pct, interpolation, mode, mean, std", TIMM_CASES)
def test_timm_data_config_matches_timms_eval_transform(tmp_path, images, size, crop_pct, interpolation,
                                                       mode, mean, std):
    cfg = _write(tmp_path / "data_config.json",
                 {"input_size": [3, size, size], "interpolation": interpolation, "crop_pct": crop_pct,
                  "crop_mode": mode, "mean": mean, "std": std})
    for image in images:
        want = _timm_reference(image, size, crop_pct, interpolation, mean, std, mode)
        got = _onnxcert(cfg, image)
        assert got.shape == want.shape == (3, size, size)
        np.testing.assert_allclose(got, want, rtol=0, atol=TOL, err_msg=f"{image.name}")


def test_timm_hub_config_json_with_pretrained_cfg_and_label_names(tmp_path, images):
    labels = ["tench", "goldfish", "shark"]
    cfg = _write(tmp_path / "config.json", {
        "architecture": "resnet50", "num_classes": 3, "label_names": labels,
        "pretrained_cfg": {"input_size": [3, 60, 60], "interpolation": "bicubic", "crop_pct": 0.95,
                           "crop_mode": "center", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
                           "num_classes": 3}})
    built = build_config({"preprocess": {"from": str(cfg)}, "smoothing": {"sigma": 0.25}})
    assert built.model.classes == tuple(labels)
    want = _timm_reference(images[0], 60, 0.95, "bicubic", [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    np.testing.assert_allclose(_onnxcert(cfg, images[0]), want, rtol=0, atol=TOL)


def test_timm_defaults_are_timms(tmp_path, images):
    """Missing keys: bicubic, crop_pct 0.875, ImageNet mean/std (timm.data.resolve_data_config)."""
    cfg = _write(tmp_path / "data_config.json", {"input_size": [3, 40, 40]})
    want = _timm_reference(images[1], 40, 0.875, "bicubic", [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    np.testing.assert_allclose(_onnxcert(cfg, images[1]), want, rtol=0, atol=TOL)


# ---------------------------------------------------------------- Hugging Face


def _hf_reference(path: Path, *, resize, resample: int, crop=None, rescale=1 / 255, do_rescale=True,
                  mean=None, std=None) -> np.ndarray:
    """transformers' PIL path. resize: ("shortest_edge", s) | ("hw", (h, w)) | ("convnext", (s, pct))."""
    pil_filter = {0: Image.NEAREST, 1: Image.LANCZOS, 2: Image.BILINEAR, 3: Image.BICUBIC}[resample]
    img = Image.open(path).convert("RGB")
    w, h = img.size
    kind, arg = resize
    if kind == "convnext":
        arg, crop = int(arg[0] / arg[1]), (arg[0], arg[0])
        kind = "shortest_edge"
    if kind == "shortest_edge":
        short, long = (w, h) if w <= h else (h, w)
        new_short, new_long = arg, int(arg * long / short)
        oh, ow = (new_long, new_short) if w <= h else (new_short, new_long)
    else:
        oh, ow = arg
    a = np.array(img.resize((ow, oh), pil_filter) if (ow, oh) != (w, h) else img).transpose(2, 0, 1)
    if crop is not None:
        top, left = (a.shape[1] - crop[0]) // 2, (a.shape[2] - crop[1]) // 2
        a = a[:, top:top + crop[0], left:left + crop[1]]
    x = (a.astype(np.float64) * rescale).astype(np.float32) if do_rescale else a.astype(np.float32)
    if mean is not None:
        x = (x - np.asarray(mean, np.float32)[:, None, None]) / np.asarray(std, np.float32)[:, None, None]
    return x


HF_CASES = {
    "clip": ({"crop_size": {"height": 46, "width": 46}, "do_center_crop": True, "do_convert_rgb": True,
              "do_normalize": True, "do_rescale": True, "do_resize": True, "image_mean": CLIP_MEAN,
              "image_std": CLIP_STD, "image_processor_type": "CLIPImageProcessor", "resample": 3,
              "rescale_factor": 0.00392156862745098, "size": {"shortest_edge": 46}},
             dict(resize=("shortest_edge", 46), resample=3, crop=(46, 46), mean=CLIP_MEAN, std=CLIP_STD)),
    "clip-legacy": ({"crop_size": 41, "do_center_crop": True, "do_normalize": True, "do_resize": True,
                     "feature_extractor_type": "CLIPFeatureExtractor", "image_mean": CLIP_MEAN,
                     "image_std": CLIP_STD, "resample": 3, "size": 45},
                    dict(resize=("shortest_edge", 45), resample=3, crop=(41, 41), mean=CLIP_MEAN, std=CLIP_STD)),
    "vit": ({"do_normalize": True, "do_rescale": True, "do_resize": True, "image_mean": INCEPTION,
             "image_std": INCEPTION, "image_processor_type": "ViTImageProcessor", "resample": 2,
             "rescale_factor": 0.00392156862745098, "size": {"height": 40, "width": 52}},
            dict(resize=("hw", (40, 52)), resample=2, mean=INCEPTION, std=INCEPTION)),
    "deit": ({"crop_size": {"height": 48, "width": 48}, "do_center_crop": True, "do_normalize": True,
              "do_rescale": True, "do_resize": True, "image_mean": [0.485, 0.456, 0.406],
              "image_std": [0.229, 0.224, 0.225], "resample": 3, "rescale_factor": 0.00392156862745098,
              "size": {"height": 55, "width": 55}},
             dict(resize=("hw", (55, 55)), resample=3, crop=(48, 48), mean=[0.485, 0.456, 0.406],
                  std=[0.229, 0.224, 0.225])),
    "convnext": ({"crop_pct": 0.875, "do_normalize": True, "do_rescale": True, "do_resize": True,
                  "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225],
                  "image_processor_type": "ConvNextImageProcessor", "resample": 3,
                  "rescale_factor": 0.00392156862745098, "size": {"shortest_edge": 49}},
                 dict(resize=("convnext", (49, 0.875)), resample=3, mean=[0.485, 0.456, 0.406],
                      std=[0.229, 0.224, 0.225])),
    "no-rescale-255-units": ({"do_normalize": True, "do_rescale": False, "do_resize": True,
                              "image_mean": [123.675, 116.28, 103.53], "image_std": [58.395, 57.12, 57.375],
                              "resample": 1, "size": {"height": 37, "width": 37}},
                             dict(resize=("hw", (37, 37)), resample=1, do_rescale=False,
                                  mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375])),
    "no-normalize-nearest": ({"do_normalize": False, "do_rescale": True, "do_resize": True, "resample": 0,
                              "rescale_factor": 0.00392156862745098, "size": {"shortest_edge": 39},
                              "do_center_crop": True, "crop_size": 35},
                             dict(resize=("shortest_edge", 39), resample=0, crop=(35, 35))),
}


@pytest.mark.parametrize("case", sorted(HF_CASES))
def test_hf_preprocessor_config_matches_transformers(tmp_path, images, case):
    data, ref = HF_CASES[case]
    cfg = _write(tmp_path / "preprocessor_config.json", data)
    for image in images:
        want = _hf_reference(image, **ref)
        got = _onnxcert(cfg, image)
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=0, atol=TOL, err_msg=f"{case} {image.name}")


def test_hf_id2label_names_the_classes_in_the_file_or_beside_it(tmp_path):
    data, _ = HF_CASES["vit"]
    cfg = _write(tmp_path / "preprocessor_config.json", data)
    _write(tmp_path / "config.json", {"id2label": {"1": "dog", "0": "cat"}, "architectures": ["ViT"]})
    built = build_config({"preprocess": {"from": str(cfg)}, "smoothing": {"sigma": 0.25}})
    assert built.model.classes == ("cat", "dog")
    own = _write(tmp_path / "p2.json", {**data, "id2label": {"0": "a", "1": "b", "2": "c"}})
    assert build_config({"preprocess": {"from": str(own)}, "smoothing": {"sigma": 0.25}}).model.classes == ("a", "b", "c")


# ---------------------------------------------------------------- config plumbing


def test_from_is_relative_to_the_config_file_and_own_keys_win(tmp_path, images):
    data, ref = HF_CASES["clip"]
    (tmp_path / "hf").mkdir()
    _write(tmp_path / "hf" / "preprocessor_config.json", data)
    (tmp_path / "cfg.yaml").write_text("preprocess:\n  from: hf/preprocessor_config.json\n  layout: NHWC\n"
                                       "model:\n  classes: [a, b]\n")
    layer = load_yaml(tmp_path / "cfg.yaml")
    cfg = build_config(layer, {"smoothing": {"sigma": 0.1}})
    assert cfg.preprocess.layout == "NHWC" and cfg.preprocess.size == (46, 46)
    assert cfg.preprocess.interpolation == "bicubic" and cfg.preprocess.crop_offset == "floor"
    assert cfg.model.classes == ("a", "b")
    pre = Preprocessor(cfg.preprocess)
    got = pre.normalize(pre.image(open_image(images[0])))
    np.testing.assert_allclose(got, _hf_reference(images[0], **ref).transpose(1, 2, 0), rtol=0, atol=TOL)


@pytest.mark.parametrize("data, message", [
    ({"input_size": [3, 64, 64], "crop_mode": "border"}, "crop_mode 'border' is not supported"),
    ({"input_size": [3, 64, 48], "crop_pct": 0.9}, "non-square input_size"),
    ({"input_size": [64, 64]}, r"input_size must be \[C, H, W\]"),
    ({"input_size": [3, 64, 64], "interpolation": "random"}, "interpolation 'random' is not supported"),
    ({"input_size": [3, 64, 64], "crop_pct": 0}, "crop_pct must be a number"),
    ({"do_resize": True, "size": {"shortest_edge": 800, "longest_edge": 1333}, "image_mean": [0.5],
      "image_std": [0.5], "resample": 2}, "size .* is not supported"),
    ({"do_resize": True, "size": 224, "resample": 5, "image_mean": [0.5], "image_std": [0.5]},
     "resample 5 is not supported"),
    ({"do_normalize": True, "do_resize": False, "image_std": [0.5]}, "image_mean is missing"),
    ({"do_resize": True, "resample": 2, "image_mean": [0.5], "image_std": [0.5]}, "size is missing"),
    ({"id2label": {"0": "a"}}, "neither a timm data config"),
])
def test_unsupported_or_broken_files_are_one_line_config_errors(tmp_path, data, message):
    path = _write(tmp_path / "p.json", data)
    with pytest.raises(ConfigError, match=message):
        build_config({"preprocess": {"from": str(path)}, "smoothing": {"sigma": 0.25}})


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        build_config({"preprocess": {"from": str(tmp_path / "nope.json")}, "smoothing": {"sigma": 0.25}})
    (tmp_path / "bad.json").write_text("{'not': json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        build_config({"preprocess": {"from": str(tmp_path / "bad.json")}, "smoothing": {"sigma": 0.25}})
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(ConfigError, match="must hold a JSON object"):
        build_config({"preprocess": {"from": str(tmp_path / "list.json")}, "smoothing": {"sigma": 0.25}})


def test_model_metadata_may_not_name_a_file():
    from onnxcert.config import metadata_layer

    with pytest.raises(ConfigError, match="preprocess.from names a file"):
        metadata_layer({"onnxcert.preprocess": json.dumps({"from": "/etc/x.json"})})


@pytest.mark.parametrize("key, value, message", [
    ("interpolation", "area", "interpolation must be one of nearest, bilinear, bicubic, lanczos"),
    ("resize_round", "ceil", "resize_round must be one of floor, round"),
    ("crop_offset", "ceil", "crop_offset must be one of round, floor"),
])
def test_new_keys_are_validated(key, value, message):
    with pytest.raises(ConfigError, match=message):
        build_config({"preprocess": {key: value}, "smoothing": {"sigma": 0.25}})


def test_resize_to_hw_only_with_exact():
    cfg = build_config({"preprocess": {"resize": "exact", "resize_to": [50, 60], "size": [40, 40]},
                        "smoothing": {"sigma": 0.25}})
    assert cfg.preprocess.resize_to == (50, 60)
    with pytest.raises(ConfigError, match=r"\[H, W\] with resize: exact"):
        build_config({"preprocess": {"resize": "shorter", "resize_to": [50, 60]}, "smoothing": {"sigma": 0.25}})


@pytest.mark.parametrize("key, values, warned", [
    ("mean", [123.675, 116.28, 103.53], True),
    ("std", [58.395, 57.12, 57.375], True),
    ("mean", [0.485, 0.456, 0.406], False),
    ("std", [1 / 255], False),
])
def test_mean_or_std_in_0_255_units_warns(caplog, monkeypatch, key, values, warned):
    caplog.set_level(logging.WARNING, logger="onnxcert")
    monkeypatch.setattr(logging.getLogger("onnxcert"), "propagate", True)
    build_config({"preprocess": {key: values}, "smoothing": {"sigma": 0.25}})
    lines = [r.getMessage() for r in caplog.records if "0..255 units" in r.getMessage()]
    assert bool(lines) == warned
    if warned:
        assert f"{values[0] / 255:.6g}" in lines[0] and "divide by 255" in lines[0]
