"""The host path's Gaussian noise, keyed by (seed, input, stream), and cut-proof.

Input ``index`` draws its selection noise (stream 0) and its estimation noise (stream 1) from the
64-bit words of ``SFC64(SeedSequence(seed, spawn_key=(index, stream)))``, in order. Two
generators turn those words into float32 normals; the report's provenance and the journal name
the one used (``host_generator()``), and ``--resume`` refuses a journal made with the other:

- ``sfc64-ziggurat1024`` (the default when ``onnxcert._kernels`` is built, ``_kernels.c``): a
  1,024-layer ziggurat (Marsaglia and Tsang 2000) in compiled C, computed in double and rounded
  once to float32. Most values take one word (bits 0-9 the layer, bit 10 the sign, bits 11-63
  the position); about 0.43% take more: the wedge test against exp(-x^2 / 2), and beyond
  r = 4.039 Marsaglia's exact tail, so the law is the Gaussian's to double precision, with no
  truncation. The words are consumed strictly in order, so the noise does not depend on how a
  stream is cut into draws, and the first m samples of a stream are those of any longer draw.
  About 1.7 ns per value on the 2-core benchmark machine (benchmarks/README.md); the kernel
  releases the GIL, so the prefetch thread fills the next batch while onnxruntime runs. Until
  issue 17's last pass the ziggurat had 256 layers (``sfc64-ziggurat256``, about 2.0 ns): the
  same words, other normals.
- ``sfc64-box-muller-40bit`` (the NumPy fallback, when the extension is not built, e.g. an install
  without a C compiler; onnxcert says so once per process): a sample of D values takes exactly
  P = ceil(D / 2) words, one per normal pair, so sample j is always words j P .. (j + 1) P - 1,
  with the same properties. Per word (the layout of the device path's ``fastpath.box_muller``):
  the top 40 bits give the radius uniform u1 = (w >> 24 + 1/2) 2^-40, r = sqrt(-2 ln u1); the low
  24 bits give the angle, theta = 2 pi (w mod 2^24 + 1/2) 2^-24. A sample's first P values are
  r cos(theta), the next D - P are r sin(theta) (an odd D drops the last sine). The smallest u1
  is 2^-41, so |z| reaches sqrt(82 ln 2) = 7.54: with 24-bit uniforms it would stop at 5.9. u1 is
  rounded to float32 before the logarithm, a relative error of at most 2^-24 that costs nothing
  in the tail (u1 < 2^-16 there, exact in float32). 7-14 ns per value.

``ONNXCERT_HOST_NOISE`` (``auto``, the default, or a generator's name) forces one. The two give
different streams: results differ between them by sampling error only. Both fill
``x + scale * z`` in float32 arithmetic (z rounded to float32 first), so a fill equals
``x + scale * normals(...)`` bit for bit. Neither is NumPy's ``standard_normal``, which the host
path used before issue 17.
"""

from __future__ import annotations

import logging
import math
import os

import numpy as np

from .errors import ConfigError

try:
    from . import _kernels
except ImportError:  # built without a C compiler: the NumPy generator
    _kernels = None

log = logging.getLogger("onnxcert")

ZIGGURAT = "sfc64-ziggurat1024"  # compiled (onnxcert._kernels)
BOX_MULLER = "sfc64-box-muller-40bit"  # NumPy
GENERATORS = (ZIGGURAT, BOX_MULLER)
RETIRED = ("sfc64-ziggurat256",)  # the compiled generator before issue 17's last pass
HOST_NOISE_ENV = "ONNXCERT_HOST_NOISE"
CHUNK_PAIRS = 1 << 14  # Box-Muller pairs per step: the step's few temporaries stay in the L2 cache
_TWO_PI_24 = np.float32(2 * math.pi * 2.0 ** -24)
_TWO_M40 = np.float32(2.0 ** -40)
_HALF = np.float32(0.5)
_LOW24 = np.uint64((1 << 24) - 1)
_SHIFT = np.uint64(24)
_warned = False


def compiled() -> bool:
    """True when the compiled kernel ``onnxcert._kernels`` is built and imports."""
    return _kernels is not None


def host_generator() -> str:
    """The host noise generator this process uses: ``$ONNXCERT_HOST_NOISE`` when it names one,
    else (``auto`` or unset) the compiled ziggurat when built, else the NumPy Box-Muller, with a
    warning once per process. ConfigError for an unknown name, or the compiled one when not built."""
    global _warned
    want = os.environ.get(HOST_NOISE_ENV, "").strip() or "auto"
    if want not in ("auto", *GENERATORS):
        was = f" ({want} was replaced by {ZIGGURAT})" if want in RETIRED else ""
        raise ConfigError(f"{HOST_NOISE_ENV}={want!r} is not a host noise generator{was}; "
                          f"use auto, {ZIGGURAT} or {BOX_MULLER}")
    if want == ZIGGURAT and _kernels is None:
        raise ConfigError(f"{HOST_NOISE_ENV}={ZIGGURAT} needs onnxcert's compiled kernel (onnxcert._kernels), "
                          "which is not built: reinstall onnxcert where a C compiler is available "
                          f"(pip install .), or unset {HOST_NOISE_ENV}")
    if want != "auto":
        return want
    if _kernels is not None:
        return ZIGGURAT
    if not _warned:
        _warned = True
        log.warning("warning: the compiled noise kernel (onnxcert._kernels) is not built: the noise comes from "
                    "the slower NumPy generator %s (reinstall onnxcert with a C compiler for %s)", BOX_MULLER, ZIGGURAT)
    return BOX_MULLER


class NoiseStream:
    """One input's selection or estimation noise, drawn sample by sample in order.

    ``fill(batch, x_norm, scale)`` writes ``x_norm + scale * z`` for the stream's next
    ``batch.shape[0]`` samples into ``batch`` (float32, C-contiguous) and returns it.
    ``generator``: one of GENERATORS; by default ``host_generator()``.
    """

    def __init__(self, seed: int, index: int, stream: int, generator: str | None = None):
        self.generator = host_generator() if generator is None else generator
        if self.generator not in GENERATORS:
            raise ValueError(f"unknown host noise generator {self.generator!r}")
        self.bits = np.random.SFC64(np.random.SeedSequence(seed, spawn_key=(index, stream)))
        if self.generator == ZIGGURAT:
            if _kernels is None:
                raise ConfigError(f"the {ZIGGURAT} noise needs onnxcert._kernels, which is not built")
            self.state = np.array(self.bits.state["state"]["state"], dtype=np.uint64)  # advanced by the kernel

    def fill(self, batch: np.ndarray, x_norm: np.ndarray, scale: np.ndarray) -> np.ndarray:
        if self.generator == ZIGGURAT:
            shape = batch.shape[1:]
            x = np.ascontiguousarray(np.broadcast_to(x_norm, shape), dtype=np.float32)
            _kernels.fill(self.state, batch, x, *scale_runs(scale, shape))
            return batch
        count = batch.shape[0]
        flat = batch.reshape(count, -1)
        d = flat.shape[1]
        p = pairs(d)
        x_flat = np.broadcast_to(x_norm, batch.shape[1:]).reshape(-1)
        s_flat = np.broadcast_to(scale, batch.shape[1:]).reshape(-1)
        if p >= CHUNK_PAIRS:  # big samples: one at a time, in column steps
            for row in flat:
                for c0 in range(0, p, CHUNK_PAIRS):
                    c1 = min(p, c0 + CHUNK_PAIRS)
                    words = self.bits.random_raw(c1 - c0)[None]
                    box_muller(words, row[None, c0:c1], row[None, p + c0:min(d, p + c1)])
                row *= s_flat
                row += x_flat
            return batch
        rows = max(1, CHUNK_PAIRS // p)
        for r0 in range(0, count, rows):
            block = flat[r0:r0 + rows]
            words = self.bits.random_raw(block.shape[0] * p).reshape(block.shape[0], p)
            box_muller(words, block[:, :p], block[:, p:])
            block *= s_flat
            block += x_flat
        return batch

    def normals(self, count: int, shape) -> np.ndarray:
        """The stream's next ``count`` samples of pure noise, [count, *shape] float32."""
        return self.fill(np.empty((count, *shape), np.float32), np.float32(0), np.float32(1))


def scale_runs(scale, shape) -> tuple[np.ndarray, int]:
    """``scale`` (broadcastable to a sample of ``shape``) as the compiled kernel reads it: (s, run)
    with the scale of flat position j of the sample s[j // run]. One scale for all, or one per
    channel of a [C, H, W] sample, stays that small: a 224x224 sample then streams one array
    through the cache with the noise, not two."""
    a = np.asarray(scale, dtype=np.float32)
    shape = tuple(shape)
    if np.broadcast_shapes(a.shape, shape) != shape:
        raise ValueError(f"a scale of shape {a.shape} does not fit a sample of shape {shape}")
    dims = (1,) * (len(shape) - a.ndim) + a.shape
    varying = [i for i, n in enumerate(dims) if n != 1]
    hi = varying[-1] + 1 if varying else 0
    if all(dims[i] == shape[i] for i in range(hi)):  # constant over the trailing axes from hi
        return np.ascontiguousarray(a).reshape(-1), max(1, math.prod(shape[hi:]))
    return np.ascontiguousarray(np.broadcast_to(a, shape)).reshape(-1), 1


def pairs(values: int) -> int:
    """Normal pairs P per sample of ``values`` numbers."""
    return -(-values // 2)


def box_muller(words: np.ndarray, cos_out: np.ndarray, sin_out: np.ndarray) -> None:
    """Normals from 64-bit words [r, P]: ``cos_out`` [r, P] <- r cos(theta), ``sin_out``
    [r, Q <= P] <- r sin(theta) for the first Q pairs (see the module's docstring).

    ``words`` is used as scratch.
    """
    theta = np.bitwise_and(words, _LOW24).view(np.int64).astype(np.float32)
    theta += _HALF
    theta *= _TWO_PI_24
    np.right_shift(words, _SHIFT, out=words)
    radius = words.view(np.int64).astype(np.float32)  # < 2^40: rounded to 24 bits, exact below 2^24
    radius += _HALF
    radius *= _TWO_M40
    np.log(radius, out=radius)
    radius *= np.float32(-2.0)
    np.sqrt(radius, out=radius)
    np.cos(theta, out=cos_out)
    cos_out *= radius
    q = sin_out.shape[1]
    if q:
        np.sin(theta[:, :q], out=sin_out)
        sin_out *= radius[:, :q]
