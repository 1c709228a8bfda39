"""From a decoded image to the model's input: resize, crop, channel order, layout, normalization.

The clean image x is float32 in [0, 1] pixel space after resize and crop. The smoothing noise is
added to x there; the model then receives (x + noise - mean) / std. Because normalization is
affine, that equals (x - mean) / std + noise * (sigma / std), which is how ``sampling`` builds its
batches: one normalized clean image, plus noise scaled per channel.

Resizing follows torchvision's PIL path, so configs written from a model's documentation
(``Resize(256)``, ``CenterCrop(224)``) mean the same thing here: the image is first converted to
the target mode (RGB or L), then resized with Pillow's antialiasing filter (``interpolation``,
bilinear by default), the shorter side scaled to ``resize_to`` (the longer side floored, or
rounded with ``resize_round: round``), then centre-cropped with rounded offsets (floored with
``crop_offset: floor``, as Hugging Face does). ``preprocess_configs`` writes these settings from
timm and Hugging Face files. Images of higher bit depth are resized as float planes at their true
scale.
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
        img, copies = to_target_mode(img, self.config.channels, name)
        a = _hwc(resize_and_crop(img, self.config, name))
        if copies > 1:
            a = np.repeat(a, copies, axis=2)
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


def to_target_mode(img, channels: str, name: str = "image"):
    """The image in the target mode, before any resizing (torchvision's loader converts to RGB first,
    so a palette or RGBA image is resized as RGB, not as palette indices).

    Returns the image and how many channels it stands for: 8-bit images become RGB or L (1);
    grey images of higher bit depth (16-bit, float) become one float plane (Pillow mode F) at its
    true scale in [0, 1], repeated for each output channel.
    """
    from .inputs import true_scale

    img = true_scale(img, name)
    if img.mode == "F":
        return img, 1 if channels == "L" else 3
    want = "L" if channels == "L" else "RGB"
    if img.mode == want:
        return img, 1
    try:
        return img.convert(want), 1
    except (ValueError, OSError) as exc:
        raise InputError(f"{name} has mode {img.mode}, which Pillow cannot convert to {want} ({exc})") from None


def _hwc(plane) -> np.ndarray:
    """An RGB, L or F image -> float32 [H, W, C] in [0, 1]."""
    a = np.asarray(plane, dtype=np.float32)
    a = np.clip(a, 0, 1) if plane.mode == "F" else a / np.float32(255)  # F: resampling overshoot, as 8-bit clips
    return a[:, :, None] if a.ndim == 2 else a


def _filter(name: str):
    from PIL import Image

    return {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC,
            "lanczos": Image.LANCZOS}[name]


def resized_size(w: int, h: int, cfg: PreprocessConfig) -> tuple[int, int] | None:
    """(width, height) after ``cfg.resize``, or None for ``resize: none``.

    exact: to ``resize_to`` ([H, W], or a square) when set, else to ``size``.
    shorter: the shorter side to ``resize_to`` (default: the larger of ``size``), the longer side
    ``resize_to * long / short`` floored (torchvision, HF) or rounded (timm's ResizeKeepRatio).
    """
    if cfg.resize == "exact":
        target = cfg.resize_to or cfg.size
        if target is None:
            raise ConfigError("preprocess.resize is 'exact' but preprocess.size is not set and the "
                              "model's input has no fixed height and width; set preprocess.size: [H, W]")
        th, tw = (target, target) if isinstance(target, int) else target
        return tw, th
    if cfg.resize == "shorter":
        target = cfg.resize_to or (max(cfg.size) if cfg.size else None)
        if target is None:
            raise ConfigError("preprocess.resize is 'shorter' but neither preprocess.resize_to nor "
                              "preprocess.size is set")
        short, long = (w, h) if w <= h else (h, w)
        scaled = target * long / short
        new_long = int(scaled) if cfg.resize_round == "floor" else int(round(scaled))
        return (target, new_long) if w <= h else (new_long, target)
    return None


def resize_and_crop(img, cfg: PreprocessConfig, name: str = "image"):
    """resize: exact | shorter | none, with ``cfg.interpolation`` (Pillow, antialiased as torchvision's
    PIL path); then a centre crop to ``cfg.size``."""
    size = resized_size(img.size[0], img.size[1], cfg)
    if size is not None and size != img.size:
        img = img.resize(size, _filter(cfg.interpolation))
    if cfg.crop == "center" and cfg.size is not None:
        img = center_crop(img, cfg.size, name, cfg.crop_offset)
    return img


def planned_size(width: int, height: int, cfg: PreprocessConfig) -> tuple[int, int]:
    """(H, W) that ``resize_and_crop`` gives an image of ``width`` x ``height``, from its header
    alone (the same arithmetic, nothing decoded)."""
    size = resized_size(width, height, cfg)
    w, h = size if size is not None else (width, height)
    if cfg.crop == "center" and cfg.size is not None:
        h, w = cfg.size
    return h, w


def center_crop(img, size: tuple[int, int], name: str = "image", offset: str = "round"):
    """Offsets (H - h) / 2 rounded half to even (torchvision) or floored (Hugging Face)."""
    th, tw = size
    w, h = img.size
    if (h, w) == (th, tw):
        return img
    if h < th or w < tw:
        raise InputError(f"{name} is {w}x{h} after resizing, smaller than the crop {tw}x{th} "
                         "(set preprocess.resize or preprocess.resize_to)")
    if offset == "floor":
        top, left = (h - th) // 2, (w - tw) // 2
    else:
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
