"""``onnxcert gate``: hold a report to rules, for CI. Exit 0 when every rule holds, 1 when one fails,
2 on bad usage or a malformed report.

A rule names a certificate (measure, method, threshold c) and a radius r, and sets bars::

    - {measure: score, method: cdf-bj, threshold: 0.7, radius: 0.25, min_accuracy: 0.60}
    - {measure: margin, threshold: 0.2, min_mean_radius: 0.15}
    - {max_abstain_rate: 0.10}
    - {measure: label, radius: 0.5, min_accuracy: 0.55}   # the label certificate (Cohen et al.)

``min_accuracy`` compares the certified accuracy at r: the fraction of labelled inputs with
correct == true and certified radius >= r, from the exact radii in the records, so r need not be
one of the report's radii. ``min_accuracy_lower`` compares the lower end of the 95%
Clopper-Pearson interval for that certified accuracy over the test set instead (a bar that a small
test set must clear with room). ``min_mean_radius`` compares the mean certified radius and
``max_abstain_rate`` the fraction of inputs without a label certificate (definitions in
``onnxcert.reports.metrics``). With a baseline report, each accuracy rule also fails when the candidate's
certified accuracy falls more than ``tolerance`` below the baseline's; a baseline of other inputs,
sigma, n or alpha is refused unless ``allow_mismatch``.

For ``onnxcert run --gate RULES.yaml``::

    rules = load_rules(path)                    # before certifying: bad rules fail early (exit 2)
    result = evaluate_rules(report, rules)      # report: the dict that run writes
    print("\\n".join(result.lines())); raise SystemExit(result.exit_code)
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np



from .config import nearest as _nearest
from .config import read_yaml
from .errors import ConfigError
from .files import atomic_write_text, write_error
from .reports.metrics import (abstain_rate, certified_accuracy_at, certified_accuracy_interval, check_comparable,
                               mean_certified_radius)
from .reports.read import LABEL, ReportData, load_report, parse_report, radius_column
from .stats.measures import MEASURES
from .stats.names import METHODS
from .values import finite_number

EPS = 1e-12  # bars given in decimal (0.7) against fractions (7/10): compare with a hair of slack
RULE_KEYS = ("measure", "method", "threshold", "radius", "min_accuracy", "min_accuracy_lower", "max_abstain_rate",
             "min_mean_radius")
CHECKS = ("min_accuracy", "min_accuracy_lower", "max_abstain_rate", "min_mean_radius")
INTERVAL = 0.95  # min_accuracy_lower: the lower end of this two-sided Clopper-Pearson interval


@dataclass(frozen=True)
class Rule:
    """One gate rule. ``measure`` "label" means the label certificate (no method or threshold)."""

    measure: str = "score"
    method: str = "cdf-bj"
    threshold: float | None = None
    radius: float | None = None
    min_accuracy: float | None = None
    min_accuracy_lower: float | None = None
    max_abstain_rate: float | None = None
    min_mean_radius: float | None = None

    def __post_init__(self) -> None:
        _check_rule(self)

    @property
    def certificate(self) -> str:
        if self.measure == LABEL:
            return "label certificate"
        return f"{self.measure}/{self.method} c={_g(self.threshold)}"

    def describe(self) -> str:
        """The certificate and radius this rule is about, e.g. "score/cdf-bj c=0.7 r=0.25"."""
        return self.certificate + ("" if self.radius is None else f" r={_g(self.radius)}")


@dataclass(frozen=True)
class CheckResult:
    """One bar of one rule: ``measured`` against ``bar`` (>= for minima, <= for maxima)."""

    rule: Rule
    check: str  # min_accuracy | min_accuracy_lower | max_abstain_rate | min_mean_radius | baseline
    measured: float
    bar: float
    passed: bool
    subject: str  # what was measured, e.g. "score/cdf-bj c=0.7 r=0.25: certified accuracy"
    requirement: str  # the bar in words, e.g. ">= 0.6" or ">= 0.6300 (baseline 0.6500 - 0.02)"
    name: str  # stable across runs (no measured value): the JUnit test name

    def line(self) -> str:
        return f"{'PASS' if self.passed else 'FAIL'}  {self.subject} {self.measured:.4f} (bar {self.requirement})"


@dataclass(frozen=True)
class GateResult:
    """Every check of every rule, in order. ``exit_code`` is 0 when all pass, else 1."""

    source: str
    checks: tuple[CheckResult, ...]
    unevaluated: int = 0  # inputs a sequential run left out once the gate was settled

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failures(self) -> tuple[CheckResult, ...]:
        return tuple(c for c in self.checks if not c.passed)

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1

    def lines(self) -> list[str]:
        verdict = "passed" if self.passed else "FAILED"
        held = len(self.checks) - len(self.failures)
        early = (f"; decided early, {self.unevaluated} input(s) unevaluated (counted as not certified)"
                 if self.unevaluated else "")
        return [c.line() for c in self.checks] + [
            f"gate {verdict}: {held} of {len(self.checks)} checks hold ({self.source}){early}"]


# ---------------------------------------------------------------- rules


def _g(x: float | None) -> str:
    return "—" if x is None else f"{x:g}"


def _number(value: Any, key: str, lo: float, hi: float) -> float:
    value = finite_number(value, key, ConfigError, kind="a number")
    if not lo <= value <= hi:
        raise ConfigError(f"{key} must lie in [{lo:g}, {hi:g}], got {value!r}")
    return float(value)


def _check_rule(rule: Rule) -> None:
    if rule.measure not in (*MEASURES, LABEL):
        raise ConfigError(f"unknown measure {rule.measure!r}{_nearest(rule.measure, (*MEASURES, LABEL))}")
    if rule.measure != LABEL and rule.method not in METHODS:
        raise ConfigError(f"unknown method {rule.method!r}{_nearest(rule.method, METHODS)}")
    for key, lo, hi in (("threshold", -1, 1), ("radius", 0, math.inf), ("min_accuracy", 0, 1),
                        ("min_accuracy_lower", 0, 1), ("max_abstain_rate", 0, 1), ("min_mean_radius", 0, math.inf)):
        if getattr(rule, key) is not None:
            object.__setattr__(rule, key, _number(getattr(rule, key), key, lo, hi))
    if all(getattr(rule, k) is None for k in CHECKS) and rule.radius is None:
        raise ConfigError("a rule needs a bar: min_accuracy, min_accuracy_lower, max_abstain_rate or min_mean_radius "
                          "(or a threshold and radius to compare with --baseline)")
    if rule.measure == LABEL and rule.threshold is not None:
        raise ConfigError("the label certificate has no threshold; drop threshold from the rule with measure 'label'")
    needs_c = rule.measure != LABEL and (rule.radius is not None or rule.min_mean_radius is not None)
    if needs_c and rule.threshold is None:
        raise ConfigError(f"a {rule.measure} rule with min_accuracy or min_mean_radius needs a threshold "
                          f"(--threshold, or 'threshold' in the rules file)")
    for key in ("min_accuracy", "min_accuracy_lower"):
        if getattr(rule, key) is not None and rule.radius is None:
            raise ConfigError(f"a rule with {key} needs a radius (--radius, or 'radius' in the rules file)")


def rule_from_mapping(entry: Any, where: str = "rule") -> Rule:
    """A rule from one YAML entry; unknown keys name the nearest valid key."""
    if not isinstance(entry, Mapping):
        raise ConfigError(f"{where} must be a mapping of {', '.join(RULE_KEYS)}, got {type(entry).__name__}")
    for key in entry:
        if key not in RULE_KEYS:
            raise ConfigError(f"{where}: unknown key {key!r}{_nearest(str(key), RULE_KEYS)}")
    try:
        return Rule(**{k: v for k, v in entry.items() if v is not None})
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def load_rules(path: str | Path) -> tuple[Rule, ...]:
    """Read a YAML list of rules with ``yaml.safe_load``; ConfigError (exit 2) on any problem."""
    path = Path(path)
    data = read_yaml(path, what="rules file")
    if not isinstance(data, list) or not data:
        got = "nothing" if data is None else type(data).__name__
        raise ConfigError(f"rules file {str(path)!r} must hold a non-empty YAML list of rules, got {got}")
    return tuple(rule_from_mapping(e, f"{path}: rule {i + 1}") for i, e in enumerate(data))


def check_rules_for_run(rules: Sequence[Rule], settings, has_labels: bool) -> None:
    """Before a run: what the report will hold must serve every rule (its measure, method and
    threshold; labels for accuracy rules). ConfigError (exit 2) naming the rule otherwise."""
    s = settings
    for rule in rules:
        where = f"--gate rule {rule.describe()}"
        accuracy = rule.min_accuracy is not None or rule.min_accuracy_lower is not None
        uses_radii = accuracy or rule.min_mean_radius is not None
        if rule.measure != "label" and uses_radii:
            if rule.measure not in s.measures:
                raise ConfigError(f"{where}: this run does not certify the {rule.measure} (measures: {', '.join(s.measures)})")
            if rule.method not in s.methods:
                raise ConfigError(f"{where}: this run does not use method {rule.method} (methods: {', '.join(s.methods)})")
            ths = s.thresholds[rule.measure]
            if rule.threshold is not None and not any(math.isclose(c, rule.threshold, abs_tol=1e-9) for c in ths):
                raise ConfigError(f"{where}: threshold {rule.threshold:g} is not one of this run's {rule.measure} "
                                  f"thresholds ({', '.join(f'{c:g}' for c in ths)})")
        if accuracy and not has_labels:
            raise ConfigError(f"{where}: certified accuracy needs labels, and these inputs have none")


# ---------------------------------------------------------------- evaluation


def _data(report: Mapping | ReportData, source: str) -> ReportData:
    return report if isinstance(report, ReportData) else parse_report(report, source)


def _accuracy(data: ReportData, rule: Rule) -> float:
    acc = certified_accuracy_at(radius_column(data, rule.measure, rule.method, rule.threshold), data, [rule.radius])
    if acc is None:
        raise ConfigError(f"{data.source} has no labels, so it has no certified accuracy to gate on")
    labelled, left = int(data.labelled.sum()), _unevaluated(data)
    return acc[0] * labelled / (labelled + left)


def _unevaluated(data: ReportData) -> int:
    """Inputs a sequential run left unevaluated once the gate was settled; the gate counts each as
    labelled, not certified and abstaining, which settles every bar as the full run would."""
    return len(data.report.get("unevaluated") or ())


def _abstain_rate(data: ReportData) -> float:
    left = _unevaluated(data)
    if not left:
        return abstain_rate(data)
    return (int(np.count_nonzero(np.isnan(data.label_radius))) + left) / (data.count + left)


def _accuracy_lower(data: ReportData, rule: Rule) -> float:
    """The lower end of the Clopper-Pearson interval for certified accuracy at (c, r) over the test set."""
    _accuracy(data, rule)  # the same errors without labels or with an unknown certificate
    radius = radius_column(data, rule.measure, rule.method, rule.threshold)
    return certified_accuracy_interval(radius, data, rule.radius, INTERVAL)[0]


def _check(rule: Rule, check: str, measured: float, bar: float, subject: str, requirement: str,
           name: str | None = None) -> CheckResult:
    ok = measured >= bar - EPS if check != "max_abstain_rate" else measured <= bar + EPS
    return CheckResult(rule, check, measured, bar, ok, subject, requirement, name or f"{subject} {requirement}")


def _evaluate(rule: Rule, data: ReportData, baseline: ReportData | None, tolerance: float) -> list[CheckResult]:
    out = []
    accuracy = f"{rule.describe()}: certified accuracy"
    if rule.min_accuracy is not None:
        out.append(_check(rule, "min_accuracy", _accuracy(data, rule), rule.min_accuracy,
                          accuracy, f">= {rule.min_accuracy:g}"))
    if rule.min_accuracy_lower is not None:
        out.append(_check(rule, "min_accuracy_lower", _accuracy_lower(data, rule), rule.min_accuracy_lower,
                          f"{accuracy}, lower end of its {100 * INTERVAL:g}% interval over the test set",
                          f">= {rule.min_accuracy_lower:g}"))
    if baseline is not None and rule.radius is not None:
        try:
            base = _accuracy(baseline, rule)
        except ConfigError as exc:
            raise ConfigError(f"baseline {exc}") from None
        out.append(_check(rule, "baseline", _accuracy(data, rule), base - tolerance, accuracy,
                          f">= {base - tolerance:.4f}: baseline {base:.4f} - tolerance {tolerance:g}",
                          f"{accuracy} >= baseline - {tolerance:g}"))
    if rule.min_mean_radius is not None:
        mean, n_inf = mean_certified_radius(radius_column(data, rule.measure, rule.method, rule.threshold), data)
        unbounded = f" ({n_inf} unbounded, left out)" if n_inf else ""
        out.append(_check(rule, "min_mean_radius", mean, rule.min_mean_radius,
                          f"{rule.certificate}: mean certified radius{unbounded}", f">= {rule.min_mean_radius:g}"))
    if rule.max_abstain_rate is not None:
        out.append(_check(rule, "max_abstain_rate", _abstain_rate(data), rule.max_abstain_rate,
                          "abstain rate", f"<= {rule.max_abstain_rate:g}"))
    if not out:
        raise ConfigError(f"rule {rule.describe()} sets no bar (min_accuracy, min_accuracy_lower, max_abstain_rate, "
                          "min_mean_radius) "
                          f"and there is no --baseline to compare with")
    return out


def evaluate_rules(report: Mapping | ReportData, rules: Sequence[Rule], *, baseline: Mapping | ReportData | None = None,
                   tolerance: float = 0.0, source: str = "report", allow_incomplete: bool = False,
                   allow_mismatch: bool = False) -> GateResult:
    """Check every rule against a report (the dict ``run`` writes, or a loaded ReportData).

    Raises ConfigError / InputError (exit 2) when a rule names a measure, method or threshold the
    report lacks, when the report is malformed, when it is incomplete (unless allowed), or when the
    baseline certified other inputs or used another sigma, n or alpha (unless ``allow_mismatch``).
    """
    if not rules:
        raise ConfigError("no rules: give --threshold/--radius/--min-accuracy (or another bar), or --rules FILE")
    tolerance = _number(tolerance, "--tolerance", 0, 1)
    data = _data(report, source)
    base = None if baseline is None else _data(baseline, "baseline report")
    if base is not None:
        check_comparable(base, data, allow=allow_mismatch, what="gate against the baseline")
    for d in filter(None, (data, base)):
        if not allow_incomplete and d.report.get("complete") is False:
            raise ConfigError(f"{d.source} is incomplete ({d.count} of {d.report.get('total')} inputs); "
                              f"finish the run or pass --allow-incomplete")
    checks = [c for rule in rules for c in _evaluate(rule, data, base, tolerance)]
    return GateResult(data.source, tuple(checks), _unevaluated(data))


def gate(report_path: str | Path, rules: Sequence[Rule], *, baseline_path: str | Path | None = None,
         tolerance: float = 0.0, allow_incomplete: bool = False, allow_mismatch: bool = False) -> GateResult:
    """``onnxcert gate``: load the report (and baseline) from files and evaluate."""
    data = load_report(report_path)
    base = None if baseline_path is None else load_report(baseline_path)
    return evaluate_rules(data, rules, baseline=base, tolerance=tolerance, allow_incomplete=allow_incomplete,
                          allow_mismatch=allow_mismatch)


# ---------------------------------------------------------------- JUnit XML


def junit_xml(result: GateResult) -> str:
    """One <testcase> per check; a failed check carries a <failure>."""
    suite = ET.Element("testsuite", name="onnxcert gate", tests=str(len(result.checks)),
                       failures=str(len(result.failures)), errors="0", skipped="0")
    props = ET.SubElement(suite, "properties")
    ET.SubElement(props, "property", name="report", value=result.source)
    for c in result.checks:
        case = ET.SubElement(suite, "testcase", classname=f"onnxcert.gate.{c.check}", name=c.name)
        if not c.passed:
            failure = ET.SubElement(case, "failure", message=c.line(), type=c.check)
            failure.text = f"measured {c.measured!r}, bar {c.bar!r}"
        ET.SubElement(case, "system-out").text = c.line()
    root = ET.Element("testsuites", name="onnxcert", tests=suite.get("tests"), failures=suite.get("failures"))
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_junit(result: GateResult, path: str | Path) -> Path:
    try:
        return atomic_write_text(path, junit_xml(result))
    except OSError as exc:
        raise write_error(exc, path, "the JUnit file") from None


def rules_from_flags(**flags: Any) -> tuple[Rule, ...]:
    """The single rule that --measure/--method/--threshold/--radius/... describe (None = not
    given); () when none of threshold, radius or a bar is given."""
    keys = {f.name for f in fields(Rule)}
    unknown = set(flags) - keys
    if unknown:
        raise ConfigError(f"unknown rule field(s): {', '.join(sorted(unknown))}")
    given = {k: v for k, v in flags.items() if v is not None}
    if not set(given) & {"threshold", "radius", *CHECKS}:
        if given:
            raise ConfigError(f"--{next(iter(given))} alone is not a rule: add --threshold/--radius and a bar")
        return ()
    return (Rule(**given),)
