"""The Python API: functions that mirror the commands. They return frozen dataclasses and write
nothing unless given ``output``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .config import build_config, load_yaml
from .report import write_report
from .scores import CertificationResult, check_scores
from .scores import certify_scores as _certify_arrays


def certify_scores(estimation, selection, labels=None, *, config: str | Path | None = None,
                   output: str | Path | None = None, output_kind: str = "auto",
                   inputs: Sequence[str | None] | None = None, **settings: Any) -> CertificationResult:
    """Certify score matrices (estimation [B, n, k] or [n, k]; selection [B, n0, k] or [n0, k]).

    Keyword settings are those of the CLI (sigma, alpha, n0, n, seed, measures, methods,
    thresholds, radii); n and n0 default to the arrays' shapes.
    """
    arrays = check_scores(np.asarray(estimation), np.asarray(selection), labels)
    shape_layer = {"smoothing": {"n": arrays.estimation.shape[1], "n0": arrays.selection.shape[1]}}
    yaml_layer = load_yaml(config) if config else {}
    user = _settings_layer(settings)
    cfg = build_config(shape_layer, yaml_layer, user)
    result = _certify_arrays(arrays, cfg.settings, output_kind=output_kind, inputs=inputs)
    if output is not None:
        write_report(result.report, output)
    return result


def _settings_layer(kw: dict) -> dict:
    smoothing = {k: kw.pop(k) for k in ("sigma", "alpha", "n0", "n", "batch_size", "seed") if k in kw}
    certify = {k: kw.pop(k) for k in ("measures", "methods", "thresholds", "radii") if k in kw}
    if kw:
        from .errors import ConfigError

        raise ConfigError(f"unknown setting(s): {', '.join(sorted(kw))}")
    return {"smoothing": smoothing, "certify": certify}
