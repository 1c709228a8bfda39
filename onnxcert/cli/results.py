"""`onnxcert summary`, `onnxcert plot` and `onnxcert gate` (Typer code only)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, List, Optional

import typer

from ..errors import ConfigError
from .options import app, float_list, handle_errors, split_list

ReportArg = Annotated[Path, typer.Argument(help="A report written by `onnxcert run` or `certify-scores` (.json).")]


@app.command("summary")
@handle_errors
def summary_cmd(
    reports: Annotated[List[Path], typer.Argument(help="One or more REPORT.json, shown side by side (two models, or one model at two sigmas).")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="rich (terminal tables) | markdown | csv | json.")] = "rich",
    radii: Annotated[Optional[str], typer.Option("--radii", help="Comma-separated L2 radii for the columns; any radius works (exact radii are in the records). \\[default: the reports' radii]")] = None,
    measures: Annotated[Optional[str], typer.Option("--measures", help="Comma-separated measures to show. \\[default: all in the report]")] = None,
    methods: Annotated[Optional[str], typer.Option("--methods", help="Comma-separated methods to show. \\[default: all in the report]")] = None,
) -> None:
    """Certified-accuracy tables (thresholds x radii, per measure and method), the label
    certificate's certified accuracy, clean and smoothed accuracy, abstain rate and mean certified radius,
    recomputed from the records."""
    from ..reports.metrics import summarize_reports
    from ..reports.render import FORMATS, render

    if fmt not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    summaries = summarize_reports(reports, radii=float_list(radii, "--radii"),
                                  measures=split_list(measures, "--measures"),
                                  methods=split_list(methods, "--methods"))
    text = render(summaries, fmt)
    if text is not None:
        typer.echo(text, nl=False)


@app.command("plot")
@handle_errors
def plot_cmd(
    report: ReportArg,
    output: Annotated[Path, typer.Option("-o", "--output", help="Figure file: .png, .svg or .pdf by suffix.")] = Path("curves.png"),
    max_radius: Annotated[Optional[float], typer.Option("--max-radius", help="Right end of the radius axis. \\[default: just past the largest certified radius]")] = None,
) -> None:
    """Certified accuracy vs L2 radius (one panel per measure, a line per threshold and method) and
    prediction score vs the label certificate's radius. Needs the [plot] extra."""
    from ..files import check_writable
    from ..plot import plot

    check_writable(output, "the figure")
    path = plot(report, output, radii_max=max_radius)
    typer.echo(f"wrote {path}", err=True)


@app.command("gate")
@handle_errors
def gate_cmd(
    report: ReportArg,
    measure: Annotated[Optional[str], typer.Option("--measure", help="score | margin | label (the label certificate). \\[default: score]")] = None,
    method: Annotated[Optional[str], typer.Option("--method", help="naive | cdf-dkw | cdf-bj. \\[default: cdf-bj]")] = None,
    threshold: Annotated[Optional[float], typer.Option("--threshold", help="Threshold c: one of the report's thresholds for the measure.")] = None,
    radius: Annotated[Optional[float], typer.Option("--radius", help="L2 radius r in [0, 1] pixel space; any value (exact radii are in the records).")] = None,
    min_accuracy: Annotated[Optional[float], typer.Option("--min-accuracy", help="Bar: certified accuracy at (c, r) must be >= this.")] = None,
    max_abstain_rate: Annotated[Optional[float], typer.Option("--max-abstain-rate", help="Bar: fraction of inputs without a label certificate must be <= this.")] = None,
    min_mean_radius: Annotated[Optional[float], typer.Option("--min-mean-radius", help="Bar: mean certified radius at c must be >= this.")] = None,
    rules: Annotated[Optional[Path], typer.Option("--rules", help="YAML list of rules {measure, method, threshold, radius, min_accuracy, max_abstain_rate, min_mean_radius}, instead of the flags above.")] = None,
    junit: Annotated[Optional[Path], typer.Option("--junit", help="Also write JUnit XML: one testcase per check.")] = None,
    baseline: Annotated[Optional[Path], typer.Option("--baseline", help="Baseline REPORT.json: fail a rule whose certified accuracy drops more than --tolerance below it.")] = None,
    tolerance: Annotated[float, typer.Option("--tolerance", help="Allowed drop in certified accuracy versus --baseline.")] = 0.0,
    allow_incomplete: Annotated[bool, typer.Option("--allow-incomplete", help="Gate a report whose run did not finish.")] = False,
) -> None:
    """Exit 0 when every rule holds, 1 when one fails, 2 on bad usage or a malformed report."""
    from ..gate import gate, load_rules, rules_from_flags, write_junit

    flags = dict(measure=measure, method=method, threshold=threshold, radius=radius, min_accuracy=min_accuracy,
                 max_abstain_rate=max_abstain_rate, min_mean_radius=min_mean_radius)
    if rules is not None and any(v is not None for v in flags.values()):
        raise ConfigError("give rules either as flags or with --rules FILE, not both")
    flag_rules = rules_from_flags(**flags)
    if baseline is None and tolerance != 0.0:
        raise ConfigError("--tolerance needs --baseline")
    if junit is not None:
        from ..files import check_writable

        check_writable(junit, "the JUnit file")  # before the report is read: exit 2, never 1
    result = gate(report, load_rules(rules) if rules is not None else flag_rules, baseline_path=baseline,
                  tolerance=tolerance, allow_incomplete=allow_incomplete)
    for line in result.lines():
        typer.echo(line)
    if junit is not None:
        write_junit(result, junit)
    raise typer.Exit(result.exit_code)
