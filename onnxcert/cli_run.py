"""`onnxcert run` and `onnxcert inspect` (Typer code only)."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from . import pipeline
from ._app import app, handle_errors, setup_logging
from .cli import (Alpha, BatchSize, ConfigOpt, Force, MarginTh, Measures, Methods, N, N0, Output, OutputKind,
                  Quiet, Radii, ScoreTh, Seed, Sigma, _flags, _outputs, _print_summary)
from .config import cli_layer, load_yaml, merge, metadata_layer
from .errors import ModelError
from .report import write_report

Device = Annotated[str, typer.Option("--device", help="auto | cpu | cuda. auto uses CUDA when onnxruntime offers it.")]
InputName = Annotated[Optional[str], typer.Option("--input-name", help="The image input, when the model has several. [default: model.input, or the only input]")]
OutputName = Annotated[Optional[str], typer.Option("--output-name", help="The [N, k] class-score output, when the model has several. [default: model.output, or the only [N, k] output]")]
Threads = Annotated[Optional[int], typer.Option("--threads", help="onnxruntime intra-op threads. [default: the CPU cores available]")]


@app.command("run")
@handle_errors
def run_cmd(
    model: Annotated[Path, typer.Argument(help="The ONNX classifier; its output must be [N, k] logits or probabilities.")],
    inputs: Annotated[Path, typer.Argument(help="A folder of images (labels from sub-folders or labels.csv), an image, "
                                                "a .npy [N, ...] in [0, 1], or a .npz with 'x' and optional 'y'.")],
    sigma: Sigma = None, alpha: Alpha = None, n0: N0 = None, n: N = None, batch_size: BatchSize = None,
    seed: Seed = None, measures: Measures = None, methods: Methods = None,
    score_thresholds: ScoreTh = None, margin_thresholds: MarginTh = None, radii: Radii = None,
    config: ConfigOpt = None, output: Output = None, output_kind: OutputKind = None, device: Device = "auto",
    input_name: InputName = None, output_name: OutputName = None, threads: Threads = None,
    force: Force = False, quiet: Quiet = False,
) -> None:
    """Certify every input with the ONNX classifier MODEL and write the report."""
    setup_logging(quiet)
    flags = _flags(sigma, alpha, n0, n, batch_size, seed, measures, methods, score_thresholds,
                   margin_thresholds, radii, output_kind)
    names = cli_layer(input_name=input_name, output_name=output_name)
    paths = _outputs(output, force)
    layers = [load_yaml(config) if config else {}, flags, names]
    setup = pipeline.prepare(model, inputs, layers=layers, device=device, threads=threads)
    with _progress(setup, enabled=not quiet and sys.stderr.isatty()) as (on_batch, on_record):
        result = pipeline.certify(setup, on_batch=on_batch, on_record=on_record)
    for p in paths:
        write_report(result.report, p)
    if not quiet:
        _print_summary(result.report)
        prov = result.report["provenance"]
        typer.echo(f"{len(result.records)} input(s), {prov['samples']:,} samples in {prov['wall_time_s']:.1f} s "
                   f"({prov['samples_per_second'] or 0:,.0f} samples/s) on {prov['provider']}; "
                   f"output read as {result.report['settings']['output_kind']}", err=True)
        typer.echo(f"wrote {', '.join(str(p) for p in paths)}", err=True)


@contextlib.contextmanager
def _progress(setup: pipeline.RunSetup, enabled: bool):
    """Two bars on stderr, inputs and samples, with throughput and ETA; nothing when disabled."""
    if not enabled:
        yield None, None
        return
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)
    from rich.text import Text

    class Rate(ProgressColumn):
        def render(self, task):
            return Text(f"{task.speed:,.0f} {task.fields['unit']}/s" if task.speed else "")

    bar = Progress(TextColumn("{task.description:>7}"), BarColumn(), MofNCompleteColumn(), Rate(),
                   TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
                   console=Console(stderr=True))
    with bar:
        n_in = len(setup.inputs)
        t_in = bar.add_task("inputs", total=n_in, unit="inputs")
        t_s = bar.add_task("samples", total=n_in * setup.samples_per_input, unit="samples")
        yield (lambda b: bar.advance(t_s, b)), (lambda rec: bar.advance(t_in, 1))


@app.command("inspect")
@handle_errors
def inspect_cmd(
    model: Annotated[Path, typer.Argument(help="The ONNX model to describe.")],
    config: ConfigOpt = None, input_name: InputName = None, output_name: OutputName = None,
) -> None:
    """Show the model's inputs, outputs, opset and metadata, and the preprocessing onnxcert would use."""
    from .runtime import describe_model, import_ort, select_input, select_output

    info = describe_model(model)
    layers = [load_yaml(config) if config else {}, cli_layer(input_name=input_name, output_name=output_name)]
    merged = merge(*layers)
    out = typer.echo
    out(f"model      {info.path}")
    out(f"sha256     {info.sha256}")
    out(f"format     ONNX IR {info.ir_version}; opsets " + ", ".join(f"{d} {v}" for d, v in info.opsets.items())
        + (f"; producer {info.producer}" if info.producer else ""))
    chosen_in, chosen_out = _try(select_input, info, merged["model"].get("input")), \
        _try(select_output, info, merged["model"].get("output"))
    for label, tensors, chosen in (("inputs", info.inputs, chosen_in), ("outputs", info.outputs, chosen_out)):
        for i, t in enumerate(tensors):
            mark = "   <- used" if not isinstance(chosen, str) and chosen.name == t.name else ""
            out(f"{label if i == 0 else '':<10} {t.describe()}{mark}")
        if isinstance(chosen, str):
            out(f"{'':<10} note: {chosen}")
    if info.metadata:
        for i, (key, value) in enumerate(sorted(info.metadata.items())):
            value = value if len(value) <= 200 else value[:197] + "..."
            out(f"{'metadata' if i == 0 else '':<10} {key} = {value}")
    else:
        out("metadata   none")
    if isinstance(chosen_in, str):
        return
    raw = merge(metadata_layer(info.metadata), *layers)
    placeholder = {} if raw["smoothing"].get("sigma") is not None else {"smoothing": {"sigma": 1.0}}
    cfg = pipeline.resolve_config(info, [placeholder, *layers])
    p, s, m = cfg.preprocess, cfg.settings, cfg.model
    out("preprocessing (model input shape < model metadata < config file < flags):")
    out(f"  size {list(p.size) if p.size else 'per image'}, resize {p.resize}"
        + (f" (shorter side to {p.resize_to})" if p.resize == "shorter" and p.resize_to else "")
        + f", crop {p.crop}, channels {p.channels}, layout {p.layout}")
    out(f"  mean {list(p.mean)}, std {list(p.std)}; the model receives (x + noise - mean) / std, x in [0, 1]")
    out(f"  output kind {m.output_kind}" + (f"; {len(m.classes)} class names" if m.classes else ""))
    sigma = "not set (pass --sigma or set smoothing.sigma)" if placeholder else f"{s.sigma:g}"
    out(f"smoothing  sigma {sigma}, alpha {s.alpha:g}, n0 {s.n0}, n {s.n}, seed {s.seed}")
    try:
        out(f"providers  {', '.join(import_ort().get_available_providers())}")
    except Exception:  # onnxruntime missing: inspect still works with onnx alone
        out("providers  onnxruntime is not installed")


def _try(fn, *args):
    """The chosen tensor, or the reason none can be chosen (as a string)."""
    try:
        return fn(*args)
    except ModelError as exc:
        return str(exc)

