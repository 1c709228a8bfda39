"""The paper's confidence measures (Kumar et al. 2020, Section 4) on softmax rows.

- ``score``: h_c, the probability of the predicted class c, in (a, b) = (0, 1);
- ``margin``: h_c - max_{j != c} h_j, in (a, b) = (-1, 1).

The smoothed expectation of the margin lower-bounds the gap between the top two average scores,
so a positive certified margin certifies the prediction as well.
"""

from __future__ import annotations

import numpy as np

MEASURES: dict[str, tuple[float, float]] = {"score": (0.0, 1.0), "margin": (-1.0, 1.0)}


def measure_range(measure: str) -> tuple[float, float]:
    """The open interval (a, b) that the measure's values lie in."""
    return MEASURES[measure]


def predict_class(selection: np.ndarray) -> int:
    """The smoothed prediction: argmax of the mean softmax over the n0 selection samples."""
    return int(np.argmax(np.mean(selection, axis=0, dtype=np.float64)))


def score_and_margin(probs: np.ndarray, c: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample score h_c and margin h_c - max_{j != c} h_j for class c, from [n, k] rows."""
    probs = np.asarray(probs)
    score = probs[:, c].astype(np.float64)
    others = np.delete(probs, c, axis=1)
    margin = score - others.max(axis=1).astype(np.float64)
    return score, margin


def votes_for(probs: np.ndarray, c: int) -> int:
    """How many rows' argmax is class c: the vote of Cohen et al. for the label certificate."""
    return int(np.count_nonzero(np.argmax(probs, axis=1) == c))


def softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable softmax over the last axis, in float64."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=-1, keepdims=True)
    return z


def is_probabilities(rows: np.ndarray, atol: float = 1e-3) -> bool:
    """True when every row lies in [0, 1] and sums to 1 (within ``atol``)."""
    rows = np.asarray(rows)
    if rows.size == 0:
        return False
    return bool(rows.min() >= -1e-6 and rows.max() <= 1 + 1e-6
                and np.all(np.abs(rows.sum(axis=-1, dtype=np.float64) - 1.0) <= atol))


def detect_output_kind(*rows: np.ndarray, kind: str = "auto") -> str:
    """The one output-kind detection: ``kind`` unless 'auto'; then 'probabilities' when every row
    of every array lies in [0, 1] and sums to 1 (within 1e-3, or 1e-2 for float16), else 'logits'."""
    if kind != "auto":
        return kind
    ok = all(is_probabilities(r, atol=1e-2 if np.asarray(r).dtype == np.float16 else 1e-3) for r in rows)
    return "probabilities" if ok else "logits"


def to_probabilities(rows: np.ndarray, kind: str) -> np.ndarray:
    """Rows as softmax probabilities: ``kind`` is 'probabilities' or 'logits' (already resolved)."""
    if kind == "probabilities":
        return np.clip(np.asarray(rows, dtype=np.float64), 0.0, 1.0)
    return softmax(rows)
