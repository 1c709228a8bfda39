"""Certify from score matrices computed elsewhere (``onnxcert certify-scores``): no model needed."""

from __future__ import annotations

import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .config import Settings
from .errors import InputError
from .limits import check_npz
from .untrusted import input_file
from .report import Record, build_report
from .stats.measures import detect_output_kind, predict_class, score_and_margin, to_probabilities, votes_for


@dataclass(frozen=True)
class ScoreArrays:
    """Validated score matrices: estimation [B, n, k], selection [B, n0, k], optional labels [B]."""

    estimation: np.ndarray
    selection: np.ndarray
    labels: np.ndarray | None


@dataclass(frozen=True)
class CertificationResult:
    """What a certification returns: the records and the report (a JSON-ready dict)."""

    records: tuple[Record, ...]
    report: dict[str, Any]


def load_scores(path: str | Path) -> ScoreArrays:
    """Read SCORES.npz (keys ``estimation``, ``selection``, optional ``labels``) and validate it."""
    path = input_file(path, "scores file")
    check_npz(path, "scores file", keys=("estimation", "selection", "labels"),
              fix="split the inputs over several files")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise InputError(f"{str(path)!r} is not a readable .npz file ({exc.__class__.__name__})") from None
    for key in ("estimation", "selection"):
        if key not in arrays:
            raise InputError(f"{str(path)!r} has no {key!r} array (found: {', '.join(sorted(arrays)) or 'none'})")
    return check_scores(arrays["estimation"], arrays["selection"], arrays.get("labels"))


def check_scores(estimation, selection, labels=None) -> ScoreArrays:
    """Shapes, dtypes and values; one-line InputError naming the problem."""
    est, sel = np.asarray(estimation), np.asarray(selection)
    for name, a in (("estimation", est), ("selection", sel)):
        if a.dtype.kind not in "fiu":
            raise InputError(f"{name} must be a numeric array, got dtype {a.dtype}")
        if a.ndim not in (2, 3):
            raise InputError(f"{name} must be [n, k] or [B, n, k], got shape {list(a.shape)}")
    if est.ndim != sel.ndim:
        raise InputError(f"estimation {list(est.shape)} and selection {list(sel.shape)} differ in rank")
    if est.ndim == 2:
        est, sel = est[None], sel[None]
    if est.shape[0] == 0:
        raise InputError("the scores hold no inputs (B = 0)")
    if est.shape[0] != sel.shape[0]:
        raise InputError(f"estimation has {est.shape[0]} inputs but selection has {sel.shape[0]}")
    if est.shape[2] != sel.shape[2]:
        raise InputError(f"estimation has k={est.shape[2]} classes but selection has k={sel.shape[2]}")
    if est.shape[2] < 2:
        raise InputError(f"need at least 2 classes, got k={est.shape[2]}")
    if est.shape[1] < 2 or sel.shape[1] < 1:
        raise InputError(f"need n >= 2 estimation and n0 >= 1 selection samples, got n={est.shape[1]}, n0={sel.shape[1]}")
    for name, a in (("estimation", est), ("selection", sel)):
        bad = ~np.isfinite(a)
        if bad.any():
            b, i, _ = np.argwhere(bad)[0]
            raise InputError(f"{name} holds NaN or inf (first at input {b}, sample {i})")
    lab = None
    if labels is not None:
        lab = np.asarray(labels)
        if lab.ndim == 0:
            lab = lab[None]
        if lab.dtype.kind not in "iu" or lab.shape != (est.shape[0],):
            raise InputError(f"labels must be integers of shape [{est.shape[0]}], got {lab.dtype} {list(lab.shape)}")
        if lab.size and (lab.min() < 0 or lab.max() >= est.shape[2]):
            raise InputError(f"labels must lie in [0, {est.shape[2] - 1}], got values {lab.min()}..{lab.max()}")
    return ScoreArrays(est, sel, lab)


def scores_shape_layer(arrays: ScoreArrays) -> dict:
    """The config layer the arrays' shapes imply (below the config file): n and n0."""
    return {"smoothing": {"n": arrays.estimation.shape[1], "n0": arrays.selection.shape[1]}}


def certify_scores(arrays: ScoreArrays, settings: Settings, *, output_kind: str = "auto",
                   inputs: Sequence[str | None] | None = None, provenance: Mapping | None = None,
                   command: Sequence[str] | None = None, config: Mapping | None = None) -> CertificationResult:
    """Certify every input of ``arrays``; ``settings.n``/``n0`` must match the array shapes."""
    B, n, _ = arrays.estimation.shape
    n0 = arrays.selection.shape[1]
    if settings.n != n:
        raise InputError(f"--n is {settings.n} but the estimation array has n={n} samples per input")
    if settings.n0 != n0:
        raise InputError(f"--n0 is {settings.n0} but the selection array has n0={n0} samples per input")
    from .bandstore import band_requests, prepare_bands
    from .stats.certify import certify_samples

    prepare_bands(band_requests(settings))
    kind = detect_output_kind(arrays.estimation, arrays.selection, kind=output_kind)
    start = time.perf_counter()
    records = []
    for b in range(B):
        est = to_probabilities(arrays.estimation[b], kind)
        c = predict_class(to_probabilities(arrays.selection[b], kind))
        score, margin = score_and_margin(est, c)
        by_name = {"score": score, "margin": margin}
        cert = certify_samples(c, {m: by_name[m] for m in settings.measures}, votes_for(est, c),
                               sigma=settings.sigma, alpha=settings.alpha, methods=settings.methods,
                               thresholds=settings.thresholds, radii=settings.radii)
        label = None if arrays.labels is None else int(arrays.labels[b])
        records.append(Record(b, None if inputs is None else inputs[b], label, cert))
    wall = time.perf_counter() - start
    report = build_report(settings, records, output_kind=kind, command=command, config=config,
                          provenance={"source": "certify-scores", "wall_time_s": round(wall, 3), **(provenance or {})})
    return CertificationResult(tuple(records), report)
