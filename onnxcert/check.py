"""`onnxcert check`: what the model sees, with no noise.

One noise-free forward pass per input, batched: per input the top-k classes with names and
scores (softmax probabilities), the label and whether the prediction is right; the clean
accuracy, the counts per class, and the folder -> class index -> class name mapping that gave
the labels. It takes seconds, so it is the first thing to run on a new model: a certificate for
a wrongly preprocessed model is meaningless.

``dump`` writes one input's tensor as the model receives it (``.npy``) and, for image-shaped
inputs, a PNG of x in [0, 1] before normalization. ``compare_reference`` reads expected scores
or predictions (npz or csv) and reports the largest difference.
"""

from __future__ import annotations

import csv
import logging
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from . import diagnostics
from .errors import InputError, ModelError
from .inputs import InputSet, SkippedInput
from .pipeline import RunSetup, check_classes, load_or_skip
from .stats.measures import detect_output_kind, is_probabilities, to_probabilities

log = logging.getLogger("onnxcert")

SCHEMA = "onnxcert.check/1"
CHECK_BATCH = 64


@dataclass(frozen=True)
class TopClass:
    cls: int
    name: str | None
    score: float

    def to_dict(self) -> dict[str, Any]:
        return {"class": self.cls, "name": self.name, "score": self.score}


@dataclass(frozen=True)
class CheckRecord:
    """One input's noise-free prediction."""

    index: int
    input: str | None
    label: int | None
    prediction: int
    top: tuple[TopClass, ...]

    @property
    def correct(self) -> bool | None:
        return None if self.label is None else self.label == self.prediction

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "input": self.input, "label": self.label, "prediction": self.prediction,
                "correct": self.correct, "top": [t.to_dict() for t in self.top]}


@dataclass(frozen=True)
class CheckResult:
    records: tuple[CheckRecord, ...]
    output_kind: str
    classes: tuple[str, ...] | None
    k: int
    mapping: tuple[dict, ...] = ()
    skipped: tuple[SkippedInput, ...] = ()
    warnings: tuple[str, ...] = ()
    scores: np.ndarray = field(default=None, repr=False)  # [N, k] raw outputs, for --reference

    @property
    def clean_accuracy(self) -> float | None:
        labelled = [r for r in self.records if r.label is not None]
        return sum(r.correct for r in labelled) / len(labelled) if labelled else None

    def predicted_counts(self) -> dict[int, int]:
        return dict(sorted(Counter(r.prediction for r in self.records).items()))

    def label_counts(self) -> dict[int, int]:
        return dict(sorted(Counter(r.label for r in self.records if r.label is not None).items()))

    def to_dict(self) -> dict[str, Any]:
        name = lambda c: None if self.classes is None or c >= len(self.classes) else self.classes[c]  # noqa: E731
        per_class = sorted(set(self.predicted_counts()) | set(self.label_counts()))
        return {
            "schema": SCHEMA,
            "clean_accuracy": self.clean_accuracy,
            "count": len(self.records),
            "output_kind": self.output_kind,
            "classes": None if self.classes is None else list(self.classes),
            "mapping": list(self.mapping),
            "per_class": [{"class": c, "name": name(c), "predicted": self.predicted_counts().get(c, 0),
                           "labelled": self.label_counts().get(c, 0)} for c in per_class],
            "warnings": list(self.warnings),
            "skipped": [s.to_dict() for s in self.skipped],
            "records": [r.to_dict() for r in self.records],
        }


def class_mapping(setup: RunSetup) -> tuple[dict, ...]:
    """Sub-folder -> class index -> class name, for a folder labelled by its sub-folders."""
    classes = setup.config.model.classes
    return tuple({"folder": folder, "class": c, "name": classes[c] if classes and c < len(classes) else None}
                 for folder, c in setup.inputs.folders)


def check(setup: RunSetup, *, top_k: int = 5,
          on_progress: Callable[[int], None] | None = None) -> CheckResult:
    """Every input once, without noise; see the module docstring."""
    items, pre, clf = setup.inputs, setup.preprocessor, setup.classifier
    indices, batch, rows, skipped = [], [], [], []

    def flush() -> None:
        if batch:
            out = np.asarray(clf(np.stack(batch)))
            if not np.all(np.isfinite(out)):
                raise _nan(out, indices[-len(batch):], items)
            rows.append(out)
            if on_progress is not None:
                on_progress(len(batch))
            batch.clear()

    for i in range(len(items)):
        item = load_or_skip(items, i, setup.strict_inputs)
        if isinstance(item, SkippedInput):
            skipped.append(item)
            continue
        x = pre.normalize(pre.prepare(item, _name(items, i)))
        if batch and x.shape != batch[0].shape or len(batch) >= CHECK_BATCH:
            flush()
        batch.append(x)
        indices.append(i)
    flush()
    if not rows:
        raise InputError(f"none of the {len(items)} input(s) in {items.source!r} can be decoded")
    scores = np.concatenate(rows)
    k = scores.shape[1]
    check_classes(setup.config, items, k)
    configured = setup.config.model.output_kind
    kind = detect_output_kind(scores, kind=configured)
    probs = to_probabilities(scores, kind)
    classes = setup.config.model.classes
    records = tuple(_record(i, items, probs[j], classes, top_k) for j, i in enumerate(indices))
    result = CheckResult(records, kind, classes, k, class_mapping(setup), tuple(skipped), scores=scores)
    warnings = diagnose(result, configured, setup.output_op, is_probabilities(scores))
    return CheckResult(records, kind, classes, k, result.mapping, tuple(skipped), warnings, scores)


def _record(i: int, items, p: np.ndarray, classes, top_k: int) -> CheckRecord:
    order = np.argsort(-p, kind="stable")[:max(1, top_k)]
    top = tuple(TopClass(int(c), classes[c] if classes is not None and c < len(classes) else None, float(p[c]))
                for c in order)
    return CheckRecord(i, items.names[i], items.labels[i], int(order[0]), top)


def _name(items: InputSet, i: int) -> str:
    return items.names[i] or f"{items.source}[{i}]"


def _nan(out: np.ndarray, indices: Sequence[int], items) -> Exception:
    bad = indices[int(np.flatnonzero(~np.all(np.isfinite(out), axis=1))[0])]
    return ModelError(f"the model's output holds NaN or inf for input {bad} ({_name(items, bad)})")


def diagnose(result: CheckResult, configured_kind: str, last_op: str | None,
             rows_are_probabilities: bool) -> tuple[str, ...]:
    preds = [r.prediction for r in result.records]
    labels = [r.label for r in result.records]
    found = (diagnostics.one_class(preds, labels, result.classes),
             diagnostics.clean_near_chance(preds, labels, result.k),
             diagnostics.output_kind_contradiction(last_op, configured_kind, rows_are_probabilities))
    return tuple(w for w in found if w)


# ---------------------------------------------------------------- --dump


def dump(setup: RunSetup, index: int, stem: Path) -> list[Path]:
    """Input ``index`` as the model receives it (``stem.npy``, normalized, without the batch dim)
    and, when it is image-shaped, x in [0, 1] before normalization (``stem.png``, in RGB order)."""
    items, pre = setup.inputs, setup.preprocessor
    if not 0 <= index < len(items):
        raise InputError(f"--dump {index} is outside the inputs 0..{len(items) - 1}")
    item = items.load(index)
    x = pre.prepare(item, _name(items, index))
    written = [stem.with_suffix(".npy")]
    np.save(written[0], pre.normalize(x))
    picture = _as_picture(x, pre.config.layout, pre.config.channels)
    if picture is not None:
        from PIL import Image

        written.append(stem.with_suffix(".png"))
        Image.fromarray(picture).save(written[1])
    return written


def _as_picture(x: np.ndarray, layout: str, channels: str) -> np.ndarray | None:
    if x.ndim != 3:
        return None
    hwc = x.transpose(1, 2, 0) if layout == "NCHW" else x
    if hwc.shape[2] not in (1, 3):
        return None
    if channels == "BGR":
        hwc = hwc[:, :, ::-1]
    a = np.round(np.clip(hwc, 0, 1) * 255).astype(np.uint8)
    return a[:, :, 0] if a.shape[2] == 1 else a


# ---------------------------------------------------------------- --reference


@dataclass(frozen=True)
class ReferenceComparison:
    kind: str  # scores | predictions
    count: int
    max_difference: float | None  # scores: largest |difference|; None for predictions
    at: tuple[int, int] | None  # (input index, class) of the largest difference
    compared_as: str | None  # raw | probabilities
    disagreements: int  # inputs whose predicted class differs
    first_disagreement: tuple[int, int, int] | None  # (input index, expected, got)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "count": self.count, "max_difference": self.max_difference,
                "at": None if self.at is None else {"index": self.at[0], "class": self.at[1]},
                "compared_as": self.compared_as, "disagreements": self.disagreements,
                "first_disagreement": None if self.first_disagreement is None else dict(
                    zip(("index", "expected", "got"), self.first_disagreement))}

    def line(self) -> str:
        head = f"reference: {self.count} input(s)"
        if self.kind == "scores":
            i, c = self.at
            head += (f"; largest score difference {self.max_difference:.3g} (input {i}, class {c}; compared as "
                     f"{self.compared_as})")
        head += f"; {self.disagreements} predicted class(es) differ"
        if self.first_disagreement:
            i, want, got = self.first_disagreement
            head += f" (first: input {i}, expected {want}, got {got})"
        return head


REFERENCE_KEYS = ("scores", "logits", "probabilities", "outputs", "predictions", "prediction", "labels")


def load_reference(path: Path) -> np.ndarray:
    """[N, k] scores or [N] predicted classes, from a .npz (one array, or one named in
    REFERENCE_KEYS), a .npy, or a .csv (one row per input; one column is predictions, more are
    scores; a header row is skipped)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"--reference {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            return np.load(path, allow_pickle=False)
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                named = [k for k in REFERENCE_KEYS if k in data.files]
                if not named and len(data.files) != 1:
                    raise InputError(f"--reference {str(path)!r} holds {', '.join(data.files) or 'no arrays'}; "
                                     f"name the array one of {', '.join(REFERENCE_KEYS)}")
                return data[named[0] if named else data.files[0]]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise InputError(f"--reference {str(path)!r} is not a readable {suffix} file ({type(exc).__name__})") from None
    if suffix == ".csv":
        return _reference_csv(path)
    raise InputError(f"--reference {str(path)!r} must be .npz, .npy or .csv")


def _reference_csv(path: Path) -> np.ndarray:
    try:
        rows = [r for r in csv.reader(path.read_text(encoding="utf-8-sig").splitlines()) if r]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"--reference {str(path)!r} is not a readable CSV ({type(exc).__name__})") from None

    def numbers(row):
        try:
            return [float(v) for v in row]
        except ValueError:
            return None

    if rows and numbers(rows[0]) is None:
        rows = rows[1:]
    parsed = [numbers(r) for r in rows]
    bad = next((i for i, r in enumerate(parsed) if r is None or len(r) != len(parsed[0])), None)
    if not parsed or bad is not None:
        raise InputError(f"--reference {str(path)!r} must hold one row of numbers per input"
                         + (f" (row {bad + 1} does not)" if bad is not None else ""))
    a = np.asarray(parsed)
    return a[:, 0] if a.shape[1] == 1 else a


def compare_reference(result: CheckResult, ref: np.ndarray) -> ReferenceComparison:
    ref = np.asarray(ref)
    n = len(result.records)
    if ref.shape[0] != n:
        raise InputError(f"--reference has {ref.shape[0]} row(s) but {n} input(s) were checked")
    got = np.array([r.prediction for r in result.records])
    if ref.ndim == 1:
        if ref.dtype.kind == "f" and not np.all(ref == np.round(ref)):
            raise InputError("--reference with one column must hold predicted classes (integers)")
        expected = ref.astype(np.int64)
        return _comparison("predictions", n, None, None, None, expected, got, result)
    if ref.ndim != 2 or ref.shape[1] != result.k:
        raise InputError(f"--reference scores have shape {list(ref.shape)} but the model outputs [{n}, {result.k}]")
    mine = result.scores.astype(np.float64)
    as_prob = is_probabilities(ref) and not is_probabilities(mine)
    if as_prob:
        mine = to_probabilities(mine, "logits")
    diff = np.abs(mine - ref.astype(np.float64))
    j, c = np.unravel_index(int(np.argmax(diff)), diff.shape)
    return _comparison("scores", n, float(diff[j, c]), (result.records[j].index, int(c)),
                       "probabilities" if as_prob else "raw", ref.argmax(axis=1), got, result)


def _comparison(kind, n, worst, at, compared_as, expected, got, result) -> ReferenceComparison:
    differ = np.flatnonzero(expected != got)
    first = None
    if differ.size:
        j = int(differ[0])
        first = (result.records[j].index, int(expected[j]), int(got[j]))
    return ReferenceComparison(kind, n, worst, at, compared_as, int(differ.size), first)
