"""Preprocessing written down elsewhere -> an onnxcert config layer (``preprocess: {from: FILE}``).

Two formats are read, each into the ``preprocess`` section (and ``model.classes`` when the file
names the classes), so that a model needs no hand-translated config:

- timm's data config (``timm.data.resolve_data_config``: ``input_size``, ``interpolation``,
  ``crop_pct``, ``crop_mode``, ``mean``, ``std``), bare or as the ``pretrained_cfg`` of a hub
  ``config.json`` (whose ``label_names`` name the classes). timm's eval transform is
  ``Resize(floor(size / crop_pct))`` then ``CenterCrop(size)`` for ``crop_mode: center``, and a
  resize of both sides to ``floor(size / crop_pct)`` for ``squash``; missing keys take timm's
  defaults (bicubic, crop_pct 0.875, ImageNet mean and std).
- A Hugging Face ``preprocessor_config.json`` (``do_resize``, ``size`` as ``shortest_edge`` or
  ``height``/``width``, ``resample``, ``do_center_crop``, ``crop_size``, ``crop_pct``,
  ``do_rescale`` and ``rescale_factor``, ``do_normalize``, ``image_mean``, ``image_std``), with
  class names from ``id2label`` in that file or in the ``config.json`` beside it. HF truncates the
  resized side and floors the crop offsets; both are expressed with ``resize_round`` and
  ``crop_offset``. HF's ``(p * rescale_factor - m) / s`` on 0..255 pixels p is onnxcert's
  ``(x - mean) / std`` on x = p / 255 with ``mean = m / (255 rescale_factor)`` and
  ``std = s / (255 rescale_factor)``.

Keys written beside ``from`` in the same layer override what the file says. Anything the file
asks for that onnxcert cannot do exactly (timm's ``border`` crop, HF's ``longest_edge``) is a
ConfigError rather than a silently different tensor.

Class names in a model's own metadata under common keys (``classes``, ``class_names``,
``labels``, ``names``, ``id2label``; a JSON list or a mapping of index to name) are read by
``classes_from_metadata``.
"""

from __future__ import annotations

import ast
import json
import logging
import math
from pathlib import Path
from typing import Any, Mapping

from .errors import ConfigError

log = logging.getLogger("onnxcert")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TIMM_DEFAULTS = {"input_size": (3, 224, 224), "interpolation": "bicubic", "crop_pct": 0.875,
                 "crop_mode": "center", "mean": IMAGENET_MEAN, "std": IMAGENET_STD}
# transformers' PILImageResampling, which is Pillow's numbering
HF_RESAMPLE = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}
HF_KEYS = ("image_processor_type", "feature_extractor_type", "do_resize", "do_normalize", "image_mean",
           "resample", "crop_size", "do_rescale")
METADATA_CLASS_KEYS = ("classes", "class_names", "labels", "names", "id2label")


def expand_from(layer: Mapping | None, base: Path | None = None) -> dict:
    """``layer`` with ``preprocess.from`` replaced by what the file says, under the layer's own keys.

    A relative path is taken from ``base`` (the config file's folder) when given.
    """
    layer = dict(layer or {})
    pre = layer.get("preprocess")
    if not isinstance(pre, Mapping) or pre.get("from") is None:
        return layer
    path = pre["from"]
    if not isinstance(path, (str, Path)):
        raise ConfigError(f"preprocess.from must be a file name, got {path!r}")
    path = Path(path)
    if base is not None and not path.is_absolute():
        path = base / path
    read = read_preprocessing(path)
    own = {k: v for k, v in pre.items() if k != "from"}
    layer["preprocess"] = {**read.get("preprocess", {}), **{k: v for k, v in own.items() if v is not None}}
    if "model" in read:
        given = dict(layer.get("model") or {})
        layer["model"] = {**read["model"], **{k: v for k, v in given.items() if v is not None}}
    return layer


def read_preprocessing(path: str | Path) -> dict:
    """A timm data config or HF preprocessor_config.json -> ``{"preprocess": {...}, "model": {...}}``."""
    path = Path(path)
    data = _read_json(path)
    where = f"preprocess.from {str(path)!r}"
    if "pretrained_cfg" in data and isinstance(data["pretrained_cfg"], Mapping):
        layer = timm_layer(data["pretrained_cfg"], where)
        names = data.get("label_names")
        if names is not None:
            layer["model"] = {"classes": _names(names, f"{where} label_names")}
        return layer
    if "input_size" in data or ("crop_pct" in data and "image_mean" not in data):
        return timm_layer(data, where)
    if any(k in data for k in HF_KEYS):
        layer = hf_layer(data, where)
        classes = _hf_classes(data, path, where)
        if classes is not None:
            layer["model"] = {"classes": classes}
        return layer
    raise ConfigError(f"{where} is neither a timm data config (input_size, crop_pct, ...) nor a Hugging Face "
                      f"preprocessor_config.json (do_resize, size, image_mean, ...); found keys: "
                      f"{', '.join(sorted(data)) or 'none'}")


def _read_json(path: Path) -> dict:
    from .untrusted import input_file, parse_json, shown

    input_file(path, "preprocess.from", ConfigError)  # not there, a directory, a FIFO
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"preprocess.from {shown(path)} cannot be read ({type(exc).__name__})") from None
    data = parse_json(text, f"preprocess.from {shown(path)}", ConfigError)  # bounded depth, one line
    if not isinstance(data, dict):
        raise ConfigError(f"preprocess.from {str(path)!r} must hold a JSON object, got {type(data).__name__}")
    return data


# ---------------------------------------------------------------- timm


def timm_layer(cfg: Mapping, where: str) -> dict:
    """timm's eval transform (``transforms_imagenet_eval``) as a ``preprocess`` section."""
    c = {**TIMM_DEFAULTS, **{k: v for k, v in cfg.items() if v is not None}}
    size = c["input_size"]
    if not (isinstance(size, (list, tuple)) and len(size) == 3 and all(_int(v) for v in size)):
        raise ConfigError(f"{where}: input_size must be [C, H, W], got {size!r}")
    chans, h, w = (int(v) for v in size)
    crop_pct = c["crop_pct"]
    if not isinstance(crop_pct, (int, float)) or isinstance(crop_pct, bool) or not 0 < crop_pct <= 4:
        raise ConfigError(f"{where}: crop_pct must be a number in (0, 4], got {crop_pct!r}")
    out: dict[str, Any] = {"size": [h, w], "interpolation": _interpolation(c["interpolation"], where),
                           "mean": _floats(c["mean"], f"{where} mean"), "std": _floats(c["std"], f"{where} std"),
                           "crop": "center", "crop_offset": "round"}
    if chans == 1:
        out["channels"] = "L"
    scaled = [math.floor(h / crop_pct), math.floor(w / crop_pct)]
    mode = c["crop_mode"]
    if mode == "squash":
        out.update(resize="exact", resize_to=scaled)
    elif mode == "center":
        if h != w:
            raise ConfigError(f"{where}: a non-square input_size {[h, w]} with crop_mode 'center' "
                              "(timm's ResizeKeepRatio) is not supported; write preprocess: by hand")
        out.update(resize="shorter", resize_to=scaled[0], resize_round="floor")
    else:
        raise ConfigError(f"{where}: crop_mode {mode!r} is not supported (center or squash); "
                          "write preprocess: by hand")
    return {"preprocess": out}


def _interpolation(name: Any, where: str) -> str:
    allowed = ("nearest", "bilinear", "bicubic", "lanczos")
    if name not in allowed:
        raise ConfigError(f"{where}: interpolation {name!r} is not supported (one of {', '.join(allowed)})")
    return name


# ---------------------------------------------------------------- Hugging Face


def hf_layer(cfg: Mapping, where: str) -> dict:
    """A transformers image processor's settings as a ``preprocess`` section (the PIL path)."""
    out: dict[str, Any] = {"channels": "RGB", "crop_offset": "floor", "resize_round": "floor"}
    do_crop = bool(cfg.get("do_center_crop", cfg.get("crop_size") is not None))
    crop = _hw(cfg.get("crop_size"), f"{where} crop_size") if do_crop else None
    if do_crop and crop is None:
        raise ConfigError(f"{where}: do_center_crop is true but crop_size is missing")
    if cfg.get("do_resize", True):
        out["interpolation"] = _hf_resample(cfg.get("resample"), where)
        out.update(_hf_resize(cfg, crop, where))
    else:
        out.update(resize="none", crop="center" if crop else "none")
        if crop:
            out["size"] = list(crop)
    rescale = 1.0
    if cfg.get("do_rescale", True):
        rescale = cfg.get("rescale_factor", 1 / 255)
        if not isinstance(rescale, (int, float)) or isinstance(rescale, bool) or not rescale > 0:
            raise ConfigError(f"{where}: rescale_factor must be a positive number, got {rescale!r}")
    unit = 255.0 * rescale  # model value per unit of x in [0, 1]
    if cfg.get("do_normalize", True):
        for key in ("image_mean", "image_std"):
            if cfg.get(key) is None:
                raise ConfigError(f"{where}: do_normalize is true but {key} is missing")
        mean, std = _floats(cfg["image_mean"], f"{where} image_mean"), _floats(cfg["image_std"], f"{where} image_std")
    else:
        mean, std = [0.0], [1.0]
    out["mean"] = [m / unit for m in mean]
    out["std"] = [s / unit for s in std]
    return {"preprocess": out}


def _hf_resize(cfg: Mapping, crop: tuple[int, int] | None, where: str) -> dict:
    size = cfg.get("size")
    crop_pct = cfg.get("crop_pct")
    if size is None:
        raise ConfigError(f"{where}: do_resize is true but size is missing")
    if _int(size):  # legacy int: the shorter side where a crop (or ConvNext's crop_pct) follows, else a square
        size = {"shortest_edge": int(size)} if crop or crop_pct is not None else {"height": size, "width": size}
    if not isinstance(size, Mapping):
        raise ConfigError(f"{where}: size must be an integer or a mapping, got {size!r}")
    keys = set(size)
    if keys == {"height", "width"}:
        hw = _hw(size, f"{where} size")
        if crop:
            return {"resize": "exact", "resize_to": list(hw), "size": list(crop), "crop": "center"}
        return {"resize": "exact", "size": list(hw), "crop": "none"}
    if keys == {"shortest_edge"}:
        edge = size["shortest_edge"]
        if not _int(edge) or edge < 1:
            raise ConfigError(f"{where}: size.shortest_edge must be a positive integer, got {edge!r}")
        if crop_pct is not None:  # ConvNextImageProcessor
            if edge >= 384:
                return {"resize": "exact", "size": [edge, edge], "crop": "none"}
            return {"resize": "shorter", "resize_to": int(edge / crop_pct), "size": [edge, edge], "crop": "center"}
        if crop:
            return {"resize": "shorter", "resize_to": edge, "size": list(crop), "crop": "center"}
        return {"resize": "shorter", "resize_to": edge, "crop": "none"}
    raise ConfigError(f"{where}: size {dict(size)!r} is not supported (shortest_edge, or height and width); "
                      "write preprocess: by hand")


def _hf_resample(value: Any, where: str) -> str:
    if value is None:
        log.warning("warning: %s has do_resize but no resample; using bilinear (set preprocess.interpolation)", where)
        return "bilinear"
    name = HF_RESAMPLE.get(value) if _int(value) else None
    if name not in ("nearest", "bilinear", "bicubic", "lanczos"):
        raise ConfigError(f"{where}: resample {value!r} is not supported (0 nearest, 1 lanczos, 2 bilinear, 3 bicubic)")
    return name


def _hf_classes(cfg: Mapping, path: Path, where: str) -> list[str] | None:
    if cfg.get("id2label") is not None:
        return _names(cfg["id2label"], f"{where} id2label")
    beside = path.parent / "config.json"
    if beside.is_file() and beside.resolve() != path.resolve():
        try:
            model_cfg = json.loads(beside.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return None
        if isinstance(model_cfg, dict) and isinstance(model_cfg.get("id2label"), dict):
            log.info("class names from id2label in %s", beside)
            return _names(model_cfg["id2label"], f"{beside} id2label")
    return None


# ---------------------------------------------------------------- class names


def classes_from_metadata(props: Mapping[str, str]) -> list[str] | None:
    """Class names a model carries under a common metadata key, or None.

    Values may be a JSON list, a JSON object of index -> name, or a Python dict literal (as some
    exporters write ``names``). A value that does not parse is ignored with a warning.
    """
    for key in METADATA_CLASS_KEYS:
        text = props.get(key)
        if text is None:
            continue
        value = _parse_literal(text)
        try:
            return _names(value, f"model metadata {key!r}")
        except ConfigError as exc:
            log.warning("warning: ignoring class names in the model's metadata: %s", exc)
    return None


def read_class_names(value: str) -> list[str]:
    """--classes: a file (.txt, one name per line; .json, a list or index -> name) or a
    comma-separated list."""
    path = Path(value)
    if path.suffix.lower() in (".txt", ".json", ".names") or path.is_file():
        if not path.is_file():
            raise ConfigError(f"--classes file {value!r} does not exist")
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"--classes file {value!r} cannot be read ({type(exc).__name__})") from None
        if path.suffix.lower() == ".json":
            try:
                return _names(json.loads(text), f"--classes {value!r}")
            except json.JSONDecodeError:
                raise ConfigError(f"--classes file {value!r} is not valid JSON") from None
        names = [line.strip() for line in text.splitlines() if line.strip()]
    else:
        names = [v.strip() for v in value.split(",") if v.strip()]
    if not names:
        raise ConfigError(f"--classes {value!r} names no classes")
    return names


def _parse_literal(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return [v.strip() for v in text.split(",")] if "," in text else None


def _names(value: Any, where: str) -> list[str]:
    """A list of names, or a mapping of 0..k-1 (ints or digit strings) to names."""
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, (str, int)) for v in value):
        return [str(v) for v in value]
    if isinstance(value, Mapping) and value:
        try:
            by_index = {int(k): str(v) for k, v in value.items()}
        except (TypeError, ValueError):
            raise ConfigError(f"{where} must map class indices to names") from None
        if sorted(by_index) != list(range(len(by_index))):
            raise ConfigError(f"{where} must map every index 0..{len(by_index) - 1} to a name")
        return [by_index[i] for i in range(len(by_index))]
    raise ConfigError(f"{where} must be a list of class names or a mapping of index to name")


# ---------------------------------------------------------------- small checks


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _floats(value: Any, where: str) -> list[float]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value]
    if (not isinstance(value, (list, tuple)) or not value
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
        raise ConfigError(f"{where} must be a list of numbers, got {value!r}")
    return [float(v) for v in value]


def _hw(value: Any, where: str) -> tuple[int, int] | None:
    if value is None:
        return None
    if _int(value):
        return int(value), int(value)
    if isinstance(value, Mapping) and set(value) == {"height", "width"} and all(_int(v) for v in value.values()):
        return int(value["height"]), int(value["width"])
    raise ConfigError(f"{where} must be an integer or {{height, width}}, got {value!r}")
