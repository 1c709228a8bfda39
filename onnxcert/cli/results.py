"""`onnxcert summary`, `onnxcert report`, `onnxcert plot` and `onnxcert gate` (Typer code only)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, List, Optional

import typer

from ..errors import ConfigError
from .options import AllowMismatch, app, float_list, handle_errors, split_list

ReportArg = Annotated[Path, typer.Argument(help="A report written by `onnxcert run` or `certify-scores` (.json).")]


@app.command("summary")
@handle_errors
def summary_cmd(
    reports: Annotated[List[Path], typer.Argument(help="One or more REPORT.json, shown side by side (two models, or one model at two sigmas).")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="rich (terminal tables) | markdown | latex (booktabs) | csv | json.")] = "rich",
    radii: Annotated[Optional[str], typer.Option("--radii", help="Comma-separated L2 radii for the columns; any radius works (exact radii are in the records). [default: the reports' radii]")] = None,
    measures: Annotated[Optional[str], typer.Option("--measures", help="Comma-separated measures to show. [default: all in the report]")] = None,
    methods: Annotated[Optional[str], typer.Option("--methods", help="Comma-separated methods to show. [default: all in the report; with --by-class, cdf-bj]")] = None,
    by_class: Annotated[bool, typer.Option("--by-class", help="Per class (by label; by predicted class without labels): inputs, smoothed and clean accuracy, abstain rate, and certified accuracy for the label certificate and every threshold.")] = False,
    diff: Annotated[bool, typer.Option("--diff", help="Two reports A B: both, and B - A, for every certificate they share. Refused when their inputs, sigma, n or alpha differ (see --allow-mismatch).")] = False,
    allow_mismatch: AllowMismatch = False,
    intervals: Annotated[bool, typer.Option("--intervals", help="Under each certified accuracy, its confidence interval over the test set (Clopper-Pearson); csv and json always carry it.")] = False,
    confidence: Annotated[float, typer.Option("--confidence", help="Level of those intervals.")] = 0.95,
) -> None:
    """Certified-accuracy tables (thresholds x radii, per measure and method), the label
    certificate's certified accuracy, clean and smoothed accuracy, abstain rate and mean certified radius,
    recomputed from the records."""
    from ..reports.metrics import check_comparable, class_tables, diff_summaries, summarize_datas
    from ..reports.read import load_report
    from ..reports.render import FORMATS, render, render_by_class, render_diff

    if fmt not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if diff and by_class:
        raise ConfigError("--diff and --by-class cannot be combined; run them one after the other")
    if diff and len(reports) != 2:
        raise ConfigError(f"--diff compares exactly two reports (A B), got {len(reports)}")
    if allow_mismatch and not diff:
        raise ConfigError("--allow-mismatch only applies to --diff")
    datas = [load_report(p) for p in reports]
    found = check_comparable(*datas, allow=allow_mismatch) if diff else []
    kwargs = dict(radii=float_list(radii, "--radii"), measures=split_list(measures, "--measures"),
                  methods=split_list(methods, "--methods"), confidence=confidence)
    summaries = summarize_datas(datas, **kwargs)
    if by_class:
        tables = [t for d, s in zip(datas, summaries)
                  for t in class_tables(d, s.name, s.radii, measures=kwargs["measures"], methods=kwargs["methods"])]
        text = render_by_class(tables, fmt)
    elif diff:
        text = render_diff(diff_summaries(*summaries, mismatches=found), fmt)
    else:
        text = render(summaries, fmt, intervals=intervals)
    if text is not None:
        typer.echo(text, nl=False)


@app.command("report")
@handle_errors
def report_cmd(
    reports: Annotated[List[Path], typer.Argument(help="One or more REPORT.json: one page, reports side by side (e.g. one per sigma).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="The page: .html or .htm.")] = Path("onnxcert-report.html"),
    rules: Annotated[Optional[Path], typer.Option("--rules", help="Gate rules (YAML, as for `onnxcert gate --rules`): their result heads the page. Gating is onnxcert gate's job: this never changes the exit code.")] = None,
    title: Annotated[Optional[str], typer.Option("--title", help="The page's title. [default: the reports' model names and sigmas]")] = None,
) -> None:
    """One self-contained HTML page (no network: inline CSS and SVG, images as data: URIs): settings
    and provenance (with the command line and config), summary tables with intervals, Figures 5
    and 3 of Kumar et al., per-class tables, the inputs with the smallest and largest radii, and
    the gate's result."""
    from ..gate import gate, load_rules
    from ..reports.html import check_output, report_page

    check_output(output)
    result = gate(reports[0], load_rules(rules), allow_incomplete=True) if rules is not None and reports else None
    path = report_page(reports, output, gate=result, title=title)
    typer.echo(f"wrote {path}", err=True)


@app.command("plot")
@handle_errors
def plot_cmd(
    reports: Annotated[List[Path], typer.Argument(help="One or more REPORT.json; several are overlaid (e.g. one per sigma), a panel per measure and threshold.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Figure file: .png, .svg or .pdf by suffix.")] = Path("curves.png"),
    measures: Annotated[Optional[str], typer.Option("--measures", help="Comma-separated measures to draw. [default: all in the report]")] = None,
    methods: Annotated[Optional[str], typer.Option("--methods", help="Comma-separated methods to draw. [default: cdf-bj and naive, as the paper's CDF and baseline]")] = None,
    thresholds: Annotated[Optional[str], typer.Option("--thresholds", help="Comma-separated thresholds c to draw (for each measure, those it has). [default: all]")] = None,
    size: Annotated[str, typer.Option("--size", help="full: panels side by side, for screens and slides. column: 3.4 inches wide, panels stacked, small type, for one column of a paper.")] = "full",
    max_radius: Annotated[Optional[float], typer.Option("--max-radius", help="Right end of the radius axis. [default: just past the largest certified radius]")] = None,
) -> None:
    """Certified accuracy vs L2 radius as exact step curves (Kumar et al. 2020, Figure 5), and for
    one report the prediction score vs the label certificate's radius (Figure 3). Needs matplotlib:
    pip install 'onnxcert[plot]'."""
    from ..files import check_writable
    from ..plot import plot

    check_writable(output, "the figure")
    path = plot(reports, output, radii_max=max_radius, measures=split_list(measures, "--measures"),
                methods=split_list(methods, "--methods"), thresholds=float_list(thresholds, "--thresholds"),
                size=size)
    typer.echo(f"wrote {path}", err=True)


@app.command("gate")
@handle_errors
def gate_cmd(
    report: ReportArg,
    measure: Annotated[Optional[str], typer.Option("--measure", help="score | margin | label (the label certificate). [default: score]")] = None,
    method: Annotated[Optional[str], typer.Option("--method", help="naive | cdf-dkw | cdf-bj. [default: cdf-bj]")] = None,
    threshold: Annotated[Optional[float], typer.Option("--threshold", help="Threshold c: one of the report's thresholds for the measure.")] = None,
    radius: Annotated[Optional[float], typer.Option("--radius", help="L2 radius r in [0, 1] pixel space; any value (exact radii are in the records).")] = None,
    min_accuracy: Annotated[Optional[float], typer.Option("--min-accuracy", help="Bar: certified accuracy at (c, r) must be >= this.")] = None,
    min_accuracy_lower: Annotated[Optional[float], typer.Option("--min-accuracy-lower", help="Bar: the lower end of the 95% Clopper-Pearson interval for certified accuracy at (c, r), over the test set, must be >= this.")] = None,
    max_abstain_rate: Annotated[Optional[float], typer.Option("--max-abstain-rate", help="Bar: fraction of inputs without a label certificate must be <= this.")] = None,
    min_mean_radius: Annotated[Optional[float], typer.Option("--min-mean-radius", help="Bar: mean certified radius at c must be >= this.")] = None,
    rules: Annotated[Optional[Path], typer.Option("--rules", help="YAML list of rules {measure, method, threshold, radius, min_accuracy, min_accuracy_lower, max_abstain_rate, min_mean_radius}, instead of the flags above.")] = None,
    junit: Annotated[Optional[Path], typer.Option("--junit", help="Also write JUnit XML: one testcase per check.")] = None,
    baseline: Annotated[Optional[Path], typer.Option("--baseline", help="Baseline REPORT.json: fail a rule whose certified accuracy drops more than --tolerance below it.")] = None,
    tolerance: Annotated[float, typer.Option("--tolerance", help="Allowed drop in certified accuracy versus --baseline.")] = 0.0,
    allow_incomplete: Annotated[bool, typer.Option("--allow-incomplete", help="Gate a report whose run did not finish.")] = False,
    allow_mismatch: AllowMismatch = False,
) -> None:
    """Exit 0 when every rule holds, 1 when one fails, 2 on bad usage or a malformed report."""
    from ..gate import gate, load_rules, rules_from_flags, write_junit

    flags = dict(measure=measure, method=method, threshold=threshold, radius=radius, min_accuracy=min_accuracy,
                 min_accuracy_lower=min_accuracy_lower, max_abstain_rate=max_abstain_rate,
                 min_mean_radius=min_mean_radius)
    if rules is not None and any(v is not None for v in flags.values()):
        raise ConfigError("give rules either as flags or with --rules FILE, not both")
    flag_rules = rules_from_flags(**flags)
    if baseline is None and tolerance != 0.0:
        raise ConfigError("--tolerance needs --baseline")
    if baseline is None and allow_mismatch:
        raise ConfigError("--allow-mismatch needs --baseline")
    if junit is not None:
        from ..files import check_writable

        check_writable(junit, "the JUnit file")  # before the report is read: exit 2, never 1
    result = gate(report, load_rules(rules) if rules is not None else flag_rules, baseline_path=baseline,
                  tolerance=tolerance, allow_incomplete=allow_incomplete, allow_mismatch=allow_mismatch)
    for line in result.lines():
        typer.echo(line)
    if junit is not None:
        write_junit(result, junit)
    raise typer.Exit(result.exit_code)
