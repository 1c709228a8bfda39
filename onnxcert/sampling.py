"""Noisy forward passes for one input, streamed: n0 selection samples, then n estimation samples.

Following Cohen et al. 2019 (CERTIFY) and Kumar et al. 2020: the n0 selection samples choose the
class c = argmax of the mean softmax; n fresh estimation samples then give, per sample, the score
h_c and the margin h_c - max_{j != c} h_j, and the vote count #{argmax = c}. That is all the
certificates need, so memory is O(n) floats plus one batch, never [n, k].

Seeds: input ``index`` draws its selection noise from ``SeedSequence(seed, spawn_key=(index, 0))``
and its estimation noise from ``spawn_key=(index, 1)``, with the generator of ``noise`` (SFC64
bits; the compiled ziggurat, or the NumPy Box-Muller when the extension is not built). Each
stream is consumed in order, so results do not depend on the batch size, the order of the
inputs, or how they are split across runs, and the first m samples of a stream are the same
however many follow. The device path (see fastpath) keeps the same properties with a
counter-based generator keyed by ``(seed, index, stream)``.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from .errors import ConfigError, ModelError
from .fastpath import GENERATOR as FASTPATH_GENERATOR
from .fastpath import INPUT_NAMES, OUTPUT_NAMES, PathChoice, choose_path, squares_key, wrap_classifier
from .noise import ZIGGURAT, NoiseStream, host_generator
from .noise import _kernels  # None when not built: the measures then go the NumPy way, as the noise does
from .runtime import Classifier, classifier_proto, open_wrapped
from .stats.measures import detect_output_kind, to_probabilities


log = logging.getLogger("onnxcert")
KINDS = {"logits": 0, "probabilities": 1}  # output kinds, as _kernels.measures reads them

SELECTION, ESTIMATION = 0, 1
# The automatic batch size (benchmarks/README.md): on the CPU, throughput is flat in the batch
# size from about 8 samples (ResNet-110, ResNet-50), so past that a batch only costs memory;
# for tiny inputs, whose forward pass takes microseconds, a batch also pays the loop's ~0.1 ms
# per batch, and 512-2048 samples ran up to 10-20% faster than 256 on the 8x8 model. Measured
# activation memory per batched sample: 18x (ResNet-110) and 24-26x (ResNet-50) the input's bytes.
BATCH_MEMORY_BUDGET = 1 << 30  # bytes for one batch's input and the model's activations
ACTIVATION_FACTOR = 32  # activations per sample, as a multiple of the input's bytes
MAX_BATCH = 256
MAX_BATCH_TINY = 1024  # for inputs of at most TINY_INPUT values
TINY_INPUT = 1024
MIN_LANE_BATCH = 64  # a draw shorter than one batch per lane is cut for the lanes into parts of at least this


@dataclass(frozen=True)
class InputSamples:
    """One input's sampled measures: ``score`` and ``margin`` are [n] float64."""

    prediction: int
    score: np.ndarray
    margin: np.ndarray
    votes: int
    n_classes: int


def input_generator(seed: int, index: int, stream: int) -> NoiseStream:
    """The generator of one input's selection (stream 0) or estimation (stream 1) noise."""
    return NoiseStream(seed, index, stream)


def noise_generator(device_noise: bool) -> str:
    """The name of the noise generator a path uses, for the report's provenance and the journal:
    on the host, the one this process draws with (``noise.host_generator``)."""
    return FASTPATH_GENERATOR if device_noise else host_generator()


def auto_batch_size(sample_shape, n: int, *, budget: int = BATCH_MEMORY_BUDGET,
                    max_batch: int | None = None) -> int:
    """Samples per forward pass from the input's size and a memory budget, at most ``max_batch``
    (by default 256, or 1024 for inputs of at most 1024 values) and never more than the ``n``
    samples one input needs."""
    values = math.prod(int(d) for d in sample_shape)
    if max_batch is None:
        max_batch = MAX_BATCH_TINY if values <= TINY_INPUT else MAX_BATCH
    per_sample = 4 * values * ACTIVATION_FACTOR
    return int(max(1, min(max_batch, n, budget // max(per_sample, 1))))


class Sampler:
    """Runs a model on noisy copies of clean inputs, batch by batch.

    ``model`` maps a float32 batch [B, ...] (normalized) to class scores [B, k]. ``output_kind``
    'auto' is decided once, from the first batch the sampler sees; the read-only
    ``self.output_kind`` reports it. ``on_batch(count)`` is called after every forward pass (with
    lanes, from the calling thread, with the samples every lane finished since the last call).
    The noise level arrives with each input, as ``scale`` = sigma / std (see ``sample``).

    Two ways to run, chosen by ``fastpath.choose_path`` from the provider (``self.path`` says
    which and why):

    - the host path: ``noise.NoiseStream`` draws the noise, the model returns [B, k] scores,
      ``batch_measures`` and ``column_sums`` keep the measures (one C pass of
      ``onnxcert._kernels`` with the compiled noise, else NumPy). With ``prefetch`` a worker
      thread draws the next batch's noise while the model runs on the current one; one thread
      draws every batch of a stream in order, so the noise, and every result, is the same as
      without it. ``prefetch`` None lets the path decide (on for an ONNX classifier, off for a
      Python callable). With ``lanes`` > 1 (None: the classifier's ``session_options['lanes']``,
      see ``runtime.choose_lanes``; 1 for a Python callable) the estimation batches run that
      many at a time, one per thread: each lane draws its batch's noise under a lock, in batch
      order, then runs the model and its measures while the others do the same; a draw of
      fewer batches than lanes (a sequential run's first looks) is cut into one part per lane,
      each of at least MIN_LANE_BATCH samples. The noise of every sample, and so every result,
      is the same as with one lane.
    - the device path (CUDA; ``device_noise`` 'on' forces it anywhere): ``model`` must be an
      onnxcert Classifier; its graph is wrapped so that the noise is drawn and the measures
      computed on the device (see fastpath). The noise comes from another generator than the
      host path's, so results differ from it by sampling error, not more.
    """

    def __init__(self, model: Callable[[np.ndarray], np.ndarray], *, n0: int, n: int,
                 seed: int, batch_size: int, output_kind: str = "auto",
                 on_batch: Callable[[int], None] | None = None, prefetch: bool | None = None,
                 device_noise: str = "auto", lanes: int | None = None):
        self.model, self.n0, self.n, self.seed = model, n0, n, seed
        self.batch_size, self._output_kind, self.on_batch = int(batch_size), output_kind, on_batch
        self.device_noise = device_noise
        self.path = self._choose()
        self._prefetch_arg = prefetch
        self.prefetch = self.path.prefetch if prefetch is None else prefetch
        self._bufs: list[np.ndarray] = []
        self._pool: ThreadPoolExecutor | None = None
        self._pool_pid: int | None = None
        self._wrapped: dict[tuple[int, ...], object] = {}
        if lanes is None:
            lanes = model.session_options.get("lanes", 1) if isinstance(model, Classifier) else 1
        if int(lanes) < 1:
            raise ConfigError(f"lanes must be >= 1, got {lanes}")
        self.lanes = int(lanes)
        self._lane_pool: ThreadPoolExecutor | None = None
        self._lane_pool_key: tuple[int | None, int] | None = None

    @property
    def output_kind(self) -> str:
        """'logits' or 'probabilities' once decided (or as configured); 'auto' before the first batch."""
        return self._output_kind

    def _decide_output_kind(self, rows: np.ndarray) -> None:
        if self._output_kind == "auto":
            self._output_kind = detect_output_kind(rows)
            log.info("model output read as %s (decided from the first batch)", self._output_kind)

    def _choose(self) -> PathChoice:
        clf = self.model
        if not isinstance(clf, Classifier):
            if self.device_noise == "on":
                raise ConfigError("device noise needs an ONNX classifier opened by onnxcert")
            return PathChoice(False, False, "a Python model")
        return choose_path(provider=clf.provider, batch_mode=clf.batch_mode, opset=clf.info.opsets.get("ai.onnx"),
                           input_dtype=clf.input.dtype, device_noise=self.device_noise)

    def sample(self, index: int, x_norm: np.ndarray, scale: np.ndarray, name: str | None = None) -> InputSamples:
        """Selection then estimation for the clean normalized sample ``x_norm``; the noise is
        N(0, sigma^2) in [0, 1] pixel space, i.e. ``scale`` = sigma / std after normalization."""
        c, k = self.select(index, x_norm, scale, name)
        score, margin, votes = self.estimation(index, x_norm, scale, c, name)(0, self.n)
        return InputSamples(c, score, margin, votes, k)

    def select(self, index: int, x_norm: np.ndarray, scale: np.ndarray, name: str | None = None) -> tuple[int, int]:
        """The n0 selection samples: (c = argmax of the summed softmax, number of classes)."""
        where = _where(index, name)
        wrapped = self._device_session(index, x_norm, scale, where)
        if wrapped is not None:
            key, total = squares_key(self.seed, index, SELECTION), None
            for first, b in self._chunks(0, self.n0):
                out = self._device_batch(wrapped, key, first, b, 0, where)
                total = out["column_sums"] if total is None else total + out["column_sums"]
        else:
            total, rng = None, input_generator(self.seed, index, SELECTION)
            for rows in self._rows(rng, self.n0, x_norm, scale, where):
                total = column_sums(rows, self.output_kind, total, compiled=_compiled(rng))
        return int(np.argmax(total)), int(total.shape[0])

    def estimation(self, index: int, x_norm: np.ndarray, scale: np.ndarray, c: int,
                   name: str | None = None) -> Callable[[int, int], tuple[np.ndarray, np.ndarray, int]]:
        """``draw(start, stop)``: score, margin and vote count of estimation samples start .. stop - 1
        for class c. The noise of sample j is the same however the range is split into draws (the
        stream is keyed by (seed, index, 1) and does not depend on chunking), so a sequential run's
        first n_k samples are a fixed-n run's first n_k. Draws go forward; a draw that starts
        before the last one's end replays the stream from 0."""
        where = _where(index, name)
        wrapped = self._device_session(index, x_norm, scale, where)
        state = {"rng": input_generator(self.seed, index, ESTIMATION), "at": 0}

        def draw(start: int, stop: int) -> tuple[np.ndarray, np.ndarray, int]:
            if wrapped is not None:
                return self._estimate_on_device(wrapped, index, c, start, stop, where)
            if start < state["at"]:
                state["rng"], state["at"] = input_generator(self.seed, index, ESTIMATION), 0
            if start > state["at"]:  # skip ahead: draw the noise, run nothing
                for _ in self._noisy_batches(state["rng"], start - state["at"], x_norm, scale):
                    pass
            state["at"] = stop
            return self._estimate(state["rng"], c, stop - start, x_norm, scale, where)

        return draw

    def _estimate(self, rng, c, count, x_norm, scale, where) -> tuple[np.ndarray, np.ndarray, int]:
        score, margin = np.empty(count), np.empty(count)
        votes, done, compiled = 0, 0, _compiled(rng)
        sizes = self._sizes(count)
        if self.lanes > 1 and self._lanes_ready():
            if len(sizes) < self.lanes:  # a short draw (a sequential look): one smaller batch per lane
                parts = min(self.lanes, count // MIN_LANE_BATCH)  # more parts than batches: none above the batch size
                if parts > len(sizes):
                    sizes = [count // parts + (j < count % parts) for j in range(parts)]
            if len(sizes) > 1:
                return score, margin, self._estimate_lanes(rng, c, sizes, x_norm, scale, where, score, margin,
                                                           compiled)
        for rows in self._rows(rng, count, x_norm, scale, where):
            b = rows.shape[0]
            votes += batch_measures(rows, self.output_kind, c, score[done:done + b], margin[done:done + b],
                                    compiled=compiled)
            done += b
        return score, margin, votes

    def _sizes(self, count: int) -> list[int]:
        return [min(self.batch_size, count - done) for done in range(0, count, self.batch_size)]

    def _lanes_ready(self) -> bool:
        """Lanes start once the first batch has decided what single-lane code decides on it: the
        output kind, and a made-dynamic classifier's check of its batch dimension."""
        return self._output_kind != "auto" and getattr(self.model, "_checked", True)

    def _estimate_lanes(self, rng, c, sizes, x_norm, scale, where, score, margin, compiled) -> int:
        """The estimation batches ``sizes`` on ``self.lanes`` threads (this one and lanes - 1
        workers); returns the votes, with score and margin written in place.

        Batch k's noise is the stream's k-th block: a lane takes the next k and draws its noise
        under one lock, so the blocks are drawn in order whichever lane runs them. Progress is
        reported from this thread only. The first error of any lane (a model error, an interrupt
        here) stops every lane after its current batch and is raised once they all have stopped,
        so no worker writes into the buffers or the results after this returns."""
        starts = [0]
        for b in sizes:
            starts.append(starts[-1] + b)
        bufs = self._buffers(x_norm.shape, self.lanes)
        lock, stop = threading.Lock(), threading.Event()
        state = {"next": 0, "done": 0, "reported": 0}
        votes = [0] * len(sizes)
        errors: list[BaseException] = []

        def step(buf: np.ndarray) -> bool:
            """The next batch on this lane; False when none is left."""
            with lock:
                k = state["next"]
                if k == len(sizes):
                    return False
                state["next"] = k + 1
                batch = _fill(rng, buf[:sizes[k]], x_norm, scale)
            rows = _finite(self.model(batch), where)
            lo, hi = starts[k], starts[k + 1]
            votes[k] = batch_measures(rows, self.output_kind, c, score[lo:hi], margin[lo:hi], compiled=compiled)
            with lock:
                state["done"] += hi - lo
            return True

        def worker(buf: np.ndarray) -> None:
            try:
                while not stop.is_set() and step(buf):
                    pass
            except BaseException as exc:  # handed to the calling thread, which raises it
                errors.append(exc)
                stop.set()

        def report() -> None:
            if self.on_batch is not None:
                with lock:
                    new, state["reported"] = state["done"] - state["reported"], state["done"]
                if new:
                    self.on_batch(new)

        pool = self._lanes_pool()
        futures = [pool.submit(worker, bufs[j]) for j in range(1, self.lanes)]
        try:
            while not stop.is_set() and step(bufs[0]):
                report()
        except BaseException:
            stop.set()
            raise
        finally:
            for f in futures:
                f.exception()  # wait: a worker is at most one batch from stopping
        if errors:
            raise errors[0]
        report()
        return sum(votes)

    def _lanes_pool(self) -> ThreadPoolExecutor:
        key = (os.getpid(), self.lanes)
        if self._lane_pool is None or self._lane_pool_key != key:  # a forked child needs its own threads
            self._lane_pool = ThreadPoolExecutor(max_workers=self.lanes - 1, thread_name_prefix="onnxcert-lane")
            self._lane_pool_key = key
        return self._lane_pool

    def _estimate_on_device(self, wrapped, index, c, start, stop, where) -> tuple[np.ndarray, np.ndarray, int]:
        key, votes = squares_key(self.seed, index, ESTIMATION), 0
        score, margin = np.empty(stop - start), np.empty(stop - start)
        for first, b in self._chunks(start, stop):
            out = self._device_batch(wrapped, key, first, b, c, where)
            score[first - start:first - start + b] = out["score"]
            margin[first - start:first - start + b] = out["score"] - out["other"]
            votes += int(np.count_nonzero(out["won"]))
        return score, margin, votes

    def _device_session(self, index, x_norm, scale, where):
        """The device-path session with ``x_norm`` set, or None on the host path."""
        if not self.path.device_noise:
            return None
        wrapped = self._wrapped_session(index, x_norm, scale, where)
        if wrapped is not None:
            wrapped.set_sample(x_norm[None], scale)
        return wrapped

    def _device_batch(self, wrapped, key, first, count, c, where) -> dict[str, np.ndarray]:
        out = wrapped.run(key=key, first=first, count=count, c=c)
        _finite(out["total"], where)
        if self.on_batch is not None:
            self.on_batch(count)
        return out

    def _chunks(self, start: int, stop: int) -> Iterator[tuple[int, int]]:
        for first in range(start, stop, self.batch_size):
            yield first, min(self.batch_size, stop - first)

    def _wrapped_session(self, index, x_norm, scale, where):
        """The device-path session for this sample shape, built on first use; None when the first
        forward pass shows the path is not possible after all (a batch dimension that stays fixed)."""
        shape = tuple(x_norm.shape)
        if shape in self._wrapped:
            return self._wrapped[shape]
        # one host batch, the host path's first: decides output_kind as it would, and lets the
        # classifier check its batch dimension
        rng = input_generator(self.seed, index, SELECTION)
        probe = _fill(rng, np.empty((min(self.batch_size, self.n0), *shape), np.float32), x_norm, scale)
        rows = _finite(self.model(probe), where)
        self._decide_output_kind(rows)
        self.path = self._choose()
        if not self.path.device_noise:
            log.warning("device noise is off: %s", self.path.reason)
            self.prefetch = self.path.prefetch if self._prefetch_arg is None else self._prefetch_arg
            return None
        clf = self.model
        proto = wrap_classifier(classifier_proto(clf), clf.input.name, clf.output.name, shape,
                                output_kind=self.output_kind, device_noise=True)
        self._wrapped[shape] = open_wrapped(clf, proto, OUTPUT_NAMES, INPUT_NAMES)
        return self._wrapped[shape]

    def _rows(self, rng, count, x_norm, scale, where):
        """The model's outputs [B, k] on the next ``count`` noisy samples, batch by batch; NaN or
        inf is a ModelError."""
        for batch in self._noisy_batches(rng, count, x_norm, scale):
            rows = _finite(self.model(batch), where)
            self._decide_output_kind(rows)
            if self.on_batch is not None:
                self.on_batch(batch.shape[0])
            yield rows

    def _noisy_batches(self, rng, count, x_norm, scale) -> Iterator[np.ndarray]:
        """``x_norm + scale * z`` for the next ``count`` normals z of ``rng``, batch by batch.

        A yielded batch stays valid until the next one is asked for: with prefetch, the worker
        fills the other buffer meanwhile.
        """
        sizes = self._sizes(count)
        if not self.prefetch or len(sizes) == 1:
            buf = self._buffers(x_norm.shape, 1)[0]
            for b in sizes:
                yield _fill(rng, buf[:b], x_norm, scale)
            return
        bufs, pool = self._buffers(x_norm.shape, 2), self._worker()
        pending: Future | None = pool.submit(_fill, rng, bufs[0][:sizes[0]], x_norm, scale)
        try:
            for i in range(len(sizes)):
                batch = pending.result()
                pending = None
                if i + 1 < len(sizes):
                    pending = pool.submit(_fill, rng, bufs[(i + 1) % 2][:sizes[i + 1]], x_norm, scale)
                yield batch
        finally:
            if pending is not None:  # the consumer stopped early: let the worker finish with the buffer
                pending.exception()

    def _buffers(self, shape, count: int) -> list[np.ndarray]:
        if len(self._bufs) < count or self._bufs[0].shape[1:] != tuple(shape):
            self._bufs = [np.empty((self.batch_size, *shape), dtype=np.float32) for _ in range(count)]
        return self._bufs

    def _worker(self) -> ThreadPoolExecutor:
        if self._pool is None or self._pool_pid != os.getpid():  # a forked child needs its own thread
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="onnxcert-noise")
            self._pool_pid = os.getpid()
        return self._pool


def _finite(values, where: str):
    """``values`` (a batch's rows, or the device path's total), or a ModelError naming the input
    when any is NaN or inf."""
    if not np.all(np.isfinite(values)):
        raise ModelError(f"the model's output holds NaN or inf for {where}; no certificate is written for it")
    return values


def _where(index: int, name: str | None) -> str:
    return f"input {index}" + (f" ({name})" if name else "")


def _compiled(rng) -> bool:
    """Whether a stream's measures go through the compiled kernel: with the compiled noise, so
    that ``ONNXCERT_HOST_NOISE=sfc64-box-muller-40bit`` gives, bit for bit, what an install
    without the kernel gives."""
    return _kernels is not None and getattr(rng, "generator", None) == ZIGGURAT


def _kernel_rows(rows) -> bool:
    return (isinstance(rows, np.ndarray) and rows.ndim == 2 and rows.shape[1] >= 1
            and rows.dtype in (np.float32, np.float64) and rows.flags.c_contiguous)


def batch_measures(rows: np.ndarray, kind: str, c: int, score: np.ndarray, margin: np.ndarray, *,
                   compiled: bool = False) -> int:
    """One batch's measures for class c (Kumar et al. 2020, Section 4): ``score`` [B] <- h_c,
    ``margin`` [B] <- h_c - max_{j != c} h_j (float64, written in place), from the model's finite
    rows [B, k] read as ``kind`` ('logits': softmax in double; 'probabilities': clipped to
    [0, 1]); returns the votes #{argmax = c} (the first largest wins a tie, as np.argmax).
    ``compiled``: one pass in C (``onnxcert._kernels.measures``), equal to the NumPy pass to
    about 1e-16; rows it cannot take (float16, not contiguous) go the NumPy way."""
    if compiled and _kernel_rows(rows):
        return _kernels.measures(rows, KINDS[kind], c, score, margin)
    probs = to_probabilities(rows, kind)
    votes = int(np.count_nonzero(probs.argmax(axis=1) == c))
    score[:] = probs[:, c]
    probs[:, c] = -np.inf
    margin[:] = score - probs.max(axis=1)
    return votes


def column_sums(rows: np.ndarray, kind: str, total: np.ndarray | None, *, compiled: bool = False) -> np.ndarray:
    """``total`` (float64 [k], None for zeros) plus the batch's column sums of the rows read as
    probabilities (see ``batch_measures``): the selection's running sum of the softmax."""
    if total is None:
        total = np.zeros(rows.shape[1])
    if compiled and _kernel_rows(rows):
        _kernels.column_sums(rows, KINDS[kind], total)
        return total
    return total + to_probabilities(rows, kind).sum(axis=0)


def _fill(rng: NoiseStream, batch: np.ndarray, x_norm: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """batch <- x_norm + scale * z, z ~ N(0, I) float32: the next samples of ``rng``'s stream, in place."""
    return rng.fill(batch, x_norm, scale)
