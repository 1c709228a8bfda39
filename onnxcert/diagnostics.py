"""Warnings that catch the usual setup mistakes, from predictions and labels alone.

Each returns one line naming the likely fix, or None. They look at clean (noise-free)
predictions first: a model that is wrong without noise is misconfigured, not under-smoothed.

- every input predicted as one class;
- accuracy not significantly above chance (a one-sided binomial test at level 0.01 against the
  accuracy of always guessing the commonest label);
- the output kind contradicting the graph (its last op is a Softmax, yet output_kind is logits;
  or output_kind is probabilities for rows that are not).
"""

from __future__ import annotations

from collections import Counter
from typing import Sequence

MIN_INPUTS = 5  # fewer inputs say nothing either way
CHANCE_LEVEL = 0.01
CHECK_HINT = "run `onnxcert check MODEL INPUTS` and compare its --dump with the model's own preprocessing"


def _named(c: int, classes: Sequence[str] | None) -> str:
    return f"{c} ({classes[c]})" if classes is not None and 0 <= c < len(classes) else str(c)


def one_class(predictions: Sequence[int], labels: Sequence[int | None],
              classes: Sequence[str] | None = None, what: str = "clean") -> str | None:
    """Every prediction is the same class, while the labels (when known) name more than one."""
    if len(predictions) < MIN_INPUTS or len(set(predictions)) != 1:
        return None
    known = {lab for lab in labels if lab is not None}
    if len(known) == 1:
        return None
    return (f"all {len(predictions)} {what} predictions are class {_named(predictions[0], classes)}: the model "
            "probably gets inputs unlike its training data; check preprocess.mean/std (a model that wants "
            f"0..255 needs mean 0, std 1/255), channels (RGB/BGR), layout and size; {CHECK_HINT}")


def chance_level(labels: Sequence[int | None], k: int | None) -> float | None:
    """The accuracy of always guessing the commonest label (at least 1/k)."""
    known = [lab for lab in labels if lab is not None]
    if not known:
        return None
    common = Counter(known).most_common(1)[0][1] / len(known)
    return max(common, 1.0 / k) if k else common


def near_chance(correct: int, total: int, chance: float | None) -> bool:
    """Not significantly above chance: P(X >= correct) > CHANCE_LEVEL for X ~ Binomial(total, chance)."""
    if chance is None or total < MIN_INPUTS or chance >= 1:
        return False
    from scipy.special import bdtrc

    p_value = 1.0 if correct == 0 else float(bdtrc(correct - 1, total, chance))
    return p_value > CHANCE_LEVEL


def clean_near_chance(predictions: Sequence[int], labels: Sequence[int | None], k: int | None) -> str | None:
    pairs = [(p, lab) for p, lab in zip(predictions, labels) if lab is not None]
    chance = chance_level(labels, k)
    correct = sum(p == lab for p, lab in pairs)
    if not near_chance(correct, len(pairs), chance):
        return None
    return (f"clean accuracy {correct / len(pairs):.3f} ({correct} of {len(pairs)}) is near chance ({chance:.3f}): "
            f"without noise the model is as good as a guess, so the preprocessing or the labels are likely wrong; "
            f"{CHECK_HINT}")


def smoothed_near_chance(correct: int, total: int, chance: float | None, abstained: int) -> str | None:
    """Smoothed accuracy near chance with no abstentions: the noise carries every input to one answer."""
    if abstained or not near_chance(correct, total, chance):
        return None
    return (f"smoothed accuracy {correct / total:.3f} is near chance ({chance:.3f}) with no abstentions: the noise "
            "at this sigma decides every input; was the model trained with Gaussian noise of this sigma, "
            "in [0, 1] pixel units?")


def output_kind_contradiction(last_op: str | None, configured: str, rows_are_probabilities: bool | None) -> str | None:
    """output_kind given by the user against what the graph and its rows say."""
    if last_op == "Softmax" and configured == "logits":
        return ("the graph ends in Softmax, so its output is probabilities, but output_kind is logits: every "
                "score would be softmaxed twice and flattened towards 1/k; set model.output_kind: probabilities "
                "(or auto)")
    if configured == "probabilities" and rows_are_probabilities is False:
        ends = f"the graph ends in {last_op}" if last_op else "the output"
        return (f"output_kind is probabilities but {ends} gives rows that are not in [0, 1] summing to 1: "
                "they would be clipped, not softmaxed; set model.output_kind: logits (or auto)")
    return None


def run_warnings(records: Sequence[dict], *, k: int | None, classes: Sequence[str] | None = None,
                 last_op: str | None = None, configured_kind: str = "auto") -> list[str]:
    """The warnings for a run's report records (dicts with label, prediction, clean_prediction and
    label_certificate): clean predictions first, then the smoothed ones."""
    labels = [r.get("label") for r in records]
    clean = [r.get("clean_prediction") for r in records]
    found = []
    if clean and all(c is not None for c in clean):
        found += [one_class(clean, labels, classes), clean_near_chance(clean, labels, k)]
    if not any(found):
        labelled = [r for r in records if r.get("label") is not None]
        abstained = sum((r.get("label_certificate") or {}).get("radius") is None for r in records)
        found.append(smoothed_near_chance(sum(bool(r.get("correct")) for r in labelled), len(labelled),
                                          chance_level(labels, k), abstained))
    found.append(output_kind_contradiction(last_op, configured_kind, None))
    return [w for w in found if w]
