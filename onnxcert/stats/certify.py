"""Certify one input from its estimation samples: label certificate plus every (measure, method).

The statistics see arrays of per-sample measures and a vote count, never a model.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from .bands import DKWBand
from .berk_jones import bj_band
from .confidence import SampleMean, SortedSamples, cdf_bounds, evaluate, naive_bounds, prepare_band
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
    return _certify_measures({measure: values}, methods, sigma=sigma, alpha=alpha,
                             thresholds={measure: thresholds}, radii=radii)[measure]


# Up to this n, the measures after the first are sorted on a second thread while the first one's
# bounds are built (np.sort releases the GIL; the statistics run between inputs, when the lanes
# are idle). Above it, one measure's sorted copy at a time (memory: 8 bytes a sample each).
SORT_AHEAD_MAX = 1 << 18
_SORTER: tuple[int, ThreadPoolExecutor] | None = None  # (the process that made it, the pool)
_SORTER_LOCK = threading.Lock()


def _sorter() -> ThreadPoolExecutor:
    """The sorting thread, made on first use in each process (a forked child does not inherit
    the parent's thread, so it makes its own)."""
    global _SORTER
    with _SORTER_LOCK:
        if _SORTER is None or _SORTER[0] != os.getpid():
            _SORTER = (os.getpid(), ThreadPoolExecutor(1, thread_name_prefix="onnxcert-sort"))
        return _SORTER[1]


def _samples(values: np.ndarray, measure: str, cdf: bool):
    """What the methods need of one measure's samples: sorted (``SortedSamples``) when a CDF
    method is asked for (``cdf``); naive needs the mean alone (``SampleMean``)."""
    a, b = measure_range(measure)
    return (SortedSamples if cdf else SampleMean).from_samples(values, a, b)


def _bounds(tail, methods: Sequence[str], sigma: float, alpha: float):
    """(the samples' mean, [(method, lower, upper)]) for one measure's samples (``_samples``)."""
    out = []
    for method in methods:
        if method == "naive":
            lower, upper = naive_bounds(tail, alpha, sigma)
        else:
            lower, upper = cdf_bounds(tail, band_for(method, tail.n, alpha), sigma)
        out.append((method, lower, upper))
    return tail.mean, out


def _certify_measures(
    measures: Mapping[str, np.ndarray],
    methods: Sequence[str],
    *,
    sigma: float,
    alpha: float,
    thresholds: Mapping[str, Sequence[float]],
    radii: Sequence[float],
) -> dict[str, dict[str, ConfidenceCertificate]]:
    """Every (measure, method) certificate of one input. The bounds of all measures and methods
    are evaluated together (``evaluate``): each bound's numbers are those it gives alone, with
    fewer array operations."""
    names = list(measures)
    cdf = any(m != "naive" for m in methods)
    ahead: dict[str, Future] = {}
    if len(names) > 1 and len(measures[names[0]]) <= SORT_AHEAD_MAX and cdf:
        ahead = {name: _sorter().submit(_samples, measures[name], name, cdf) for name in names[1:]}
    built = {}
    try:
        for name in names:  # each measure's sorted samples are dropped once its bounds are built
            tail = ahead.pop(name).result() if name in ahead else _samples(measures[name], name, cdf)
            built[name] = _bounds(tail, methods, sigma, alpha)
            del tail
    finally:
        for future in ahead.values():  # an error: nothing is left running behind the caller
            future.cancel() or future.exception()
    bounds, wanted = [], []
    for name, (_, parts) in built.items():
        for _, lower, upper in parts:
            bounds += [lower, upper]
            wanted += [[float(c) for c in thresholds[name]], None]
    got = iter(evaluate(bounds, radii, wanted))
    out: dict[str, dict[str, ConfidenceCertificate]] = {}
    for name, (mean, parts) in built.items():
        out[name] = {}
        for method, _, _ in parts:
            (low, radius), (up, _) = next(got), next(got)
            out[name][method] = ConfidenceCertificate(
                measure=name,
                method=method,
                mean=mean,
                lower_bounds=tuple(float(v) for v in low),
                upper_bounds=tuple(float(v) for v in up),
                radius=tuple(radius),
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
    confidence = _certify_measures(measures, methods, sigma=sigma, alpha=alpha, thresholds=thresholds, radii=radii)
    return InputCertificate(prediction, label, confidence)
