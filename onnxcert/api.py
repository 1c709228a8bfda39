"""The Python API: functions that mirror the commands. They return frozen dataclasses and write
nothing unless given ``output``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .config import load_yaml, resolve
from .report import write_report
from .scores import CertificationResult, check_scores, scores_shape_layer
from .scores import certify_scores as _certify_arrays


def certify_scores(estimation, selection, labels=None, *, config: str | Path | None = None,
                   output: str | Path | None = None, output_kind: str = "auto",
                   inputs: Sequence[str | None] | None = None, **settings: Any) -> CertificationResult:
    """Certify score matrices (estimation [B, n, k] or [n, k]; selection [B, n0, k] or [n0, k]).

    Keyword settings are those of the CLI (sigma, alpha, n0, n, seed, measures, methods,
    thresholds, radii); n and n0 default to the arrays' shapes.
    """
    arrays = check_scores(np.asarray(estimation), np.asarray(selection), labels)
    cfg = resolve(cli=_settings_layer(settings), file=load_yaml(config) if config else None,
                  shape=scores_shape_layer(arrays))
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


def certify_model(model: str | Path, inputs, *, config=None, output: str | Path | None = None,
                  labels=None, device: str = "auto", threads: int | None = None, lanes: int | None = None,
                  output_kind: str | None = None, input_name: str | None = None,
                  output_name: str | None = None, skip: int | None = None, limit: int | None = None,
                  gate=None, sequential: bool = False, dataset_stop: bool = True,
                  **settings: Any) -> CertificationResult:
    """Certify ``inputs`` with the ONNX classifier ``model`` (what ``onnxcert run`` does).

    ``inputs`` is a path (image folder, image, .npy, .npz) or an array [N, ...] in [0, 1] pixel
    space in the model's layout, with optional ``labels``. ``config`` is a YAML path, a Config or a mapping
    of sections; keyword settings (sigma, alpha, n0, n, batch_size, seed, measures, methods,
    thresholds, radii) override it, and it overrides the model's metadata. ``skip`` and ``limit``
    select every skip-th input, at most ``limit`` of them (``run --skip/--limit``).

    ``sequential=True`` (``run --gate RULES --sequential``) certifies in looks until each input's
    ``gate`` rules (a YAML path or a sequence of ``gate.Rule``) are decided, and with
    ``dataset_stop`` stops once the rules are settled; check the result with ``gate_report``.
    ``threads`` and ``lanes``: as ``run --threads/--lanes`` (None: chosen automatically).
    """
    from .config import cli_layer
    from .errors import ConfigError
    from .pipeline import certify, prepare, with_sequential

    if sequential and gate is None:
        raise ConfigError("sequential=True needs gate= (a rules YAML path or gate.Rule objects)")
    if gate is not None and not sequential:
        raise ConfigError("gate= is used by sequential=True; to check a report, use gate_report")
    rules = ()
    if gate is not None:
        from .gate import load_rules

        rules = load_rules(gate) if isinstance(gate, (str, Path)) else tuple(gate)
    file_layer = _config_layer(config)
    names = cli_layer(output_kind=output_kind, input_name=input_name, output_name=output_name)
    setup = prepare(model, inputs, file=file_layer, cli=[_settings_layer(dict(settings)), names],
                    device=device, threads=threads, labels=labels, skip=skip, limit=limit, lanes=lanes)
    if sequential:
        setup = with_sequential(setup, rules, dataset_stop=dataset_stop)
    result = certify(setup)
    if output is not None:
        write_report(result.report, output)
    return result


def check_model(model: str | Path, inputs, *, config=None, labels=None, top_k: int = 5, device: str = "auto",
                output_kind: str | None = None, input_name: str | None = None, output_name: str | None = None,
                skip: int | None = None, limit: int | None = None):
    """What ``onnxcert check`` does: one noise-free forward pass per input. Returns a frozen
    ``check.CheckResult`` (``.clean_accuracy``, ``.records`` with the top-k classes,
    ``.warnings``, ``.to_dict()``); writes nothing."""
    from .check import check
    from .config import cli_layer
    from .pipeline import prepare

    names = cli_layer(output_kind=output_kind, input_name=input_name, output_name=output_name)
    no_noise = {"smoothing": {"sigma": 1.0}, "certify": {"methods": ["naive"]}}  # no band to calibrate
    setup = prepare(model, inputs, file=_config_layer(config), cli=[no_noise, names],
                    device=device, labels=labels, skip=skip, limit=limit)
    return check(setup, top_k=top_k)


def _config_layer(config) -> dict:
    """A YAML path, a mapping of sections, or a Config object, as one config layer."""
    from dataclasses import asdict

    from .config import Config

    if config is None:
        return {}
    if isinstance(config, (str, Path)):
        return load_yaml(config)
    if isinstance(config, Config):
        s = asdict(config.settings)
        return {"model": {k: v for k, v in asdict(config.model).items() if v is not None},
                "preprocess": {k: v for k, v in asdict(config.preprocess).items() if v is not None},
                "smoothing": {k: s[k] for k in ("sigma", "alpha", "n0", "n", "batch_size", "seed") if s[k] is not None},
                "certify": {k: s[k] for k in ("measures", "methods", "thresholds", "radii")}}
    return dict(config)


def summarize(report, *, radii=None, measures=None, methods=None):
    """Certified-accuracy summary (``onnxcert summary``) of a report dict or a REPORT.json path.

    Returns a frozen ``reports.metrics.ReportSummary`` (curves per measure, method and threshold; the
    label certificate's curve; clean and smoothed accuracy; abstain rate; mean certified radii).
    """
    from .reports.metrics import summarize_report
    from .reports.read import load_report, parse_report

    data = load_report(report) if isinstance(report, (str, Path)) else parse_report(report)
    return summarize_report(data, radii=radii, measures=measures, methods=methods)


def gate_report(report, rules=None, *, baseline=None, tolerance: float = 0.0, **rule):
    """Check rules against a report (``onnxcert gate``): ``rules`` is a YAML path or a sequence of
    ``gate.Rule``; or give one rule as keywords (measure, method, threshold, radius, min_accuracy,
    max_abstain_rate, min_mean_radius). Returns a frozen ``gate.GateResult`` (``.exit_code``:
    0 all pass, 1 a rule fails)."""
    from .gate import evaluate_rules, load_rules, rules_from_flags
    from .reports.read import load_report

    if isinstance(rules, (str, Path)):
        rules = load_rules(rules)
    elif rules is None:
        rules = rules_from_flags(**rule)
    data = load_report(report) if isinstance(report, (str, Path)) else report
    base = load_report(baseline) if isinstance(baseline, (str, Path)) else baseline
    return evaluate_rules(data, tuple(rules), baseline=base, tolerance=tolerance)
