"""Settings, merged once by ``resolve``: CLI > config file > model metadata > model shape > defaults.

A configuration is four sections (see ``configs/template.yaml``)::

    model:      {input, output, output_kind, classes}
    preprocess: {from, size, resize, resize_to, crop, channels, layout, mean, std,
                 interpolation, resize_round, crop_offset}
    smoothing:  {sigma, alpha, n0, n, batch_size, seed}
    certify:    {measures, methods, thresholds: {score, margin}, radii}

Each layer is a nested dict with those sections; ``merge`` overlays them key by key and
``build_config`` validates the result into frozen dataclasses. ``resolve`` is the one function
that decides which layer wins; every command and the Python API call it. Unknown keys and bad values raise
ConfigError naming the key, the value and what is allowed.
"""

from __future__ import annotations

import difflib
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import yaml

from .errors import ConfigError
from .stats.measures import MEASURES
from .stats.names import METHODS
from .values import finite_number

log = logging.getLogger("onnxcert")
from .untrusted import check_tree, clip, input_file, parse_json, quote, shown

METADATA_KEYS = {"model": "onnxcert.model", "preprocess": "onnxcert.preprocess",
                 "smoothing": "onnxcert.smoothing", "certify": "onnxcert.certify"}

DEFAULT_THRESHOLDS = {"score": (0.5, 0.6, 0.7, 0.8, 0.9), "margin": (0.0, 0.2, 0.4, 0.6, 0.8)}
DEFAULT_RADII = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5)
OUTPUT_KINDS = ("auto", "logits", "probabilities")
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos")

SCHEMA: dict[str, tuple[str, ...]] = {
    "model": ("input", "output", "output_kind", "classes"),
    "preprocess": ("from", "size", "resize", "resize_to", "crop", "channels", "layout", "mean", "std",
                   "interpolation", "resize_round", "crop_offset"),
    "smoothing": ("sigma", "alpha", "n0", "n", "batch_size", "seed"),
    "certify": ("measures", "methods", "thresholds", "radii"),
}


@dataclass(frozen=True)
class ModelConfig:
    input: str | None = None
    output: str | None = None
    output_kind: str = "auto"
    classes: tuple[str, ...] | None = None


@dataclass(frozen=True)
class PreprocessConfig:
    """How an image becomes the model's input. Noise is added to x in [0, 1] after resize and
    crop; the model then receives (x + noise - mean) / std."""

    size: tuple[int, int] | None = None
    resize: str = "exact"  # exact | shorter | none
    resize_to: int | tuple[int, int] | None = None  # shorter: INT; exact: [H, W] before the crop
    crop: str = "center"  # center | none
    channels: str = "RGB"  # RGB | BGR | L
    layout: str = "NCHW"  # NCHW | NHWC
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    interpolation: str = "bilinear"  # nearest | bilinear | bicubic | lanczos (Pillow's filters)
    resize_round: str = "floor"  # the longer side after `shorter`: floor (torchvision, HF) | round (timm)
    crop_offset: str = "round"  # centre-crop offsets: round (torchvision, timm) | floor (HF)


@dataclass(frozen=True)
class Settings:
    """The smoothing and certification settings reported with every result.

    ``batch_size`` is None until a run resolves it (``pipeline.prepare`` fills in the automatic
    choice); ``sigma`` is None only in what ``resolve(require_sigma=False)`` returns (``inspect``).
    """

    sigma: float
    alpha: float = 0.001
    n0: int = 100
    n: int = 100_000
    batch_size: int | None = None
    seed: int = 0
    measures: tuple[str, ...] = ("score", "margin")
    methods: tuple[str, ...] = ("naive", "cdf-dkw", "cdf-bj")
    thresholds: Mapping[str, tuple[float, ...]] = field(default_factory=lambda: dict(DEFAULT_THRESHOLDS))
    radii: tuple[float, ...] = DEFAULT_RADII

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["measures"], d["methods"], d["radii"] = list(self.measures), list(self.methods), list(self.radii)
        d["thresholds"] = {m: list(self.thresholds[m]) for m in self.measures}
        return d


@dataclass(frozen=True)
class Config:
    model: ModelConfig
    preprocess: PreprocessConfig
    settings: Settings


def config_sections(cfg: Config) -> dict[str, dict[str, Any]]:
    """The resolved configuration in the config file's four sections, as plain JSON values: what
    a run used, every layer merged. ``-c`` accepts it back (written as YAML)."""
    settings = cfg.settings.to_dict()
    plain = lambda v: list(v) if isinstance(v, tuple) else v  # noqa: E731
    model, pre = asdict(cfg.model), asdict(cfg.preprocess)
    return {"model": {k: plain(model[k]) for k in SCHEMA["model"] if k in model},
            "preprocess": {k: plain(pre[k]) for k in SCHEMA["preprocess"] if k in pre},
            "smoothing": {k: settings[k] for k in SCHEMA["smoothing"]},
            "certify": {k: settings[k] for k in SCHEMA["certify"]}}


# ---------------------------------------------------------------- layers


def read_yaml(path: str | Path, what: str = "config file"):
    """``yaml.safe_load`` of a file, with one-line ConfigErrors naming ``what`` and the problem.

    Only plain YAML is accepted: tags such as ``!!python/object`` are refused by safe_load.
    Aliases that expand to millions of values (an alias bomb) and deep nesting are refused too
    (see ``untrusted.check_tree``).
    """
    path = input_file(path, what, ConfigError)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError, OSError) as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}" if where is not None else ""
        problem = getattr(exc, "problem", None)
        why = f": {quote(problem)[1:-1]}" if isinstance(problem, str) else ""
        raise ConfigError(f"{what} {shown(path)} is not valid YAML{at}{why}") from None
    except RecursionError:
        raise ConfigError(f"{what} {shown(path)} is nested too deeply") from None
    check_tree(data, f"{what} {shown(path)}", ConfigError)
    return data


def load_yaml(path: str | Path) -> dict:
    """Read a config file with ``yaml.safe_load``; one-line errors for every failure."""
    data = read_yaml(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {shown(path)} must hold a mapping of sections, got {type(data).__name__}")
    check_keys(data, source=str(path))
    from .preprocess_configs import expand_from

    return expand_from(data, base=Path(path).parent)  # a relative `from` is beside the config file


def metadata_layer(props: Mapping[str, str], source: str = "model metadata") -> dict:
    """Sections stored by the exporters as JSON under ``onnxcert.*`` metadata_props keys."""
    layer = {}
    for section, key in METADATA_KEYS.items():
        if key in props:
            value = parse_json(props[key], f"{source}: {key}", ConfigError)
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: {key} must be a JSON object")
            layer[section] = value
    check_keys(layer, source=source)
    if "from" in (layer.get("preprocess") or {}):
        raise ConfigError(f"{source}: preprocess.from names a file and belongs in a config file, not in a model")
    return layer


def cli_layer(**flags: Any) -> dict:
    """Map CLI flags (None = not given) onto config sections."""
    where = {"sigma": "smoothing", "alpha": "smoothing", "n0": "smoothing", "n": "smoothing",
             "batch_size": "smoothing", "seed": "smoothing", "measures": "certify",
             "methods": "certify", "radii": "certify", "output_kind": "model",
             "input_name": "model", "output_name": "model"}
    rename = {"input_name": "input", "output_name": "output"}
    layer: dict[str, dict] = {}
    for flag, value in flags.items():
        if value is None:
            continue
        if flag in ("score_thresholds", "margin_thresholds"):
            layer.setdefault("certify", {}).setdefault("thresholds", {})[flag.split("_")[0]] = value
            continue
        layer.setdefault(where[flag], {})[rename.get(flag, flag)] = value
    return layer


def check_keys(data: Mapping, source: str) -> None:
    """Unknown sections or keys: name the key and the nearest valid one."""
    for section, body in data.items():
        if section not in SCHEMA:
            raise ConfigError(f"{source}: unknown section {quote(section)}{nearest(clip(section), SCHEMA)}")
        if body is None:
            continue
        if not isinstance(body, dict):
            raise ConfigError(f"{source}: section {quote(section)} must be a mapping, got {type(body).__name__}")
        for key in body:
            if key not in SCHEMA[section]:
                raise ConfigError(f"{source}: unknown key {section}.{clip(key)}{nearest(clip(key), SCHEMA[section])}")


def nearest(word: str, options) -> str:
    """' (did you mean X?)' for the closest valid name, else ' (valid: ...)'."""
    close = difflib.get_close_matches(str(word), list(options), n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else f" (valid: {', '.join(options)})"


def merge(*layers: Mapping) -> dict:
    """Overlay layers, lowest precedence first; sections merge key by key (thresholds per measure).

    A value of None (YAML ``null``) means "not set": it leaves the lower layers' value in place.
    """
    out: dict[str, dict] = {s: {} for s in SCHEMA}
    for layer in layers:
        for section, body in (layer or {}).items():
            for key, value in (body or {}).items():
                if value is None:
                    continue
                if key == "thresholds" and isinstance(value, dict):
                    merged = dict(out[section].get("thresholds") or {})
                    merged.update({m: v for m, v in value.items() if v is not None})
                    out[section][key] = merged
                else:
                    out[section][key] = value
    return out


# ---------------------------------------------------------------- validation


def _num(section, key, value, *, integer=False) -> Any:
    return finite_number(value, f"{section}.{key}", ConfigError, integer=integer)


def _choice(section, key, value, allowed) -> str:
    if value not in allowed:
        raise ConfigError(f"{section}.{key} must be one of {', '.join(allowed)}; got {quote(value)}")
    return value


def _list(section, key, value) -> list:
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, (list, tuple)) or len(value) == 0:
        raise ConfigError(f"{section}.{key} must be a non-empty list, got {quote(value)}")
    return list(value)


def _settings(s: dict, c: dict, require_sigma: bool = True) -> Settings:
    sigma = None
    if s.get("sigma") is None:
        if require_sigma:
            raise ConfigError("sigma is required: pass --sigma, or set smoothing.sigma in the config "
                              "or the model's metadata (noise std in [0, 1] pixel units)")
    else:
        sigma = _num("smoothing", "sigma", s["sigma"])
        if sigma <= 0:
            raise ConfigError(f"smoothing.sigma must be > 0, got {quote(sigma)}")
    alpha = _num("smoothing", "alpha", s.get("alpha", 0.001))
    if not 0 < alpha < 1:
        raise ConfigError(f"smoothing.alpha must be in (0, 1), got {quote(alpha)}")
    n0 = _num("smoothing", "n0", s.get("n0", 100), integer=True)
    n = _num("smoothing", "n", s.get("n", 100_000), integer=True)
    if n0 < 1:
        raise ConfigError(f"smoothing.n0 must be >= 1, got {n0}")
    if n < 2:
        raise ConfigError(f"smoothing.n must be >= 2, got {n}")
    batch = s.get("batch_size")
    if batch is not None:
        batch = _num("smoothing", "batch_size", batch, integer=True)
        if batch < 1:
            raise ConfigError(f"smoothing.batch_size must be >= 1, got {batch}")
    seed = _num("smoothing", "seed", s.get("seed", 0), integer=True)
    if seed < 0:
        raise ConfigError(f"smoothing.seed must be >= 0, got {seed}")

    measures = tuple(_choice("certify", "measures", m, tuple(MEASURES))
                     for m in _list("certify", "measures", c.get("measures", ["score", "margin"])))
    methods = tuple(_choice("certify", "methods", m, METHODS)
                    for m in _list("certify", "methods", c.get("methods", list(METHODS))))
    if len(set(measures)) != len(measures) or len(set(methods)) != len(methods):
        raise ConfigError("certify.measures and certify.methods must not repeat a name")
    given = c.get("thresholds") or {}
    if not isinstance(given, dict):
        raise ConfigError(f"certify.thresholds must map a measure to a list, got {quote(given)}")
    for m in given:
        if m not in MEASURES:
            raise ConfigError(f"certify.thresholds: unknown measure {quote(m)}{nearest(clip(m), MEASURES)}")
    thresholds = {}
    for m in MEASURES:
        values = tuple(_num("certify", f"thresholds.{m}", v)
                       for v in _list("certify", f"thresholds.{m}", given.get(m, DEFAULT_THRESHOLDS[m])))
        a, b = MEASURES[m]
        for v in values:
            if not a < v < b:
                raise ConfigError(f"certify.thresholds.{m} must lie in ({a:g}, {b:g}), got {quote(v)}")
        thresholds[m] = values
    radii = tuple(_num("certify", "radii", r) for r in _list("certify", "radii", c.get("radii", DEFAULT_RADII)))
    if any(r < 0 for r in radii):
        raise ConfigError(f"certify.radii must be >= 0, got {quote(list(radii))}")
    return Settings(sigma, alpha, n0, n, batch, seed, measures, methods, thresholds, radii)


def _model(m: dict) -> ModelConfig:
    kind = _choice("model", "output_kind", m.get("output_kind", "auto"), OUTPUT_KINDS)
    classes = m.get("classes")
    if classes is not None:
        classes = tuple(str(x) for x in _list("model", "classes", classes))
    for key in ("input", "output"):
        if m.get(key) is not None and not isinstance(m[key], str):
            raise ConfigError(f"model.{key} must be a tensor name (string), got {quote(m[key])}")
    return ModelConfig(m.get("input"), m.get("output"), kind, classes)


def _preprocess(p: dict) -> PreprocessConfig:
    size = p.get("size")
    if size is not None:
        if isinstance(size, (int, float)) and not isinstance(size, bool):
            size = [size, size]
        size = _list("preprocess", "size", size)
        if len(size) != 2:
            raise ConfigError(f"preprocess.size must be [H, W], got {quote(size)}")
        size = tuple(_num("preprocess", "size", v, integer=True) for v in size)
        if min(size) < 1:
            raise ConfigError(f"preprocess.size must be positive, got {quote(list(size))}")
    resize = _choice("preprocess", "resize", p.get("resize", "exact"), ("exact", "shorter", "none"))
    resize_to = _resize_to(p.get("resize_to"), resize)
    crop = _choice("preprocess", "crop", p.get("crop", "center"), ("center", "none"))
    channels = _choice("preprocess", "channels", p.get("channels", "RGB"), ("RGB", "BGR", "L"))
    layout = _choice("preprocess", "layout", p.get("layout", "NCHW"), ("NCHW", "NHWC"))
    mean = tuple(_num("preprocess", "mean", v) for v in _list("preprocess", "mean", p.get("mean", [0.0])))
    std = tuple(_num("preprocess", "std", v) for v in _list("preprocess", "std", p.get("std", [1.0])))
    if any(v <= 0 for v in std):
        raise ConfigError(f"preprocess.std must be > 0, got {quote(list(std))}")
    nch = 1 if channels == "L" else 3
    for key, vals in (("mean", mean), ("std", std)):
        if len(vals) not in (1, nch):
            raise ConfigError(f"preprocess.{key} needs 1 or {nch} values for channels {channels}, got {quote(list(vals))}")
    interpolation = _choice("preprocess", "interpolation", p.get("interpolation", "bilinear"), INTERPOLATIONS)
    resize_round = _choice("preprocess", "resize_round", p.get("resize_round", "floor"), ("floor", "round"))
    crop_offset = _choice("preprocess", "crop_offset", p.get("crop_offset", "round"), ("round", "floor"))
    _warn_pixel_units(mean, std)
    return PreprocessConfig(size, resize, resize_to, crop, channels, layout, mean, std,
                            interpolation, resize_round, crop_offset)


def _resize_to(value, resize: str) -> int | tuple[int, int] | None:
    """An INT (the shorter side, or a square for exact), or [H, W] for ``resize: exact``."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        if resize != "exact" or len(value) != 2:
            raise ConfigError(f"preprocess.resize_to must be an integer (or [H, W] with resize: exact), got {quote(value)}")
        hw = tuple(_num("preprocess", "resize_to", v, integer=True) for v in value)
        if min(hw) < 1:
            raise ConfigError(f"preprocess.resize_to must be positive, got {quote(list(hw))}")
        return hw
    side = _num("preprocess", "resize_to", value, integer=True)
    if side < 1:
        raise ConfigError(f"preprocess.resize_to must be >= 1, got {side}")
    return side


def _warn_pixel_units(mean: tuple[float, ...], std: tuple[float, ...]) -> None:
    """mean/std written in 0..255 units (ImageNet's 123.675, 58.395) are almost surely a mistake."""
    for key, vals in (("mean", mean), ("std", std)):
        if max(abs(v) for v in vals) > 1:
            fixed = ", ".join(f"{v / 255:.6g}" for v in vals)
            log.warning("warning: preprocess.%s %s looks like 0..255 units, but mean and std are in [0, 1] "
                        "pixel units (x in [0, 1]); divide by 255: [%s]", key, list(vals), fixed)


def build_config(*layers: Mapping, require_sigma: bool = True) -> Config:
    """Merge layers (lowest precedence first) and validate into a frozen Config."""
    from .preprocess_configs import expand_from

    for layer in layers:
        check_keys(layer or {}, source="settings")
    merged = merge(*(expand_from(layer) for layer in layers))
    return Config(_model(merged["model"]), _preprocess(merged["preprocess"]),
                  _settings(merged["smoothing"], merged["certify"], require_sigma))


def resolve(*, cli: Mapping | Sequence[Mapping] | None = None, file: Mapping | None = None,
            metadata: Mapping[str, str] | None = None,
            shape: Mapping | Callable[[Mapping], Mapping] | None = None,
            source: str = "model metadata", require_sigma: bool = True) -> Config:
    """The configuration, by the one precedence: CLI > config file > model metadata > model shape > defaults.

    - ``cli``: flags and API keywords, one layer or several (lowest first);
    - ``file``: the config file's layer (``load_yaml``);
    - ``metadata``: the model's metadata_props (the ``onnxcert.*`` JSON sections);
    - ``shape``: what the data's shape implies (the model's input shape, or the score arrays' n
      and n0): a layer, or a function of the layers above it merged (the model's input depends
      on ``model.input``, and its size on the preprocessing asked for);
    - defaults: the dataclasses' (``Settings``, ``ModelConfig``, ``PreprocessConfig``).

    A config file or flag that contradicts the model's own model/preprocess metadata wins, with
    a warning. ``require_sigma=False`` (``inspect``) leaves ``settings.sigma`` None when unset.
    """
    from .preprocess_configs import expand_from

    meta = metadata_layer(metadata, source=source) if metadata else {}
    given = [file or {}, *([cli] if isinstance(cli, Mapping) else (cli or ()))]
    upper = [meta, *(expand_from(layer) for layer in given)]  # a preprocess.from file read once, here
    merged = merge(*upper)
    derived = shape(merged) if callable(shape) else (shape or {})
    _warn_overrides(meta, merged, source)
    return build_config(derived, *upper, require_sigma=require_sigma)


def _warn_overrides(meta: Mapping, merged: Mapping, source: str) -> None:
    """A config file or flag that contradicts the model's own metadata is allowed, but said:
    mean/std from a preset on a graph that normalizes itself would normalize twice."""
    plain = lambda v: list(v) if isinstance(v, tuple) else v  # noqa: E731
    for section in ("model", "preprocess"):
        for key, value in (meta.get(section) or {}).items():
            final = merged[section].get(key)
            if plain(final) != plain(value):
                log.warning("%s.%s is %s, overriding %s's %s", section, key, final, source, value)

