"""The host path's Gaussian noise: SFC64 bits, Box-Muller with a 40-bit radius uniform, in float32.

Input ``index`` draws its selection noise (stream 0) and its estimation noise (stream 1) from
``SFC64(SeedSequence(seed, spawn_key=(index, stream)))``. A sample of D values takes exactly
P = ceil(D / 2) 64-bit words of that stream, one per normal pair, in order, so sample j is
always words j P .. (j + 1) P - 1: the noise does not depend on the batch size, on how a stream
is cut into draws, on the order of the inputs or on how they are split across runs, and the
first m samples of a stream are those of any longer draw.

Per word w (the layout of the device path's ``fastpath.box_muller``, with one word per pair):
the top 40 bits give the radius uniform u1 = (w >> 24 + 1/2) 2^-40, r = sqrt(-2 ln u1); the low
24 bits give the angle, theta = 2 pi (w mod 2^24 + 1/2) 2^-24. A sample's first P values are
r cos(theta), the next D - P are r sin(theta) (an odd D drops the last sine). The smallest u1 is
2^-41, so |z| reaches sqrt(82 ln 2) = 7.54: with 24-bit uniforms it would stop at 5.9 and drop
3e-8 of the mass per pair. u1 is rounded to float32 before the logarithm, a relative error of at
most 2^-24 that costs nothing in the tail (u1 < 2^-16 there, exact in float32).

On the 2-core benchmark machine this cost 7-9 ns per value, against 12-13 ns for NumPy's float32
ziggurat in the same run (benchmarks/bench_noise.py). It is not NumPy's ``standard_normal`` stream, which the host path used
before issue 17: reports made with that stream differ from new ones by sampling error.
"""

from __future__ import annotations

import math

import numpy as np

GENERATOR = "sfc64-box-muller-40bit"  # the name the report's provenance gives the host noise
CHUNK_PAIRS = 1 << 14  # pairs per step: the step's few temporaries stay in the L2 cache
_TWO_PI_24 = np.float32(2 * math.pi * 2.0 ** -24)
_TWO_M40 = np.float32(2.0 ** -40)
_HALF = np.float32(0.5)
_LOW24 = np.uint64((1 << 24) - 1)
_SHIFT = np.uint64(24)


class NoiseStream:
    """One input's selection or estimation noise, drawn sample by sample in order.

    ``fill(batch, x_norm, scale)`` writes ``x_norm + scale * z`` for the stream's next
    ``batch.shape[0]`` samples into ``batch`` (float32, C-contiguous) and returns it.
    """

    def __init__(self, seed: int, index: int, stream: int):
        self.bits = np.random.SFC64(np.random.SeedSequence(seed, spawn_key=(index, stream)))

    def fill(self, batch: np.ndarray, x_norm: np.ndarray, scale: np.ndarray) -> np.ndarray:
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
