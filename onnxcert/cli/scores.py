"""`onnxcert certify-scores` (Typer code only)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .options import (Alpha, BatchSize, ConfigOpt, Force, Html, MarginTh, Measures, Methods, N, N0, Output, OutputKind,
                      Quiet, Radii, ScoreTh, Seed, Sigma, app, command_line, handle_errors, output_paths,
                      html_path, print_summary, setting_flags, setup_logging)


@app.command("certify-scores")
@handle_errors
def certify_scores_cmd(
    ctx: typer.Context,
    scores: Annotated[Path, typer.Argument(help="SCORES.npz with 'estimation' [B, n, k], 'selection' [B, n0, k], optional 'labels' [B].")],
    sigma: Sigma = None, alpha: Alpha = None, n0: N0 = None, n: N = None, batch_size: BatchSize = None,
    seed: Seed = None, measures: Measures = None, methods: Methods = None,
    score_thresholds: ScoreTh = None, margin_thresholds: MarginTh = None, radii: Radii = None,
    config: ConfigOpt = None, output: Output = None, output_kind: OutputKind = None,
    force: Force = False, quiet: Quiet = False, html: Html = None,
) -> None:
    """Certify from score matrices computed elsewhere (no model). n and n0 default to the arrays."""
    from ..config import config_sections, load_yaml, resolve
    from ..report import write_reports
    from ..scores import certify_scores, load_scores, scores_shape_layer

    setup_logging(quiet)
    flags = setting_flags(sigma, alpha, n0, n, batch_size, seed, measures, methods, score_thresholds,
                   margin_thresholds, radii, output_kind)
    paths = output_paths(output, force)
    page = html_path(html, force)
    arrays = load_scores(scores)
    cfg = resolve(cli=flags, file=load_yaml(config) if config else None, shape=scores_shape_layer(arrays))
    result = certify_scores(arrays, cfg.settings, output_kind=cfg.model.output_kind, command=command_line(ctx),
                            config=config_sections(cfg))
    write_reports(result.report, paths)
    if not quiet:
        print_summary(result.report)
        typer.echo(f"wrote {', '.join(str(p) for p in paths)}", err=True)
    if page is not None:
        from ..reports.html import Source, write_html

        write_html(page, [Source(result.report, str(paths[0]))])
        if not quiet:
            typer.echo(f"wrote {page}", err=True)
