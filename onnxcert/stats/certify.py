"""Certify one input from its estimation samples: label certificate plus every (measure, method).

The statistics see arrays of per-sample measures and a vote count, never a model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from .bands import DKWBand
from .berk_jones import bj_band
from .confidence import SampleMean, SortedSamples, cdf_bounds, naive_bounds, prepare_band
from .label import LabelCertificate, label_certificate
from .measures import measure_range
from .names import METHOD_DESCRIPTIONS, METHODS  # noqa: F401  (re-exported)



@dataclass(frozen=True)
class ConfidenceCertificate:
    """With probability >= 1 - alpha: for every ||x' - x||_2 <= radii[i], the smoothed expected
    ``measure`` of the predicted class is >= lower_bounds[i] (and, as a separate statement at the
    same level, <= upper_bounds[i]). radius[j] is the largest R with lower bound >= thresholds[j];
    None when even R = 0 falls short, math.inf when no finite R bounds it."""

    measure: str
    method: str
    mean: float
    lower_bounds: tuple[float, ...]
    upper_bounds: tuple[float, ...]
    radius: tuple[float | None, ...]


@dataclass(frozen=True)
class InputCertificate:
    """Everything certified about one input."""

    prediction: int
    label: LabelCertificate
    confidence: Mapping[str, Mapping[str, ConfidenceCertificate]] = field(default_factory=dict)


def band_for(method: str, n: int, alpha: float):
    """The simultaneous tail band a CDF method uses."""
    if method == "cdf-dkw":
        return DKWBand(n, alpha)
    if method == "cdf-bj":
        return bj_band(n, alpha)
    raise ValueError(f"unknown CDF method {method!r}; expected one of {METHODS}")


def prepare_methods(methods: Sequence[str], n: int, alpha: float) -> None:
    """The one-off work of each CDF method's band at (n, alpha) (its tables and count-space plan),
    done now: a run calls this before sampling, so that its first input costs what the others do."""
    for method in methods:
        if method != "naive":
            prepare_band(band_for(method, n, alpha))


def certify_measure(
    values: np.ndarray,
    measure: str,
    methods: Sequence[str],
    *,
    sigma: float,
    alpha: float,
    thresholds: Sequence[float],
    radii: Sequence[float],
) -> dict[str, ConfidenceCertificate]:
    """Certified bounds and radii for one measure's n samples, for each method."""
    a, b = measure_range(measure)
    # the sorted samples only when a CDF method uses them; naive needs the mean alone
    cdf = any(m != "naive" for m in methods)
    tail = (SortedSamples if cdf else SampleMean).from_samples(values, a, b)
    out = {}
    for method in methods:
        if method == "naive":
            lower, upper = naive_bounds(tail, alpha, sigma)
        else:
            lower, upper = cdf_bounds(tail, band_for(method, tail.n, alpha), sigma)
        out[method] = ConfidenceCertificate(
            measure=measure,
            method=method,
            mean=tail.mean,
            lower_bounds=tuple(float(v) for v in lower.at(radii)),
            upper_bounds=tuple(float(v) for v in upper.at(radii)),
            radius=tuple(lower.radii([float(c) for c in thresholds])),
        )
    return out


def certify_samples(
    prediction: int,
    measures: Mapping[str, np.ndarray],
    votes: int,
    *,
    sigma: float,
    alpha: float,
    methods: Sequence[str],
    thresholds: Mapping[str, Sequence[float]],
    radii: Sequence[float],
) -> InputCertificate:
    """Label certificate from ``votes`` of n, and confidence certificates for each measure."""
    n = len(next(iter(measures.values())))
    label = label_certificate(votes, n, sigma, alpha)
    confidence = {
        name: certify_measure(values, name, methods, sigma=sigma, alpha=alpha,
                              thresholds=thresholds[name], radii=radii)
        for name, values in measures.items()
    }
    return InputCertificate(prediction, label, confidence)
