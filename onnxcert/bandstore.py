"""The cdf-bj bands a run needs, obtained before its first forward pass: shipped with onnxcert,
read from the disk cache, or calibrated now (with a progress line) and cached.

``onnxcert.stats`` does no I/O and reads no environment: this module is the band's only disk
cache, and it hands the bands it obtains to ``stats.berk_jones.register_band``.

A cached table holds one number, the level scale lambda, beside (n, alpha) and the algorithm it
was calibrated with. It is not trusted: ``load_table`` rebuilds the band from (n, alpha, lambda)
and recomputes its crossing probability. A table of another algorithm, with any other content,
or whose band does not verify as the calibrated one (crossing probability above alpha, or below
alpha (1 - ACCEPT)), is refused with a warning and the band is calibrated again. So whoever can
write to the cache folder can cost a recalibration, never inflate a certificate. The shipped
scales are code (``stats/bj_tables.py``), recomputed by the tests.

Cache folder: $ONNXCERT_CACHE_DIR, else $XDG_CACHE_HOME/onnxcert, else ~/.cache/onnxcert.
"""

from __future__ import annotations

import json
import logging
import math
import os
import stat
import time
from pathlib import Path
from typing import Callable, Iterable

from .files import atomic_write_text
from .stats.bands import RankBand
from .stats.berk_jones import ACCEPT, ALGORITHM, band_at_scale, calibrate, known_band, register_band

log = logging.getLogger("onnxcert")

FORMAT = "onnxcert.bj-table/2"
MAX_TABLE_BYTES = 4096
_FIELDS = ("algorithm", "alpha", "format", "n", "scale")  # sorted


def cache_dir() -> Path:
    """$ONNXCERT_CACHE_DIR, else $XDG_CACHE_HOME/onnxcert, else ~/.cache/onnxcert."""
    if os.environ.get("ONNXCERT_CACHE_DIR"):
        return Path(os.environ["ONNXCERT_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "onnxcert"


def table_path(n: int, alpha: float, directory: Path | None = None) -> Path:
    """The cache file of (n, alpha); its name carries the algorithm, so a changed algorithm
    never reads an old table."""
    return (directory or cache_dir()) / f"cdf-bj-{ALGORITHM}-n{int(n)}-a{float(alpha)!r}.json"


def load_table(n: int, alpha: float, directory: Path | None = None) -> RankBand | None:
    """The cached band of (n, alpha) once it has proved itself, else None (a warning says why,
    unless there is simply no table)."""
    path = table_path(n, alpha, directory)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return _refuse(path, f"cannot read it ({exc.strerror or exc})")
    if not stat.S_ISREG(info.st_mode):
        return _refuse(path, "it is not a regular file")
    if info.st_size > MAX_TABLE_BYTES:
        return _refuse(path, f"it holds {info.st_size} bytes, more than a table's {MAX_TABLE_BYTES}")
    try:
        with open(path, "rb") as fh:
            data = json.loads(fh.read(MAX_TABLE_BYTES + 1).decode("utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        return _refuse(path, f"it is not a table ({type(exc).__name__})")
    problem = _check_fields(data, n, alpha)
    if problem:
        return _refuse(path, problem)
    band = band_at_scale(n, alpha, data["scale"])
    if not band.crossing <= alpha:
        return _refuse(path, f"its scale gives crossing probability {band.crossing:.6g} > alpha = {alpha:g}")
    if band.crossing < alpha * (1.0 - ACCEPT):
        return _refuse(path, f"its scale gives crossing probability {band.crossing:.6g}, not the "
                             f"calibrated alpha (1 - {ACCEPT:g})")
    return band


def _check_fields(data, n: int, alpha: float) -> str | None:
    if not isinstance(data, dict) or tuple(sorted(data)) != _FIELDS:
        return f"it does not hold exactly the fields {', '.join(_FIELDS)}"
    if data["format"] != FORMAT:
        return f"format {str(data['format'])[:40]!r}, expected {FORMAT!r}"
    if data["algorithm"] != ALGORITHM:
        return f"algorithm {str(data['algorithm'])[:40]!r}, expected {ALGORITHM!r}"
    if type(data["n"]) is not int or data["n"] != n or type(data["alpha"]) is not float or data["alpha"] != alpha:
        return f"it is not the table of n={n}, alpha={alpha!r}"
    scale = data["scale"]
    if type(scale) is not float or not math.isfinite(scale) or not 0.0 < scale < 1.0:
        return "its scale is not a number in (0, 1)"
    return None


def _refuse(path: Path, why: str) -> None:
    log.warning("ignoring the cached cdf-bj table %s: %s; calibrating again", path, why)
    return None


def save_table(band: RankBand, directory: Path | None = None) -> Path:
    """Write the calibrated band's scale to the cache atomically; returns its path."""
    if not (math.isfinite(band.scale) and band.name == "cdf-bj"):
        raise ValueError(f"only a calibrated cdf-bj band can be cached, not {band.name!r}")
    data = {"format": FORMAT, "algorithm": ALGORITHM, "n": int(band.n), "alpha": float(band.alpha),
            "scale": float(band.scale)}
    return atomic_write_text(table_path(band.n, band.alpha, directory), json.dumps(data, sort_keys=True) + "\n")


def prepare_bands(requests: Iterable[tuple[int, float]], progress: Callable[[str], None] | None = None,
                  *, cache: bool = True) -> dict[tuple[int, float], RankBand]:
    """Obtain the cdf-bj band of every (n, alpha) in ``requests`` before sampling starts, and
    register each in this process (``stats.berk_jones.bj_band`` then returns it at once).

    Order of sources: the bands already registered, the shipped scales, the disk cache (verified,
    see ``load_table``), else a calibration now, which ``progress`` (default: the log) announces
    with its (n, alpha) and its time, and which is cached. Returns the bands by (n, alpha).
    """
    say = progress or log.info
    bands: dict[tuple[int, float], RankBand] = {}
    todo = []
    for n, alpha in dict.fromkeys((int(n), float(alpha)) for n, alpha in requests):
        band = known_band(n, alpha)
        if band is None and cache:
            band = load_table(n, alpha)
            if band is not None:
                register_band(band)
        if band is None:
            todo.append((n, alpha))
        else:
            bands[(n, alpha)] = band
    for i, (n, alpha) in enumerate(todo, 1):
        count = f" ({i} of {len(todo)})" if len(todo) > 1 else ""
        say(f"calibrating the cdf-bj band for n={n}, alpha={alpha:g}{count} ...")
        start = time.perf_counter()
        band = calibrate(n, alpha)
        register_band(band)
        bands[(n, alpha)] = band
        where = ""
        if cache and band.name == "cdf-bj":
            try:
                where = f"; cached in {save_table(band).parent}"
            except OSError as exc:
                log.warning("could not cache the cdf-bj band in %s: %s", cache_dir(), exc.strerror or exc)
        say(f"cdf-bj band for n={n}, alpha={alpha:g} calibrated in {time.perf_counter() - start:.2f} s "
            f"(crossing probability {band.crossing:.6g}){where}")
    return bands


def band_requests(settings) -> list[tuple[int, float]]:
    """The (n, alpha) of the cdf-bj band that a fixed-n run with ``settings`` uses, if any."""
    return [(int(settings.n), float(settings.alpha))] if "cdf-bj" in settings.methods else []
