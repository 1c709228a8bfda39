"""From a decoded image to the model's input: resize, crop, channel order, layout, normalization.

The clean image x is float32 in [0, 1] pixel space after resize and crop. The smoothing noise is
added to x there; the model then receives (x + noise - mean) / std. Because normalization is
affine, that equals (x - mean) / std + noise * (sigma / std), which is how ``sampling`` builds its
batches: one normalized clean image, plus noise scaled per channel.

Resizing follows torchvision's PIL path, so configs written from a model's documentation
(``Resize(256)``, ``CenterCrop(224)``) mean the same thing here: bilinear with antialiasing, the
shorter side scaled to ``resize_to`` (the longer side truncated to an int), then a centre crop
with rounded offsets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from .config import PreprocessConfig
from .errors import ConfigError, InputError


@dataclass(frozen=True)
class Preprocessor:
    """Turns inputs into clean float32 samples in [0, 1], in the model's layout."""

    config: PreprocessConfig

    @property
    def n_channels(self) -> int:
        return 1 if self.config.channels == "L" else 3

    @property
    def sample_shape(self) -> tuple[int, ...] | None:
        """[C, H, W] or [H, W, C] when the size is fixed; None when it follows each image."""
        if self.config.size is None:
            return None
        h, w = self.config.size
        return (self.n_channels, h, w) if self.config.layout == "NCHW" else (h, w, self.n_channels)

    def image(self, img, name: str = "image") -> np.ndarray:
        """A PIL image -> float32 [C, H, W] or [H, W, C] in [0, 1]."""
        img = resize_and_crop(img, self.config, name)
        mode = "L" if self.config.channels == "L" else "RGB"
        a = np.asarray(img.convert(mode) if img.mode != mode else img, dtype=np.float32) / np.float32(255)
        if a.ndim == 2:
            a = a[:, :, None]
        if self.config.channels == "BGR":
            a = a[:, :, ::-1]
        if self.config.layout == "NCHW":
            a = a.transpose(2, 0, 1)
        return np.ascontiguousarray(a)

    def array(self, row: np.ndarray, name: str = "array") -> np.ndarray:
        """An array row, already in [0, 1] and in the model's layout; shape-checked."""
        row = np.asarray(row, dtype=np.float32)
        want = self.sample_shape
        if want is not None and row.ndim == 2 and self.n_channels == 1:
            row = row[None] if self.config.layout == "NCHW" else row[:, :, None]
        if want is not None and row.shape != want:
            raise InputError(f"{name} has shape {list(row.shape)} but preprocessing expects {list(want)} "
                             f"({self.config.layout}, channels {self.config.channels}, size {list(self.config.size)})")
        return np.ascontiguousarray(row)

    def prepare(self, item, name: str = "input") -> np.ndarray:
        """Either kind of input -> the clean sample x in [0, 1]."""
        return self.array(item, name) if isinstance(item, np.ndarray) else self.image(item, name)

    def _per_channel(self, values: Sequence[float], shape: tuple[int, ...]) -> np.ndarray:
        v = np.asarray(values, dtype=np.float32)
        if v.size == 1:
            return v.reshape(())
        if len(shape) != 3:
            raise ConfigError(f"per-channel mean/std need [C, H, W] or [H, W, C] inputs, got shape {list(shape)}")
        c_axis = 0 if self.config.layout == "NCHW" else 2
        if shape[c_axis] != v.size:
            raise ConfigError(f"preprocess.mean/std have {v.size} values but the input has {shape[c_axis]} "
                              f"channels on the {self.config.layout} channel axis (shape {list(shape)})")
        return v.reshape((-1, 1, 1)) if c_axis == 0 else v

    def normalize(self, x: np.ndarray) -> np.ndarray:
        """(x - mean) / std on one sample, as float32."""
        mean = self._per_channel(self.config.mean, x.shape)
        std = self._per_channel(self.config.std, x.shape)
        return ((x - mean) / std).astype(np.float32)

    def noise_scale(self, sigma: float, shape: tuple[int, ...]) -> np.ndarray:
        """sigma / std, broadcastable to a sample: the noise's scale after normalization."""
        return (np.float32(sigma) / self._per_channel(self.config.std, shape)).astype(np.float32)


def resize_and_crop(img, cfg: PreprocessConfig, name: str = "image"):
    """resize: exact (to size) | shorter (shorter side to resize_to) | none; then a centre crop."""
    from PIL import Image

    w, h = img.size
    if cfg.resize == "exact":
        if cfg.size is None:
            raise ConfigError("preprocess.resize is 'exact' but preprocess.size is not set and the "
                              "model's input has no fixed height and width; set preprocess.size: [H, W]")
        th, tw = cfg.size
        if (h, w) != (th, tw):
            img = img.resize((tw, th), Image.BILINEAR)
    elif cfg.resize == "shorter":
        target = cfg.resize_to or (max(cfg.size) if cfg.size else None)
        if target is None:
            raise ConfigError("preprocess.resize is 'shorter' but neither preprocess.resize_to nor "
                              "preprocess.size is set")
        short, long = (w, h) if w <= h else (h, w)
        new_long = int(target * long / short)
        size = (target, new_long) if w <= h else (new_long, target)
        if size != (w, h):
            img = img.resize(size, Image.BILINEAR)
    if cfg.crop == "center" and cfg.size is not None:
        img = center_crop(img, cfg.size, name)
    return img


def planned_size(width: int, height: int, cfg: PreprocessConfig) -> tuple[int, int]:
    """(H, W) that ``resize_and_crop`` gives an image of ``width`` x ``height``, computed without
    decoding it (the same arithmetic); the crop's own size when it cannot be reached."""
    w, h = width, height
    if cfg.resize == "exact" and cfg.size is not None:
        h, w = cfg.size
    elif cfg.resize == "shorter":
        target = cfg.resize_to or (max(cfg.size) if cfg.size else None)
        if target is not None:
            short, long = (w, h) if w <= h else (h, w)
            new_long = int(target * long / short)
            w, h = (target, new_long) if w <= h else (new_long, target)
    if cfg.crop == "center" and cfg.size is not None:
        h, w = cfg.size
    return h, w


def center_crop(img, size: tuple[int, int], name: str = "image"):
    th, tw = size
    w, h = img.size
    if (h, w) == (th, tw):
        return img
    if h < th or w < tw:
        raise InputError(f"{name} is {w}x{h} after resizing, smaller than the crop {tw}x{th} "
                         "(set preprocess.resize or preprocess.resize_to)")
    top, left = int(round((h - th) / 2.0)), int(round((w - tw) / 2.0))
    return img.crop((left, top, left + tw, top + th))


def guess_layout(dims: Sequence) -> str:
    """NHWC when only the last of three dims looks like a channel count; else NCHW."""
    looks = lambda d: d in (1, 3, 4)  # noqa: E731
    return "NHWC" if looks(dims[2]) and not looks(dims[0]) else "NCHW"


def model_layer(input_shape: Sequence | None, given: Mapping) -> dict:
    """Preprocessing the model's input shape implies, as the lowest-precedence config layer.

    ``given`` is the merged ``preprocess`` section of the user's layers: a layout given there
    decides how the dims are read, and nothing given there is overridden.
    """
    if input_shape is None or len(input_shape) != 4:
        return {}
    dims = list(input_shape[1:])
    layout = given.get("layout") or guess_layout(dims)
    c, h, w = (dims[0], dims[1], dims[2]) if layout == "NCHW" else (dims[2], dims[0], dims[1])
    out: dict = {"layout": layout}
    if isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0:
        out["size"] = [h, w]
    if c == 1:
        out["channels"] = "L"
    return {"preprocess": out}


def check_against_model(sample_shape: Sequence[int], input_shape: Sequence | None, input_name: str) -> None:
    """The clean sample must fit the model's fixed dims (symbolic dims accept anything)."""
    if input_shape is None:
        return
    want = list(input_shape[1:])
    ok = len(want) == len(sample_shape) and all(not isinstance(d, int) or d <= 0 or d == s
                                                 for d, s in zip(want, sample_shape))
    if not ok:
        shown = ["N"] + ["?" if not isinstance(d, int) else str(d) for d in want]
        raise ConfigError(f"model input {input_name!r} expects [{', '.join(shown)}] but preprocessing "
                          f"produces samples of shape {list(sample_shape)}; check preprocess.size, "
                          "layout and channels")
