"""What to certify: an image folder, one image, a ``.npy`` or a ``.npz`` -> items and labels.

- A folder is searched recursively for images (png, jpg, jpeg, bmp, webp, tif, tiff), in sorted
  order of their relative paths, so the input index of a file never depends on the file system.
  When every image sits in an immediate sub-folder, the sub-folder names are the labels:
  integers, or names listed in ``model.classes``. A ``labels.csv`` (``file,label``) in the folder
  overrides that.
- A ``.npy`` holds [N, ...] in [0, 1] pixel space, in the model's layout, before normalization;
  a ``.npz`` holds it as ``x`` with optional labels ``y``. uint8 arrays are read as 0..255.

Images are decoded lazily, one at a time, with Pillow: ``InputSet.load(i)`` returns a PIL image
for files and a float32 array for arrays. A file that is corrupt, not an image, or a decompression
bomb raises InputError there; the pipeline skips such an image of a folder (``SkippedInput``)
unless told to be strict.
"""

from __future__ import annotations

import csv
import logging
import os
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .errors import InputError
from .limits import check_npz, npy_header
from .untrusted import input_file, shown, special_kind

log = logging.getLogger("onnxcert")

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
LABELS_CSV = "labels.csv"


@dataclass(frozen=True)
class InputSet:
    """N inputs: ``names[i]`` is a path (or None for array rows), ``labels[i]`` an int or None."""

    source: str
    kind: str  # folder | image | array
    names: tuple[str | None, ...]
    labels: tuple[int | None, ...]
    files: tuple[Path, ...] = ()
    array: Any = None  # [N, ...] float32/uint8 (possibly memory-mapped) for kind == array
    unreadable: tuple[SkippedInput, ...] = ()  # sub-folders that could not be listed (index None)

    def __len__(self) -> int:
        return len(self.names)

    @property
    def has_labels(self) -> bool:
        return any(label is not None for label in self.labels)

    def load(self, i: int):
        """Input i: a PIL image (files) or a float32 array in [0, 1] (arrays)."""
        if self.kind == "array":
            return _array_row(self.array, i, self.source)
        return open_image(self.files[i])


@dataclass(frozen=True)
class SkippedInput:
    """An input of a folder that could not be decoded; the run goes on without it."""

    index: int | None  # None for a sub-folder that could not be listed
    input: str | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "input": self.input, "reason": self.reason}


def load_inputs(path: str | Path | np.ndarray, *, classes: Sequence[str] | None = None,
                labels: Sequence | np.ndarray | None = None) -> InputSet:
    """Find the inputs at ``path`` (folder, image, .npy, .npz), or wrap an in-memory array."""
    if isinstance(path, np.ndarray):
        return _from_array(path, "array", labels, classes)
    path = Path(path)
    if not os.path.exists(path):
        raise InputError(f"input path {shown(path)} does not exist")
    if path.is_dir():
        return _from_folder(path, classes)
    input_file(path, "input")  # a FIFO or device would block or never end
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return _from_array(_load_npy(path), str(path), labels, classes)
    if suffix == ".npz":
        x, y = _load_npz(path)
        return _from_array(x, str(path), y if labels is None else labels, classes)
    if suffix in IMAGE_SUFFIXES:
        return InputSet(str(path), "image", (str(path),), (None,), (path,))
    raise InputError(f"input {str(path)!r} is not a folder, an image ({', '.join(IMAGE_SUFFIXES)}), "
                     ".npy or .npz")


# ---------------------------------------------------------------- folders


def _from_folder(root: Path, classes: Sequence[str] | None) -> InputSet:
    files, anything, unreadable = _walk(root)
    if not files:
        if unreadable:
            raise InputError(f"folder {shown(root)} holds no images that can be read: {unreadable[0].reason}")
        raise InputError(f"folder {shown(root)} " + ("holds no images (" + ", ".join(IMAGE_SUFFIXES) + ")"
                                                      if anything else "is empty"))
    rel = [p.relative_to(root).as_posix() for p in files]
    csv_path = root / LABELS_CSV
    if csv_path.is_file():
        labels = _labels_from_csv(csv_path, rel, classes)
    elif all(len(r.split("/")) == 2 for r in rel):
        labels = tuple(parse_label(r.split("/")[0], classes, f"sub-folder of {r!r}") for r in rel)
    else:
        labels = (None,) * len(files)
    return InputSet(str(root), "folder", tuple(str(p) for p in files), labels, tuple(files),
                    unreadable=tuple(unreadable))


def _walk(root: Path) -> tuple[list[Path], bool, list[SkippedInput]]:
    """Image files under ``root`` (regular or not: a FIFO named a.png is refused when it is
    opened, and so skipped with its reason), in sorted order of their relative paths; whether
    the folder holds anything; and the sub-folders that could not be listed, each with a warning.
    Symbolic links to folders are not followed (as before: ``Path.rglob``)."""
    errors: list[OSError] = []
    files: list[Path] = []
    anything = False
    for folder, dirs, names in os.walk(root, onerror=errors.append):
        anything = anything or bool(dirs or names)
        files += [Path(folder) / n for n in names if Path(n).suffix.lower() in IMAGE_SUFFIXES]
    skipped = []
    for exc in errors:
        where = Path(exc.filename) if exc.filename else root
        if where == root:
            raise InputError(f"folder {shown(root)} cannot be read ({exc.strerror or type(exc).__name__})")
        reason = (f"folder {shown(where)} cannot be read ({exc.strerror or type(exc).__name__}); "
                  "its images are not certified")
        log.warning("skipping: %s", reason)
        skipped.append(SkippedInput(None, str(where), reason))
    files.sort(key=lambda p: p.relative_to(root).as_posix())
    return files, anything or bool(errors), sorted(skipped, key=lambda s: s.input)


def _labels_from_csv(csv_path: Path, rel: list[str], classes) -> tuple[int | None, ...]:
    try:
        rows = list(csv.reader(csv_path.read_text(encoding="utf-8-sig").splitlines()))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{str(csv_path)!r} is not a readable CSV ({type(exc).__name__})") from None
    rows = [r for r in rows if r and any(c.strip() for c in r)]
    if rows and [c.strip().lower() for c in rows[0]] == ["file", "label"]:
        rows = rows[1:]
    known = set(rel)
    by_file: dict[str, int | None] = {}
    for line, row in enumerate(rows, 1):
        if len(row) != 2:
            raise InputError(f"{str(csv_path)!r} row {line} must be 'file,label', got {','.join(row)!r}")
        name = Path(row[0].strip()).as_posix()
        if name not in known:
            raise InputError(f"{str(csv_path)!r} row {line} names {name!r}, which is not an image in the folder")
        by_file[name] = parse_label(row[1].strip(), classes, f"{LABELS_CSV} row {line}") if row[1].strip() else None
    missing = sum(r not in by_file for r in rel)
    if missing:
        log.warning("%d image(s) are not in %s and have no label", missing, csv_path)
    return tuple(by_file.get(r) for r in rel)


def parse_label(text: str, classes: Sequence[str] | None, where: str) -> int:
    """A class name listed in ``classes`` or a non-negative integer (below len(classes) if given)."""
    text = str(text).strip()
    if classes is not None and text in classes:
        return list(classes).index(text)
    try:
        value = int(text)
    except ValueError:
        hint = (f"one of model.classes ({_short(classes)})" if classes is not None
                else "an integer (or set model.classes to use names)")
        raise InputError(f"label {text!r} ({where}) must be {hint}") from None
    if value < 0:
        raise InputError(f"label {value} ({where}) must be >= 0")
    if classes is not None and value >= len(classes):
        raise InputError(f"label {value} ({where}) is outside the classes 0..{len(classes) - 1}")
    return value


def _short(items: Sequence[str], n: int = 5) -> str:
    items = list(items)
    return ", ".join(items[:n]) + (f", ... ({len(items)} in all)" if len(items) > n else "")


def open_image(path: Path):
    """Decode an image with Pillow, fully (so a truncated file fails here, with its name).

    An image above Pillow's ``Image.MAX_IMAGE_PIXELS`` (a decompression bomb) is refused: Pillow
    only warns between that limit and twice it, and here the warning is an error too.
    """
    from PIL import Image

    kind = special_kind(path)
    if kind is not None:
        raise InputError(f"image {shown(path)} is {kind}, not a regular file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.load()
                return img.copy()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputError(f"image {str(path)!r} is too large to decode safely (over "
                         f"{Image.MAX_IMAGE_PIXELS:,} pixels: a decompression bomb?)") from None
    except Image.UnidentifiedImageError:
        raise InputError(f"image {str(path)!r} cannot be decoded (not an image format Pillow reads)") from None
    except Exception as exc:  # a hostile file can make a decoder raise almost anything
        raise InputError(f"image {str(path)!r} cannot be decoded ({_why(exc)})") from None


def _why(exc: BaseException) -> str:
    text = (str(exc).strip().splitlines() or [""])[0]
    text = text if len(text) <= 100 else text[:97] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# ---------------------------------------------------------------- arrays


def _load_npy(path: Path) -> np.ndarray:
    npy_header(path, "input")  # a header that claims more rows than the file holds
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise InputError(f"{str(path)!r} is not a readable .npy file ({type(exc).__name__})") from None


def _load_npz(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    check_npz(path, "input", keys=("x", "y"), fix="save x as a .npy file, which is read memory-mapped")
    try:
        with np.load(path, allow_pickle=False) as data:
            if "x" not in data.files:
                raise InputError(f"{str(path)!r} has no 'x' array (found: {', '.join(data.files) or 'none'})")
            return data["x"], (data["y"] if "y" in data.files else None)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise InputError(f"{str(path)!r} is not a readable .npz file ({type(exc).__name__})") from None


def _from_array(x: np.ndarray, source: str, labels, classes) -> InputSet:
    if x.dtype.kind not in "fiu":
        raise InputError(f"{source}: x must be a numeric array, got dtype {x.dtype}")
    if x.ndim < 2:
        raise InputError(f"{source}: x must be [N, ...] with one row per input, got shape {list(x.shape)}")
    if x.shape[0] == 0:
        raise InputError(f"{source}: x holds no inputs (shape {list(x.shape)})")
    if x.dtype.kind in "iu" and x.dtype != np.uint8:
        raise InputError(f"{source}: integer arrays must be uint8 (0..255), got dtype {x.dtype}")
    if x.dtype.kind == "f":
        lo, hi = float(np.min(x)), float(np.max(x))  # NaN propagates into both
        if not (np.isfinite(lo) and np.isfinite(hi)):
            raise InputError(f"{source}: x holds NaN or inf; pixel values must be finite, in [0, 1]")
        if not (lo >= -1e-6 and hi <= 1 + 1e-6):
            raise InputError(f"{source}: x must hold pixel values in [0, 1] (before normalization), "
                             f"got values in [{lo:g}, {hi:g}]")
    else:
        log.info("%s: uint8 array, read as 0..255 and divided by 255", source)
    return InputSet(source, "array", (None,) * x.shape[0], _array_labels(labels, x.shape[0], source, classes),
                    array=x)


def _array_labels(y, count: int, source: str, classes) -> tuple[int | None, ...]:
    if y is None:
        return (None,) * count
    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] != count:
        raise InputError(f"{source}: labels y must have shape [{count}], got {list(y.shape)}")
    if y.dtype.kind in "iu":
        return tuple(parse_label(str(int(v)), classes, f"{source} row {i}") for i, v in enumerate(y))
    if y.dtype.kind in "US":
        return tuple(parse_label(str(v), classes, f"{source} row {i}") for i, v in enumerate(y))
    raise InputError(f"{source}: labels y must be integers or class names, got dtype {y.dtype}")


def _array_row(x: np.ndarray, i: int, source: str) -> np.ndarray:
    row = np.asarray(x[i])
    if row.dtype == np.uint8:
        return row.astype(np.float32) / np.float32(255)
    return row.astype(np.float32)
