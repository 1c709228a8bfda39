"""Synthetic reports for the tests of what reads reports back: ties between radii, null and "inf"
radii, an unlabelled record, clean predictions, class names, optional image paths."""

from __future__ import annotations

import math

import numpy as np

RADII = [0.0, 0.25, 0.5, 0.75]
THRESHOLDS = {"score": [0.5, 0.7, 0.9], "margin": [0.0, 0.4]}
METHODS = ["naive", "cdf-bj"]


def _radius(rng, p_null=0.15, p_inf=0.05):
    u = rng.random()
    if u < p_null:
        return None
    if u < p_null + p_inf:
        return "inf"
    return float(np.round(rng.uniform(0, 1.0), 2))  # rounded: ties between inputs are common


def synthetic_report(m=60, seed=0, labelled=True, images=None):
    """A report dict with ties, nulls, "inf" radii, one unlabelled record and some image paths."""
    rng = np.random.default_rng(seed)
    records = []
    for i in range(m):
        label = int(rng.integers(0, 4)) if labelled and i != 3 else None
        pred = label if label is not None and rng.random() < 0.8 else int(rng.integers(0, 4))
        conf = {}
        for meas, th in THRESHOLDS.items():
            conf[meas] = {"mean": float(rng.uniform(0.3, 1.0))}
            for meth in METHODS:
                conf[meas][meth] = {"lower_bounds": sorted(rng.uniform(0, 1, len(RADII)).tolist(), reverse=True),
                                    "upper_bounds": [1.0] * len(RADII), "radius": [_radius(rng) for _ in th]}
        records.append({
            "index": i, "input": images[i] if images and i < len(images) else None, "label": label,
            "prediction": pred, "correct": None if label is None else pred == label,
            "clean_prediction": label if label is not None and rng.random() < 0.9 else int(rng.integers(0, 4)),
            "label_certificate": {"p_lower": 0.9, "radius": _radius(rng)}, "confidence": conf})
    return {
        "schema": "onnxcert.report/1", "onnxcert_version": "0.1.0", "created": "2026-01-01T00:00:00+00:00",
        "complete": True, "count": m, "total": m, "model": {"path": "models/toy.onnx", "sha256": "0" * 64},
        "settings": {"sigma": 0.25, "alpha": 0.001, "n0": 100, "n": 1000, "seed": 0, "measures": list(THRESHOLDS),
                     "methods": METHODS, "thresholds": THRESHOLDS, "radii": RADII,
                     "classes": ["cat", "dog", "3", "<b>bird</b>"]},
        "command": ["onnxcert", "run", "models/toy.onnx", "data", "--n", "1000"],
        "config": {"smoothing": {"sigma": 0.25, "n": 1000}},
        "provenance": {"python": "3.11"}, "records": records, "skipped": []}


def radius_value(value):
    """A record's radius as a float: NaN for null, inf for \"inf\"."""
    return math.nan if value is None else (math.inf if value == "inf" else value)
