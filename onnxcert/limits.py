"""Resource checks made before any work starts: declared sizes against what this machine has.

A run that cannot fit is refused with one line that names the limit and how to change it,
instead of a MemoryError traceback minutes in, or the kernel's OOM killer:

- ``check_samples``: n estimation samples of one input, kept (score and margin) and bounded
  (the CDF bands sort and rank them): about ``SAMPLE_BYTES`` each.
- ``check_batch``: one batch of noisy samples, its buffers and the model's activations.
- ``check_threads``: onnxruntime threads far beyond the cores this process may use.
- ``npy_header`` / ``check_npz``: an array file's header is read before its data, so a header
  that claims 10^12 rows, or a small ``.npz`` that inflates to gigabytes, is refused unread.

Memory available is the kernel's MemAvailable, capped by a cgroup (container) limit, or the
``ONNXCERT_MEMORY`` environment variable (bytes, or with a K/M/G/T suffix) when set.
"""

from __future__ import annotations

import math
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import ConfigError, InputError
from .untrusted import shown

MEMORY_ENV = "ONNXCERT_MEMORY"
# Measured with tracemalloc (certify_samples, every method, the default thresholds and radii):
# a peak of 67-70 bytes per estimation sample at n = 1e5 and 1e6 when first set; 23, 18 and 11
# at n = 1e5, 2.5e5 and 1e6 after issue 17 (both measures sorted at once up to 2^18 samples), plus
# the 16 bytes of score and margin that sampling keeps; the rest is room for more thresholds and radii.
SAMPLE_BYTES = 128
BATCH_BUFFERS = 2  # the sampler's noisy-batch buffers (two with prefetch)
THREADS_PER_CORE = 4  # more onnxruntime threads than this per core only thrash
ARRAY_SHARE = 0.5  # an input or score array loaded whole may take this share of the memory


def parse_bytes(text: str) -> int:
    """'8G' -> 8 * 2**30; '123' -> 123."""
    text = text.strip().upper().removesuffix("B").removesuffix("I")
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}.get(text[-1:], 1)
    number = text[:-1] if scale > 1 else text
    try:
        value = float(number)
    except ValueError:
        raise ConfigError(f"{MEMORY_ENV} must be a size in bytes (e.g. 8G), got {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise ConfigError(f"{MEMORY_ENV} must be a positive size, got {text!r}")
    return int(value * scale)


def available_memory() -> int | None:
    """Bytes this process can still allocate; None when unknown (not Linux, no /proc)."""
    env = os.environ.get(MEMORY_ENV)
    if env:
        return parse_bytes(env)
    values = [v for v in (_meminfo_available(), _cgroup_room()) if v is not None]
    return min(values) if values else None


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_room() -> int | None:
    """A container's memory limit minus its usage (cgroup v2, then v1); None when unlimited."""
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            limit = Path(limit_file).read_text().strip()
            if limit == "max" or int(limit) >= 1 << 60:
                return None
            return max(0, int(limit) - int(Path(usage_file).read_text().strip()))
        except (OSError, ValueError):
            continue
    return None


def human(n: float) -> str:
    """Bytes in a readable unit: 1.5 GiB, 312 MiB."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} EiB"  # pragma: no cover


def _room(need: int, what: str, fix: str, memory: int | None) -> None:
    memory = available_memory() if memory is None else memory
    if memory is not None and need > memory:
        raise ConfigError(f"{what} needs about {human(need)} of memory, more than the {human(memory)} "
                          f"available ({MEMORY_ENV} overrides that figure); {fix}")


def check_samples(n: int, memory: int | None = None) -> None:
    """The n estimation samples of one input, and their bounds, must fit in memory."""
    _room(n * SAMPLE_BYTES, f"n = {n:,} estimation samples per input", "lower smoothing.n (--n)", memory)


def sample_bytes(sample_shape: Sequence[int]) -> int:
    """One noisy sample as the model receives it (float32)."""
    return 4 * math.prod(int(d) for d in sample_shape)


def batch_bytes(batch: int, sample_shape: Sequence[int]) -> int:
    """A batch's buffers and the model's activations (ACTIVATION_FACTOR times the input, measured
    on ResNets), plus the clean sample and its normalized copy."""
    from .sampling import ACTIVATION_FACTOR

    one = sample_bytes(sample_shape)
    return batch * one * (BATCH_BUFFERS + ACTIVATION_FACTOR) + 2 * one


def check_batch(batch: int, sample_shape: Sequence[int], *, explicit: bool, source: str = "",
                memory: int | None = None, lanes: int = 1) -> None:
    """One batch of ``batch`` samples of ``sample_shape`` per lane (``lanes`` run at once) must
    fit in memory. ``source`` names where the shape came from (an image), for the message."""
    dims = "x".join(str(int(d)) for d in sample_shape)
    where = f" ({source})" if source else ""
    if explicit and batch > 1:
        fix = "lower --batch-size (smoothing.batch_size), or leave it out to have it chosen automatically"
    else:
        fix = "set a smaller preprocess.size, or preprocess.resize to scale images down"
    what = f"a batch of {batch:,} sample(s) of shape {dims}{where}"
    _room(batch_bytes(batch, sample_shape), what, fix, memory)
    if lanes > 1:  # one batch fits, but each lane holds one
        _room(lanes * batch_bytes(batch, sample_shape), f"{what} in each of {lanes} lanes (concurrent forward passes)",
              fix + ", or pass --lanes 1", memory)


def check_threads(threads: int | None, cores: int) -> None:
    """--threads far beyond the cores available would thrash for minutes; refuse it."""
    if threads is not None and threads > THREADS_PER_CORE * cores:
        raise ConfigError(f"--threads {threads:,} is more than {THREADS_PER_CORE} per core for the {cores} "
                          f"core(s) this process may use; pass at most --threads {THREADS_PER_CORE * cores} "
                          "(or leave it out: one per core)")


# ---------------------------------------------------------------- array files, read header first


@dataclass(frozen=True)
class ArrayHeader:
    """What a .npy header declares."""

    shape: tuple[int, ...]
    dtype: np.dtype
    nbytes: int

    def describe(self) -> str:
        return f"{list(self.shape)} {self.dtype}"


def read_header(fh) -> ArrayHeader:
    """The header of the .npy stream ``fh`` (positioned at its start); ValueError when it is not one."""
    fmt = np.lib.format
    version = fmt.read_magic(fh)
    if version == (1, 0):
        shape, _, dtype = fmt.read_array_header_1_0(fh)
    elif version == (2, 0):
        shape, _, dtype = fmt.read_array_header_2_0(fh)
    else:
        shape, _, dtype = fmt._read_array_header(fh, version)  # 3.0: no public reader
    count = math.prod(int(d) for d in shape)
    return ArrayHeader(tuple(int(d) for d in shape), np.dtype(dtype), count * np.dtype(dtype).itemsize)


def npy_header(path: Path, what: str) -> ArrayHeader:
    """A .npy file's header, checked against the file's size (it is read memory-mapped)."""
    try:
        with open(path, "rb") as fh:
            header = read_header(fh)
            offset = fh.tell()
    except (OSError, ValueError, EOFError, SyntaxError) as exc:
        raise InputError(f"{what} {shown(path)} is not a readable .npy file ({type(exc).__name__})") from None
    size = path.stat().st_size - offset
    if header.dtype.hasobject:
        return header  # refused by np.load(allow_pickle=False), with its own message
    if header.nbytes > size:
        raise InputError(f"{what} {shown(path)} is truncated or corrupt: its header declares "
                         f"{header.describe()} ({human(header.nbytes)}), but the file holds {human(size)} of data")
    return header


def check_npz(path: Path, what: str, keys: Sequence[str] | None = None, memory: int | None = None,
              fix: str = "save the arrays as .npy files, which are read memory-mapped") -> dict[str, ArrayHeader]:
    """The headers of a .npz's arrays (``keys``, or all), checked before any is loaded: each
    must fit in the bytes its zip entry declares, and together they must fit in ARRAY_SHARE of
    the memory available (a 5.7 MB .npz can inflate to 5.9 GB)."""
    headers: dict[str, ArrayHeader] = {}
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                key = info.filename.removesuffix(".npy")
                if not info.filename.endswith(".npy") or (keys is not None and key not in keys):
                    continue
                with zf.open(info) as fh:
                    header = read_header(fh)
                    offset = fh.tell()
                if not header.dtype.hasobject and header.nbytes > info.file_size - offset:
                    raise InputError(f"{what} {shown(path)}: array {key!r} is truncated or corrupt: its header "
                                     f"declares {header.describe()} ({human(header.nbytes)}), but its entry holds "
                                     f"{human(max(0, info.file_size - offset))}")
                headers[key] = header
    except (OSError, ValueError, EOFError, SyntaxError, zipfile.BadZipFile, NotImplementedError) as exc:
        raise InputError(f"{what} {shown(path)} is not a readable .npz file ({type(exc).__name__})") from None
    total = sum(h.nbytes for h in headers.values())
    memory = available_memory() if memory is None else memory
    if memory is not None and total > ARRAY_SHARE * memory:
        biggest = max(headers, key=lambda k: headers[k].nbytes)
        raise InputError(f"{what} {shown(path)} inflates to {human(total)} when loaded ({biggest!r}: "
                         f"{headers[biggest].describe()}), more than half of the {human(memory)} of memory "
                         f"available ({MEMORY_ENV} overrides that figure); {fix}")
    return headers
