"""The command line: Typer code only. Each command parses, builds a config, calls one function,
prints. Errors the user can fix become one line on stderr and a non-zero exit."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, List, Optional

import typer

from ._app import app, float_list, handle_errors, setup_logging, split_list
from .config import build_config, cli_layer, load_yaml
from .errors import ConfigError, InputError
from .report import write_report
from .scores import certify_scores, load_scores

NOISE_NOTE = ("sigma is the noise std in [0, 1] pixel space: noise is added after resize/crop and "
              "before (x - mean) / std. Radii are L2 norms in the same units.")

Sigma = Annotated[Optional[float], typer.Option("--sigma", help=f"Noise level. {NOISE_NOTE} \\[default: from config or model metadata; else required]")]
Alpha = Annotated[Optional[float], typer.Option("--alpha", help="Each certificate fails with probability at most alpha. \\[default: 0.001]")]
N0 = Annotated[Optional[int], typer.Option("--n0", help="Selection samples that choose the class. \\[default: 100]")]
N = Annotated[Optional[int], typer.Option("--n", help="Estimation samples behind every certificate. \\[default: 100000]")]
BatchSize = Annotated[Optional[int], typer.Option("--batch-size", help="Noisy samples per forward pass. \\[default: chosen automatically]")]
Seed = Annotated[Optional[int], typer.Option("--seed", help="Global seed; each input derives its own stream from it. \\[default: 0]")]
Measures = Annotated[Optional[str], typer.Option("--measures", help="Comma-separated: score, margin. \\[default: score,margin]")]
Methods = Annotated[Optional[str], typer.Option("--methods", help="Comma-separated: naive, cdf-dkw, cdf-bj. \\[default: naive,cdf-dkw,cdf-bj]")]
ScoreTh = Annotated[Optional[str], typer.Option("--score-thresholds", help="Thresholds c for the score, in (0, 1). \\[default: 0.5,0.6,0.7,0.8,0.9]")]
MarginTh = Annotated[Optional[str], typer.Option("--margin-thresholds", help="Thresholds c for the margin, in (-1, 1). \\[default: 0,0.2,0.4,0.6,0.8]")]
Radii = Annotated[Optional[str], typer.Option("--radii", help="L2 radii (in [0, 1] pixel units) for bounds and accuracy tables. \\[default: 0,0.25,...,1.5]")]
ConfigOpt = Annotated[Optional[Path], typer.Option("-c", "--config", help="YAML config (sections model, preprocess, smoothing, certify).")]
Output = Annotated[Optional[List[Path]], typer.Option("-o", "--output", help="Report file, .json or .csv by suffix; repeat for both. \\[default: onnxcert-report.json]")]
OutputKind = Annotated[Optional[str], typer.Option("--output-kind", help="auto | logits | probabilities. auto detects rows in [0, 1] that sum to 1. \\[default: auto]")]
Force = Annotated[bool, typer.Option("--force", help="Overwrite existing report files.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or summary; errors only.")]


def _flags(sigma, alpha, n0, n, batch_size, seed, measures, methods, score_thresholds,
           margin_thresholds, radii, output_kind=None) -> dict:
    return cli_layer(
        sigma=sigma, alpha=alpha, n0=n0, n=n, batch_size=batch_size, seed=seed,
        measures=split_list(measures, "--measures"), methods=split_list(methods, "--methods"),
        score_thresholds=float_list(score_thresholds, "--score-thresholds"),
        margin_thresholds=float_list(margin_thresholds, "--margin-thresholds"),
        radii=float_list(radii, "--radii"), output_kind=output_kind,
    )


def _outputs(output: list[Path] | None, force: bool) -> list[Path]:
    paths = list(output) if output else [Path("onnxcert-report.json")]
    for p in paths:
        if p.suffix.lower() not in (".json", ".csv"):
            raise ConfigError(f"--output must end in .json or .csv, got {str(p)!r}")
        if p.exists() and not force:
            raise InputError(f"{str(p)!r} exists; pass --force to overwrite it")
        if p.exists() and p.is_dir():
            raise InputError(f"{str(p)!r} is a directory")
    return paths


@app.command("certify-scores")
@handle_errors
def certify_scores_cmd(
    scores: Annotated[Path, typer.Argument(help="SCORES.npz with 'estimation' [B, n, k], 'selection' [B, n0, k], optional 'labels' [B].")],
    sigma: Sigma = None, alpha: Alpha = None, n0: N0 = None, n: N = None, batch_size: BatchSize = None,
    seed: Seed = None, measures: Measures = None, methods: Methods = None,
    score_thresholds: ScoreTh = None, margin_thresholds: MarginTh = None, radii: Radii = None,
    config: ConfigOpt = None, output: Output = None, output_kind: OutputKind = None,
    force: Force = False, quiet: Quiet = False,
) -> None:
    """Certify from score matrices computed elsewhere (no model). n and n0 default to the arrays."""
    setup_logging(quiet)
    flags = _flags(sigma, alpha, n0, n, batch_size, seed, measures, methods, score_thresholds,
                   margin_thresholds, radii, output_kind)
    paths = _outputs(output, force)
    arrays = load_scores(scores)
    shape_layer = {"smoothing": {"n": arrays.estimation.shape[1], "n0": arrays.selection.shape[1]}}
    cfg = build_config(shape_layer, load_yaml(config) if config else {}, flags)
    result = certify_scores(arrays, cfg.settings, output_kind=cfg.model.output_kind)
    for p in paths:
        write_report(result.report, p)
    if not quiet:
        _print_summary(result.report)
        typer.echo(f"wrote {', '.join(str(p) for p in paths)}", err=True)


def _print_summary(report: dict) -> None:
    try:
        from .summary import print_run_summary
    except ImportError:  # summary module not present
        return
    print_run_summary(report)


def main() -> None:
    """Console-script entry point."""
    from . import cli_results  # noqa: F401  (registers summary, plot, gate)
    from . import cli_run  # noqa: F401  (registers run, inspect)

    app()


if __name__ == "__main__":
    main()
