"""preprocess.py: resize/crop (torchvision's PIL conventions), channels, layout, normalization."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from onnxcert.config import PreprocessConfig
from onnxcert.errors import ConfigError, InputError
from onnxcert.preprocess import Preprocessor, check_against_model, model_layer, resize_and_crop


def _grid(w=10, h=8):
    """R = 10 * column, G = 10 * row, B = 7: every pixel says where it came from."""
    a = np.zeros((h, w, 3), np.uint8)
    a[:, :, 0] = 10 * np.arange(w)[None, :]
    a[:, :, 1] = 10 * np.arange(h)[:, None]
    a[:, :, 2] = 7
    return Image.fromarray(a)


def test_center_crop_offsets_follow_torchvision():
    # torchvision CenterCrop: top = round((h - th) / 2), left = round((w - tw) / 2) -> 2 and 3 here
    pre = Preprocessor(PreprocessConfig(size=(4, 4), resize="none", layout="NHWC"))
    x = pre.image(_grid(10, 8))
    assert x.shape == (4, 4, 3)
    np.testing.assert_allclose(x[0, :, 0] * 255, [30, 40, 50, 60], atol=1e-4)  # columns 3..6
    np.testing.assert_allclose(x[:, 0, 1] * 255, [20, 30, 40, 50], atol=1e-4)  # rows 2..5


@pytest.mark.parametrize("w, h, expected", [(300, 200, (384, 256)), (200, 300, (256, 384)), (256, 256, (256, 256)),
                                            (333, 500, (256, 384))])
def test_resize_shorter_side(w, h, expected):
    # torchvision Resize(256): shorter side -> 256, longer -> int(256 * long / short)
    cfg = PreprocessConfig(size=None, resize="shorter", resize_to=256, crop="none")
    assert resize_and_crop(Image.new("RGB", (w, h)), cfg).size == expected


def test_resize_shorter_then_crop_gives_the_size():
    cfg = PreprocessConfig(size=(224, 224), resize="shorter", resize_to=256)
    x = Preprocessor(cfg).image(Image.new("RGB", (500, 375), (255, 255, 255)))
    assert x.shape == (3, 224, 224)
    np.testing.assert_allclose(x, 1.0)


def test_resize_shorter_defaults_to_the_crop_size():
    cfg = PreprocessConfig(size=(32, 32), resize="shorter")
    assert resize_and_crop(Image.new("RGB", (64, 48)), cfg).size == (32, 32)


def test_exact_resize_and_missing_size():
    x = Preprocessor(PreprocessConfig(size=(3, 7))).image(Image.new("RGB", (20, 10), (0, 255, 0)))
    assert x.shape == (3, 3, 7)
    np.testing.assert_allclose(x[1], 1.0)
    np.testing.assert_allclose(x[[0, 2]], 0.0)
    with pytest.raises(ConfigError, match="preprocess.size"):
        Preprocessor(PreprocessConfig(size=None)).image(Image.new("RGB", (20, 10)))


def test_crop_larger_than_image_is_an_input_error():
    pre = Preprocessor(PreprocessConfig(size=(16, 16), resize="none"))
    with pytest.raises(InputError, match="8x8 after resizing, smaller than the crop 16x16"):
        pre.image(Image.new("RGB", (8, 8)), "tiny.png")


def test_channel_orders_and_layouts():
    img = Image.new("RGB", (2, 2), (255, 128, 0))
    rgb = Preprocessor(PreprocessConfig(size=(2, 2))).image(img)
    bgr = Preprocessor(PreprocessConfig(size=(2, 2), channels="BGR")).image(img)
    nhwc = Preprocessor(PreprocessConfig(size=(2, 2), layout="NHWC")).image(img)
    gray = Preprocessor(PreprocessConfig(size=(2, 2), channels="L")).image(img)
    np.testing.assert_allclose(rgb[:, 0, 0], [1.0, 128 / 255, 0.0])
    np.testing.assert_allclose(bgr[:, 0, 0], [0.0, 128 / 255, 1.0])
    np.testing.assert_allclose(nhwc[0, 0, :], [1.0, 128 / 255, 0.0])
    assert gray.shape == (1, 2, 2)
    # Pillow's L = R * 299/1000 + G * 587/1000 + B * 114/1000, rounded
    assert gray[0, 0, 0] * 255 == pytest.approx(round(255 * 0.299 + 128 * 0.587), abs=1)
    assert rgb.dtype == np.float32 and rgb.flags.c_contiguous and nhwc.flags.c_contiguous


def test_noise_then_normalize_equals_normalize_then_scaled_noise():
    # the model must receive (x + sigma z - mean) / std: noise in [0, 1] pixel space
    cfg = PreprocessConfig(size=(4, 5), mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    pre = Preprocessor(cfg)
    rng = np.random.default_rng(0)
    x = rng.random((3, 4, 5)).astype(np.float32)
    z = rng.standard_normal((3, 4, 5)).astype(np.float32)
    sigma = 0.5
    direct = (x + sigma * z - np.array(cfg.mean)[:, None, None]) / np.array(cfg.std)[:, None, None]
    fused = pre.normalize(x) + pre.noise_scale(sigma, x.shape) * z
    np.testing.assert_allclose(fused, direct, rtol=1e-5, atol=1e-5)


def test_per_channel_stats_follow_the_layout():
    cfg = PreprocessConfig(size=(2, 2), layout="NHWC", mean=(0.1, 0.2, 0.3), std=(1.0, 2.0, 4.0))
    x = np.zeros((2, 2, 3), np.float32)
    np.testing.assert_allclose(Preprocessor(cfg).normalize(x)[0, 0], [-0.1, -0.1, -0.075])
    np.testing.assert_allclose(Preprocessor(cfg).noise_scale(1.0, x.shape), [1.0, 0.5, 0.25])
    with pytest.raises(ConfigError, match="3 values but the input has 2 channels"):
        Preprocessor(cfg).normalize(np.zeros((2, 2, 2), np.float32))


def test_arrays_are_shape_checked():
    pre = Preprocessor(PreprocessConfig(size=(2, 3)))
    assert pre.array(np.zeros((3, 2, 3))).shape == (3, 2, 3)
    with pytest.raises(InputError, match=r"shape \[2, 3, 3\] but preprocessing expects \[3, 2, 3\]"):
        pre.array(np.zeros((2, 3, 3)), "x.npy[0]")
    gray = Preprocessor(PreprocessConfig(size=(2, 3), channels="L", layout="NHWC"))
    assert gray.array(np.zeros((2, 3))).shape == (2, 3, 1)


@pytest.mark.parametrize("shape, given, expected", [
    (["N", 3, 224, 224], {}, {"layout": "NCHW", "size": [224, 224]}),
    (["N", 224, 224, 3], {}, {"layout": "NHWC", "size": [224, 224]}),
    ([1, 1, 28, 28], {}, {"layout": "NCHW", "size": [28, 28], "channels": "L"}),
    (["N", 3, "H", "W"], {}, {"layout": "NCHW"}),
    (["N", 32, 32, 3], {"layout": "NCHW"}, {"layout": "NCHW", "size": [32, 3]}),
])
def test_model_layer_reads_the_input_shape(shape, given, expected):
    assert model_layer(shape, given) == {"preprocess": expected}


def test_model_layer_ignores_non_image_inputs():
    assert model_layer(["N", 784], {}) == {}
    assert model_layer(None, {}) == {}


def test_check_against_model():
    check_against_model((3, 32, 32), ["N", 3, 32, 32], "x")
    check_against_model((3, 40, 50), ["N", 3, "H", "W"], "x")
    with pytest.raises(ConfigError, match=r"'x' expects \[N, 3, 32, 32\].*\[3, 28, 28\]"):
        check_against_model((3, 28, 28), ["N", 3, 32, 32], "x")
