"""Noisy forward passes for one input, streamed: n0 selection samples, then n estimation samples.

Following Cohen et al. 2019 (CERTIFY) and Kumar et al. 2020: the n0 selection samples choose the
class c = argmax of the mean softmax; n fresh estimation samples then give, per sample, the score
h_c and the margin h_c - max_{j != c} h_j, and the vote count #{argmax = c}. That is all the
certificates need, so memory is O(n) floats plus one batch, never [n, k].

Seeds: input ``index`` draws its selection noise from ``SeedSequence(seed, spawn_key=(index, 0))``
and its estimation noise from ``spawn_key=(index, 1)``. NumPy's float32 normal stream does not
depend on how it is chunked, so results do not depend on the batch size, the order of the inputs,
or how they are split across runs.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .errors import ModelError
from .stats.measures import is_probabilities, to_probabilities

log = logging.getLogger("onnxcert")

SELECTION, ESTIMATION = 0, 1
BATCH_MEMORY_BUDGET = 1 << 30  # bytes for one batch's input and the model's activations
ACTIVATION_FACTOR = 32  # activations per sample, as a multiple of the input's bytes (a guess)
MAX_BATCH = 256


@dataclass(frozen=True)
class InputSamples:
    """One input's sampled measures: ``score`` and ``margin`` are [n] float64."""

    prediction: int
    score: np.ndarray
    margin: np.ndarray
    votes: int
    n_classes: int


def input_generator(seed: int, index: int, stream: int) -> np.random.Generator:
    """The generator of one input's selection (stream 0) or estimation (stream 1) noise."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(index, stream))))


def auto_batch_size(sample_shape, n: int, *, budget: int = BATCH_MEMORY_BUDGET,
                    max_batch: int = MAX_BATCH) -> int:
    """Samples per forward pass from the input's size and a memory budget, at most ``max_batch``
    and never more than the ``n`` samples one input needs."""
    per_sample = 4 * math.prod(int(d) for d in sample_shape) * ACTIVATION_FACTOR
    return int(max(1, min(max_batch, n, budget // max(per_sample, 1))))


def resolve_output_kind(rows: np.ndarray, kind: str) -> str:
    """auto: 'probabilities' when every row lies in [0, 1] and sums to 1, else 'logits'."""
    if kind != "auto":
        return kind
    atol = 1e-2 if rows.dtype == np.float16 else 1e-3
    return "probabilities" if is_probabilities(rows, atol=atol) else "logits"


class Sampler:
    """Runs a model on noisy copies of clean inputs, batch by batch.

    ``model`` maps a float32 batch [B, ...] (normalized) to class scores [B, k]. ``output_kind``
    'auto' is decided once, from the first batch the sampler sees, and then kept in
    ``self.output_kind``. ``on_batch(count)`` is called after every forward pass.
    """

    def __init__(self, model: Callable[[np.ndarray], np.ndarray], *, sigma: float, n0: int, n: int,
                 seed: int, batch_size: int, output_kind: str = "auto",
                 on_batch: Callable[[int], None] | None = None):
        self.model, self.sigma, self.n0, self.n, self.seed = model, sigma, n0, n, seed
        self.batch_size, self.output_kind, self.on_batch = int(batch_size), output_kind, on_batch
        self._buf: np.ndarray | None = None

    def sample(self, index: int, x_norm: np.ndarray, scale: np.ndarray, name: str | None = None) -> InputSamples:
        """Selection then estimation for the clean normalized sample ``x_norm``; the noise is
        N(0, sigma^2) in [0, 1] pixel space, i.e. ``scale`` = sigma / std after normalization."""
        where = f"input {index}" + (f" ({name})" if name else "")
        total = None
        for probs in self._probabilities(index, SELECTION, self.n0, x_norm, scale, where):
            total = probs.sum(axis=0) if total is None else total + probs.sum(axis=0)
        c = int(np.argmax(total))
        score, margin = np.empty(self.n), np.empty(self.n)
        votes, done = 0, 0
        for probs in self._probabilities(index, ESTIMATION, self.n, x_norm, scale, where):
            b = probs.shape[0]
            votes += int(np.count_nonzero(probs.argmax(axis=1) == c))
            score[done:done + b] = probs[:, c]
            probs[:, c] = -np.inf
            margin[done:done + b] = score[done:done + b] - probs.max(axis=1)
            done += b
        return InputSamples(c, score, margin, votes, int(total.shape[0]))

    def _probabilities(self, index, stream, count, x_norm, scale, where):
        rng = input_generator(self.seed, index, stream)
        buf = self._buffer(x_norm.shape)
        done = 0
        while done < count:
            b = min(self.batch_size, count - done)
            batch = buf[:b]
            rng.standard_normal(out=batch, dtype=np.float32)
            batch *= scale
            batch += x_norm
            rows = self.model(batch)
            if not np.all(np.isfinite(rows)):
                raise ModelError(f"the model's output holds NaN or inf for {where}; "
                                 "no certificate is written for it")
            if self.output_kind == "auto":
                self.output_kind = resolve_output_kind(rows, "auto")
                log.info("model output read as %s (decided from the first batch)", self.output_kind)
            done += b
            if self.on_batch is not None:
                self.on_batch(b)
            yield to_probabilities(rows, self.output_kind)

    def _buffer(self, shape) -> np.ndarray:
        if self._buf is None or self._buf.shape[1:] != tuple(shape):
            self._buf = np.empty((self.batch_size, *shape), dtype=np.float32)
        return self._buf
