"""``run --gate RULES.yaml --sequential``: what the gate's rules ask of each input, and when the
whole gate is decided.

Each rule becomes the questions (``stats.sequential.Cell``) its bars need answered per input:
a rule with a radius r asks "is the certificate at r?" (a ``min_accuracy`` bar, or a baseline);
a ``max_abstain_rate`` bar asks "does the label certificate abstain?" (the label at r = 0). A
``min_mean_radius`` bar needs every radius at its final value, so an input under such a rule is
sampled to the last look. The statistics are in ``stats.sequential``; this module only maps
rules to cells and keeps the dataset-level count.

Dataset-level stop (``DatasetStop``): inputs are taken in index order; once the inputs decided
so far settle every rule (its bar is met even if no other input counts, or missed even if every
other input counts), the rest are left unevaluated. The gate then counts an unevaluated input as
uncertified and abstaining, which is the same verdict the full run would reach.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from .errors import ConfigError
from .stats.sequential import LABEL, Cell, SequentialPlan

EPS = 1e-12  # as gate.EPS: bars in decimal against fractions


@dataclass(frozen=True)
class SequentialRun:
    """The plan, the gate rules and their cells, fixed before any sample."""

    plan: SequentialPlan
    rules: tuple  # gate.Rule
    cells: tuple[tuple[Cell, ...], ...]  # per rule; () for a rule no look can decide
    dataset_stop: bool

    @property
    def flat_cells(self) -> tuple[Cell, ...]:
        return tuple(c for cells in self.cells for c in cells)

    @property
    def to_last_look(self) -> bool:
        """A min_mean_radius bar: every input is sampled to n."""
        return any(r.min_mean_radius is not None for r in self.rules)

    def settings(self) -> dict:
        """``settings.sequential`` in the report."""
        return self.plan.to_dict(self.dataset_stop)

    def identity(self) -> dict:
        """What decides the records beyond the settings (for resuming a journal)."""
        return {**self.settings(), "cells": [[_cell_dict(c) for c in cells] for cells in self.cells]}

    def rule_decisions(self, decisions: Sequence[str]) -> list[str]:
        """One decision per rule from the flat per-cell decisions: the rule's first cell's."""
        out, i = [], 0
        for cells in self.cells:
            out.append(decisions[i] if cells else "undecided")
            i += len(cells)
        return out


def _cell_dict(c: Cell) -> dict:
    return {"measure": c.measure, "method": c.method, "threshold": c.threshold, "radius": c.radius}


def cells_for(rule) -> tuple[Cell, ...]:
    """The questions one rule asks of each input."""
    cells = []
    if rule.radius is not None:
        if rule.measure == LABEL:
            cells.append(Cell(LABEL, None, None, float(rule.radius)))
        else:
            cells.append(Cell(rule.measure, rule.method, float(rule.threshold), float(rule.radius)))
    if rule.max_abstain_rate is not None:
        cells.append(Cell(LABEL, None, None, 0.0))
    return tuple(cells)


def make_run(rules: Sequence, n: int, alpha: float, *, dataset_stop: bool = True,
             first_look: int | None = None) -> SequentialRun:
    """The sequential run for ``rules`` (from ``gate.load_rules``) at the run's n and alpha."""
    if not rules:
        raise ConfigError("--sequential needs gate rules (--gate RULES.yaml): they say when an input is decided")
    plan = SequentialPlan.for_n(n, alpha) if first_look is None else SequentialPlan.for_n(n, alpha, first_look)
    return SequentialRun(plan, tuple(rules), tuple(cells_for(r) for r in rules), bool(dataset_stop))


# ---------------------------------------------------------------- the dataset-level stop


def dataset_stop_possible(rules: Sequence) -> str | None:
    """None when the gate can be settled before every input is certified, else why not."""
    if any(r.min_mean_radius is not None for r in rules):
        return "a min_mean_radius bar needs every input"
    return None


class DatasetStop:
    """Counts, input by input in index order, what each rule's bars need; ``decided`` once all
    are settled. ``total``: the run's inputs (every one labelled when a bar needs accuracy).

    The gate divides by the records plus the unevaluated inputs, that is ``total`` less the
    inputs skipped so far; later skips could only shrink it, which keeps a met bar met and a
    missed one missed."""

    def __init__(self, rules: Sequence, thresholds: Mapping[str, Sequence[float]], total: int):
        self.rules, self.thresholds, self.total = tuple(rules), thresholds, int(total)
        self.seen = self.skipped = self.abstained = 0
        self.hits = [0] * len(self.rules)  # accuracy bars: labelled, correct and certified at r
        self.misses = [0] * len(self.rules)

    def add(self, record) -> None:
        """One more input, the next in index order (a Record, or None for a skipped input)."""
        self.seen += 1
        if record is None:
            self.skipped += 1
            return
        self.abstained += record.certificate.label.radius is None
        for i, rule in enumerate(self.rules):
            if rule.min_accuracy is None:
                continue
            r = _radius(record, rule, self.thresholds)
            if record.correct is True and r is not None and r >= rule.radius:
                self.hits[i] += 1
            else:
                self.misses[i] += 1

    @property
    def decided(self) -> bool:
        return all(self._settled(i, rule) for i, rule in enumerate(self.rules))

    def _settled(self, i: int, rule) -> bool:
        if self.seen == self.total:
            return True
        if rule.min_mean_radius is not None:
            return False
        d = self.total - self.skipped
        if rule.min_accuracy is not None:
            met = self.hits[i] / d >= rule.min_accuracy - EPS
            missed = (d - self.misses[i]) / d < rule.min_accuracy - EPS
            if not (met or missed):
                return False
        if rule.max_abstain_rate is not None:
            met = (self.abstained + self.total - self.seen) / d <= rule.max_abstain_rate + EPS
            missed = self.abstained / d > rule.max_abstain_rate + EPS
            if not (met or missed):
                return False
        return True


def _radius(record, rule, thresholds: Mapping[str, Sequence[float]]) -> float | None:
    cert = record.certificate
    if rule.measure == LABEL:
        return cert.label.radius
    j = next(j for j, c in enumerate(thresholds[rule.measure]) if math.isclose(c, rule.threshold, abs_tol=1e-9))
    return cert.confidence[rule.measure][rule.method].radius[j]


def sequential_record_fields(samples: int, stopped_at_look: int, decisions: Sequence[str]) -> dict[str, Any]:
    return {"samples": int(samples), "stopped_at_look": int(stopped_at_look), "decisions": list(decisions)}
