"""What to certify: an image folder, one image, a ``.npy`` or a ``.npz`` -> items and labels.

- A folder is searched recursively for images (png, jpg, jpeg, bmp, webp, tif, tiff), in sorted
  order of their relative paths, so the input index of a file never depends on the file system.
  When every image sits in an immediate sub-folder, the sub-folder names are the labels:
  integers, or names listed in ``model.classes``. A ``labels.csv`` (``file,label``) in the folder
  overrides that, and so does a labels CSV given elsewhere (``labels_csv``), whose file and label
  columns may be chosen by header name or 0-based index (``csv_columns``). A folder from which no
  labels can be inferred (images directly in it, or a level too deep) gets a warning that says why.
- A ``.npy`` holds [N, ...] in [0, 1] pixel space, in the model's layout, before normalization;
  a ``.npz`` holds it as ``x`` with optional labels ``y`` (other names with ``npz_keys``). uint8
  arrays are read as 0..255.

Images are read at their true scale: 8-bit as 0..255, 16-bit grey (PNG, TIFF) as 0..65535, float
(mode F, e.g. a float TIFF) as given, which must lie in [0, 1]. 32-bit integer images, whose
scale is unknown, are refused. Pillow reads 16-bit colour PNGs at 8-bit precision.

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
from .untrusted import input_file, shown as quoted, special_kind

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
    label_source: str | None = None  # "sub-folders", a CSV's path, "y", "labels", or None
    folders: tuple[tuple[str, int], ...] = ()  # (sub-folder name, class index) when sub-folders label
    unreadable: tuple[SkippedInput, ...] = ()  # sub-folders that could not be listed (index None)

    def __len__(self) -> int:
        return len(self.names)

    @property
    def has_labels(self) -> bool:
        return any(label is not None for label in self.labels)

    def select(self, skip: int | None = None, limit: int | None = None) -> "InputSet":
        """Every ``skip``-th input (0, skip, 2 skip, ...: Cohen et al.'s --skip), at most ``limit`` of them."""
        for flag, v in (("--skip", skip), ("--limit", limit)):
            if v is not None and v < 1:
                raise InputError(f"{flag} must be >= 1, got {v}")
        chosen = list(range(0, len(self), skip or 1))[:limit]
        if len(chosen) == len(self):
            return self
        pick = lambda seq: tuple(seq[i] for i in chosen) if seq else seq  # noqa: E731
        array = self.array[chosen[0]:chosen[-1] + 1:skip or 1] if self.array is not None else None
        names = self.names if self.kind != "array" else (None,) * len(chosen)
        return InputSet(self.source, self.kind, pick(names), pick(self.labels), pick(self.files), array,
                        self.label_source, self.folders)

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
                labels: Sequence | np.ndarray | None = None, labels_csv: str | Path | None = None,
                csv_columns: Sequence[str | int] | None = None,
                npz_keys: Sequence[str] | None = None) -> InputSet:
    """Find the inputs at ``path`` (folder, image, .npy, .npz), or wrap an in-memory array.

    ``labels_csv`` labels a folder's images (default: its ``labels.csv``); ``csv_columns`` names
    its (file, label) columns by header or 0-based index. ``npz_keys`` are the (images, labels)
    names in a .npz (default ``x``, ``y``; the labels key may be omitted).
    """
    if labels_csv is not None and not (isinstance(path, (str, Path)) and Path(path).is_dir()):
        raise InputError("a labels CSV applies to a folder of images; for arrays put the labels in the .npz")
    if isinstance(path, np.ndarray):
        return _from_array(path, "array", labels, classes)
    path = Path(path)
    if not os.path.exists(path):
        raise InputError(f"input path {quoted(path)} does not exist")
    if path.is_dir():
        return _from_folder(path, classes, labels_csv, csv_columns)
    input_file(path, "input")  # a FIFO or device would block or never end
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return _from_array(_load_npy(path), str(path), labels, classes)
    if suffix == ".npz":
        x, y = _load_npz(path, npz_keys)
        return _from_array(x, str(path), y if labels is None else labels, classes)
    if suffix in IMAGE_SUFFIXES:
        return InputSet(str(path), "image", (str(path),), (None,), (path,))
    raise InputError(f"input {str(path)!r} is not a folder, an image ({', '.join(IMAGE_SUFFIXES)}), "
                     ".npy or .npz")


# ---------------------------------------------------------------- folders


def _from_folder(root: Path, classes: Sequence[str] | None, labels_csv=None, csv_columns=None) -> InputSet:
    files, anything, unreadable = _walk(root)
    if not files:
        if unreadable:
            raise InputError(f"folder {quoted(root)} holds no images that can be read: {unreadable[0].reason}")
        raise InputError(f"folder {quoted(root)} " + ("holds no images (" + ", ".join(IMAGE_SUFFIXES) + ")"
                                                       if anything else "is empty"))
    unreadable = tuple(unreadable)
    rel = [p.relative_to(root).as_posix() for p in files]
    names, paths = tuple(str(p) for p in files), tuple(files)
    csv_path = Path(labels_csv) if labels_csv is not None else root / LABELS_CSV
    if labels_csv is not None:
        input_file(csv_path, "labels CSV")  # not there, a directory, a FIFO
    if csv_path.is_file():
        labels = _labels_from_csv(csv_path, rel, classes, csv_columns, strict=labels_csv is None)
        return InputSet(str(root), "folder", names, labels, paths, label_source=str(csv_path), unreadable=unreadable)
    if csv_columns is not None:
        raise InputError(f"CSV columns were given but {str(root)!r} has no {LABELS_CSV}; name the CSV too")
    if all(len(r.split("/")) == 2 for r in rel):
        labels = tuple(parse_label(r.split("/")[0], classes, f"sub-folder of {r!r}") for r in rel)
        folders = tuple(sorted({(r.split("/")[0], lab) for r, lab in zip(rel, labels)}, key=lambda f: (f[1], f[0])))
        return InputSet(str(root), "folder", names, labels, paths, label_source="sub-folders", folders=folders,
                        unreadable=unreadable)
    log.warning("warning: %s", _why_no_labels(root, rel))
    return InputSet(str(root), "folder", names, (None,) * len(files), paths, unreadable=unreadable)


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
            raise InputError(f"folder {quoted(root)} cannot be read ({exc.strerror or type(exc).__name__})")
        reason = (f"folder {quoted(where)} cannot be read ({exc.strerror or type(exc).__name__}); "
                  "its images are not certified")
        log.warning("skipping: %s", reason)
        skipped.append(SkippedInput(None, str(where), reason))
    files.sort(key=lambda p: p.relative_to(root).as_posix())
    return files, anything or bool(errors), sorted(skipped, key=lambda s: s.input)


def _why_no_labels(root: Path, rel: list[str]) -> str:
    """Why a folder gives no labels, and what would."""
    depths = [len(r.split("/")) for r in rel]
    fix = f"add {LABELS_CSV} (file,label)"
    if max(depths) == 1:
        return (f"no labels for the {len(rel)} image(s) in {str(root)!r}: they sit directly in it; "
                f"put each class in its own sub-folder or {fix}")
    if min(depths) >= 3:
        tops = sorted({r.split("/")[0] for r in rel})
        shown = " or ".join(repr(str(root / t)) for t in tops[:3]) + (" ..." if len(tops) > 3 else "")
        return (f"no labels for the images in {str(root)!r}: they sit {min(depths) - 1} or more levels down, "
                f"one level too deep for class sub-folders; pass {shown} instead, or {fix}")
    flat = sum(d == 1 for d in depths)
    deep = sum(d >= 3 for d in depths)
    parts = ([f"{flat} directly in it"] if flat else []) + ([f"{deep} in nested sub-folders"] if deep else [])
    return (f"no labels for the images in {str(root)!r}: not every image sits in an immediate class "
            f"sub-folder ({', '.join(parts)}); move them or {fix}")


def _labels_from_csv(csv_path: Path, rel: list[str], classes, columns=None,
                     strict: bool = True) -> tuple[int | None, ...]:
    """Labels from a CSV of (file, label) rows; files are paths relative to the folder (or their
    names without extension, when that is unique). ``strict``: every row must name an image."""
    try:
        rows = list(csv.reader(csv_path.read_text(encoding="utf-8-sig").splitlines()))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{str(csv_path)!r} is not a readable CSV ({type(exc).__name__})") from None
    rows = [r for r in rows if r and any(c.strip() for c in r)]
    fi, li, width, rows = _csv_columns(csv_path, rows, columns)
    known = set(rel)
    stems = _unique_stems(rel)
    if columns is not None and rows and len(rows[0]) > fi:  # columns by index: skip a header row
        first = Path(rows[0][fi].strip()).as_posix()
        if first not in known and first not in stems and not strict:
            rows = rows[1:]
    by_file: dict[str, int | None] = {}
    unknown = 0
    for line, row in enumerate(rows, 1):
        if width is not None and len(row) != width:
            raise InputError(f"{str(csv_path)!r} row {line} must be 'file,label', got {','.join(row)!r}")
        if len(row) <= max(fi, li):
            raise InputError(f"{str(csv_path)!r} row {line} has {len(row)} column(s); the file and label "
                             f"columns are {fi} and {li} (0-based)")
        name = Path(row[fi].strip()).as_posix()
        name = name if name in known else stems.get(name, name)
        if name not in known:
            if strict:
                raise InputError(f"{str(csv_path)!r} row {line} names {name!r}, which is not an image in the folder")
            unknown += 1
            continue
        text = row[li].strip()
        by_file[name] = parse_label(text, classes, f"{csv_path.name} row {line}") if text else None
    if unknown:
        log.info("%s: %d row(s) name files that are not in the folder (ignored)", csv_path, unknown)
    missing = sum(r not in by_file for r in rel)
    if missing:
        log.warning("%d image(s) are not in %s and have no label", missing, csv_path)
    return tuple(by_file.get(r) for r in rel)


def _csv_columns(csv_path: Path, rows: list[list[str]], columns) -> tuple[int, int, int | None, list]:
    """(file column, label column, required row width or None, data rows)."""
    header = [c.strip() for c in rows[0]] if rows else []
    lower = [c.lower() for c in header]
    if columns is None:
        if "file" in lower and "label" in lower:
            return lower.index("file"), lower.index("label"), None if len(header) != 2 else 2, rows[1:]
        return 0, 1, 2, rows
    if len(columns) != 2:
        raise InputError(f"CSV columns must be two, file and label; got {list(columns)!r}")
    found = []
    has_header = False
    for col in columns:
        text = str(col).strip()
        if text.isdigit():
            found.append(int(text))
        elif text in header:
            found.append(header.index(text))
            has_header = True
        else:
            raise InputError(f"{str(csv_path)!r} has no column {text!r} (header: {', '.join(header) or 'none'}); "
                             "name a header column or give a 0-based index")
    return found[0], found[1], None, rows[1:] if has_header else rows


def _unique_stems(rel: list[str]) -> dict[str, str]:
    """Relative path without its extension -> the path, for names that are unique that way."""
    seen: dict[str, list[str]] = {}
    for r in rel:
        seen.setdefault(r.rsplit(".", 1)[0], []).append(r)
    return {k: v[0] for k, v in seen.items() if len(v) == 1}


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
        raise InputError(f"image {quoted(path)} is {kind}, not a regular file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.load()
                img = img.copy()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputError(f"image {str(path)!r} is too large to decode safely (over "
                         f"{Image.MAX_IMAGE_PIXELS:,} pixels: a decompression bomb?)") from None
    except Image.UnidentifiedImageError:
        raise InputError(f"image {str(path)!r} cannot be decoded (not an image format Pillow reads)") from None
    except Exception as exc:  # a hostile file can make a decoder raise almost anything
        raise InputError(f"image {str(path)!r} cannot be decoded ({_why(exc)})") from None
    return true_scale(img, f"image {str(path)!r}")


SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N")


def true_scale(img, name: str = "image"):
    """An image at its true scale: 8-bit modes as they are; 16-bit grey -> float (mode F) / 65535;
    float (mode F) checked to lie in [0, 1]; 32-bit integers refused (their scale is unknown)."""
    from PIL import Image

    if img.mode in SIXTEEN_BIT:
        a = np.asarray(img).astype(np.float32) / np.float32(65535)
        return Image.fromarray(a, "F")
    if img.mode == "I":
        raise InputError(f"{name} holds 32-bit integer pixels, whose scale is unknown; save it as 8- or "
                         "16-bit, or as float in [0, 1]")
    if img.mode == "F":
        a = np.asarray(img)
        lo, hi = float(np.min(a)), float(np.max(a))
        if not (np.isfinite(lo) and np.isfinite(hi)):
            raise InputError(f"{name} holds NaN or inf; float images must hold pixel values in [0, 1]")
        if lo < -1e-6 or hi > 1 + 1e-6:
            raise InputError(f"{name} is a float image with values in [{lo:g}, {hi:g}]; float images are read "
                             "as pixel values in [0, 1]: rescale it (or save it as 8- or 16-bit)")
    return img


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


def _load_npz(path: Path, keys: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """The images (``x``) and optional labels (``y``), or the arrays ``keys`` names: (images[, labels])."""
    keys = tuple(keys) if keys else ("x", "y")
    if not 1 <= len(keys) <= 2:
        raise InputError(f"npz keys must be one or two names (images[, labels]), got {list(keys)!r}")
    x_key, y_key = keys[0], (keys[1] if len(keys) == 2 else None)
    check_npz(path, "input", keys=keys, fix=f"save {x_key} as a .npy file, which is read memory-mapped")
    try:
        with np.load(path, allow_pickle=False) as data:
            if x_key not in data.files:
                raise InputError(f"{str(path)!r} has no {x_key!r} array (found: {', '.join(data.files) or 'none'}); "
                                 "name the images and labels arrays with --npz-keys IMAGES,LABELS")
            if len(keys) == 2 and keys != ("x", "y") and y_key not in data.files:
                raise InputError(f"{str(path)!r} has no {y_key!r} array (found: {', '.join(data.files)})")
            return data[x_key], (data[y_key] if y_key in data.files else None)
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
