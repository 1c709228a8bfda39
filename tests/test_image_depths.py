"""Images of every bit depth are read at their true scale, or refused with one clear error.

References: the pixel arrays the files were written from (divided by 2**bits - 1), and for a
resized 16-bit image torch's antialiased bilinear interpolation, which follows Pillow's filter
(measured agreement about 5e-6 on float images).
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from onnxcert.config import PreprocessConfig
from onnxcert.errors import InputError
from onnxcert.inputs import load_inputs, open_image
from onnxcert.preprocess import Preprocessor

NONE = PreprocessConfig(size=None, resize="none", crop="none")


def _png16(path: Path, a: np.ndarray) -> Path:
    """A 16-bit PNG written by hand (Pillow cannot write 16-bit colour): grey [H, W] or RGB [H, W, 3]."""
    h, w = a.shape[:2]
    colour = 0 if a.ndim == 2 else 2
    raw = b"".join(b"\x00" + a[i].astype(">u2").tobytes() for i in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, colour, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    return path


def test_16_bit_grey_png_is_read_at_its_true_scale(tmp_path):
    a = np.random.default_rng(0).integers(0, 65536, (23, 31), dtype=np.uint16)
    a[0, 0], a[0, 1] = 65535, 300  # 300 would read as 255 (clipped) before
    path = _png16(tmp_path / "g16.png", a)
    x = Preprocessor(NONE).image(open_image(path))
    assert x.shape == (3, 23, 31)
    want = a.astype(np.float64) / 65535
    for c in range(3):
        np.testing.assert_allclose(x[c], want, rtol=0, atol=1e-7)
    grey = Preprocessor(PreprocessConfig(size=None, resize="none", crop="none", channels="L")).image(open_image(path))
    np.testing.assert_allclose(grey[0], want, rtol=0, atol=1e-7)


def test_16_bit_grey_resized_matches_an_antialiased_float_resize(tmp_path):
    yy, xx = np.mgrid[0:61, 0:87]
    a = (30000 + 20000 * np.sin(xx / 6.0) * np.cos(yy / 9.0)).astype(np.uint16)
    path = _png16(tmp_path / "g16.png", a)
    cfg = PreprocessConfig(size=(24, 32), resize="exact", crop="center", interpolation="bilinear")
    x = Preprocessor(cfg).image(open_image(path))
    t = torch.from_numpy(a.astype(np.float32) / 65535)[None, None]
    want = torch.nn.functional.interpolate(t, size=(24, 32), mode="bilinear", antialias=True,
                                           align_corners=False)[0, 0].numpy()
    np.testing.assert_allclose(x[0], want, rtol=0, atol=1e-5)


def test_16_bit_colour_png_keeps_its_scale_at_8_bit_precision(tmp_path):
    a = np.random.default_rng(1).integers(0, 65536, (9, 11, 3), dtype=np.uint16)
    x = Preprocessor(NONE).image(open_image(_png16(tmp_path / "c16.png", a)))
    np.testing.assert_allclose(x.transpose(1, 2, 0), a / 65535, rtol=0, atol=1 / 255 + 1e-6)


def test_float_tiff_in_0_1_is_read_as_given(tmp_path):
    f = np.random.default_rng(2).random((13, 17)).astype(np.float32)
    Image.fromarray(f, "F").save(tmp_path / "f.tif")
    x = Preprocessor(NONE).image(open_image(tmp_path / "f.tif"))
    for c in range(3):
        np.testing.assert_array_equal(x[c], f)  # it read as black before


@pytest.mark.parametrize("values, message", [
    (np.full((4, 5), 200.0, np.float32), r"float image with values in \[200, 200\].*rescale"),
    (np.array([[0.5, np.nan]], np.float32), "NaN or inf"),
])
def test_float_tiff_outside_0_1_is_refused(tmp_path, values, message):
    Image.fromarray(values, "F").save(tmp_path / "f.tif")
    with pytest.raises(InputError, match=message):
        open_image(tmp_path / "f.tif")


def test_32_bit_integer_image_is_refused(tmp_path):
    Image.fromarray(np.full((4, 5), 7, np.int32), "I").save(tmp_path / "i.tif")
    with pytest.raises(InputError, match="32-bit integer pixels, whose scale is unknown"):
        open_image(tmp_path / "i.tif")


def test_a_folder_skips_a_refused_image_like_a_corrupt_one(tmp_path):
    (tmp_path / "0").mkdir()
    Image.fromarray(np.full((4, 5), 200.0, np.float32), "F").save(tmp_path / "0" / "f.tif")
    items = load_inputs(tmp_path)
    with pytest.raises(InputError, match="f.tif"):
        items.load(0)


def test_cli_refuses_a_float_image_in_one_line(tmp_path):
    from tests.cli_helpers import cli, error_line
    from tests.onnx_models import channel_means

    model = channel_means(tmp_path / "m.onnx")
    Image.fromarray(np.full((8, 8), 3.0, np.float32), "F").save(tmp_path / "f.tif")
    res = cli("run", model, tmp_path / "f.tif", "--sigma", "0.25", "--n", "10", "-o", tmp_path / "r.json")
    assert res.exit_code == 2
    assert "float image with values in [3, 3]" in error_line(res)
    assert not (tmp_path / "r.json").exists()
