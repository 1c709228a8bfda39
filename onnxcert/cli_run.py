"""`onnxcert run` and `onnxcert inspect` (Typer code only).

``run`` streams every finished input to a journal beside the first report (``report.json`` ->
``report.jsonl``, see ``onnxcert.journal``), stops after the current batch on SIGINT/SIGTERM
(exit 130, reports not written), and continues with ``--resume``. Existing reports, and an
existing journal when not resuming, are refused without ``--force`` before any work starts.
"""

from __future__ import annotations

import contextlib
import math
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from . import pipeline
from ._app import app, handle_errors, setup_logging
from .cli import (Alpha, BatchSize, ConfigOpt, Force, MarginTh, Measures, Methods, N, N0, Output, OutputKind,
                  Quiet, Radii, ScoreTh, Seed, Sigma, _flags, _outputs, _print_summary)
from .config import cli_layer, load_yaml, merge, metadata_layer
from .errors import ConfigError, InputError, ModelError
from .journal import journal_path
from .report import write_report

Device = Annotated[str, typer.Option("--device", help="auto | cpu | cuda. auto uses CUDA when onnxruntime offers it.")]
InputName = Annotated[Optional[str], typer.Option("--input-name", help="The image input, when the model has several. \\[default: model.input, or the only input]")]
OutputName = Annotated[Optional[str], typer.Option("--output-name", help="The [N, k] class-score output, when the model has several. \\[default: model.output, or the only [N, k] output]")]
Threads = Annotated[Optional[int], typer.Option("--threads", help="onnxruntime intra-op threads. \\[default: the CPU cores available]")]
Resume = Annotated[bool, typer.Option("--resume", help="Continue an interrupted run from its journal (the first report's name with .jsonl), after checking that the model, inputs and settings match. Without a journal, start from the first input.")]
StrictInputs = Annotated[bool, typer.Option("--strict-inputs", help="Stop at an image of the folder that cannot be decoded (corrupt, not an image, too large) instead of skipping it with a warning.")]
GateRules = Annotated[Optional[Path], typer.Option("--gate", help="YAML list of gate rules (as for `onnxcert gate --rules`), checked after the report is written; exit 0 when all hold, 1 when one fails, 2 on bad rules (checked before certifying).")]
Backend = Annotated[str, typer.Option("--backend", help="local: certify in this process. ray: on Ray workers (pip install 'onnxcert\\[ray]'; see docs/ray.md).")]
RayAddress = Annotated[Optional[str], typer.Option("--address", help="With --backend ray: 'auto' joins the cluster `ray start` runs on this machine; 'ray://HOST:PORT' connects through Ray Client. \\[default: RAY_ADDRESS, else a new local Ray instance]")]
Workers = Annotated[Optional[int], typer.Option("--workers", help="With --backend ray: Ray workers, each holding one onnxruntime session. \\[default: as many as the cluster's GPUs (or CPUs) allow]")]
GpusPerWorker = Annotated[Optional[float], typer.Option("--num-gpus-per-worker", help="With --backend ray: GPUs each worker reserves (0.5: two workers per GPU); workers then use CUDA. \\[default: 0, CPU workers]")]
Junit = Annotated[Optional[Path], typer.Option("--junit", help="With --gate: also write JUnit XML, one testcase per check.")]


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
    force: Force = False, resume: Resume = False, strict_inputs: StrictInputs = False,
    gate: GateRules = None, junit: Junit = None, backend: Backend = "local", address: RayAddress = None,
    workers: Workers = None, num_gpus_per_worker: GpusPerWorker = None, quiet: Quiet = False,
) -> None:
    """Certify every input with the ONNX classifier MODEL and write the report."""
    setup_logging(quiet)
    flags = _flags(sigma, alpha, n0, n, batch_size, seed, measures, methods, score_thresholds,
                   margin_thresholds, radii, output_kind)
    names = cli_layer(input_name=input_name, output_name=output_name)
    paths = _outputs(output, force)
    journal = _journal(paths[0], resume, force)
    rules = _rules(gate, junit)
    layers = [load_yaml(config) if config else {}, flags, names]
    remote = _backend(backend, address, workers, num_gpus_per_worker, device, threads)
    setup = pipeline.prepare(model, inputs, layers=layers, device="cpu" if remote else device, threads=threads,
                             strict_inputs=strict_inputs)
    if rules:
        _check_rules(rules, setup)
    writer, state = pipeline.open_journal(setup, journal, resume, provider=remote.provider if remote else None)
    done = state.done if state else 0
    with writer, pipeline.stop_on_signals() as stop, \
            _progress(setup, not quiet and sys.stderr.isatty(), done) as (on_batch, on_record):
        certify = pipeline.certify if remote is None else remote.certify
        result = certify(setup, on_batch=on_batch, on_record=on_record, journal=writer, resumed=state, stop=stop)
    for p in paths:
        write_report(result.report, p)
    skipped = result.report["skipped"]
    if skipped:
        typer.echo(f"onnxcert: warning: {len(skipped)} input(s) skipped (listed under 'skipped' in the report)",
                   err=True)
    if not quiet:
        _print_summary(result.report)
        prov = result.report["provenance"]
        resumed = f" (+{done} from {journal})" if done else ""
        typer.echo(f"{len(result.records)} input(s){resumed}, {prov['samples']:,} samples in {prov['wall_time_s']:.1f} s "
                   f"({prov['samples_per_second'] or 0:,.0f} samples/s) on {prov['provider']}; "
                   f"output read as {result.report['settings']['output_kind']}", err=True)
        typer.echo(f"wrote {', '.join(str(p) for p in paths)} (journal {journal})", err=True)
    if rules:
        _gate(result.report, rules, str(paths[0]), junit)


def _journal(first_output: Path, resume: bool, force: bool) -> Path:
    """The journal beside the first report; an earlier run's journal needs --resume or --force."""
    path = journal_path(first_output)
    if path.is_dir():
        raise InputError(f"{str(path)!r} (the run's journal) is a directory")
    if path.exists() and not resume and not force:
        raise InputError(f"{str(path)!r} holds an earlier run's journal; pass --resume to continue that run, "
                         "or --force to start over")
    return path


def _backend(name: str, address, workers, gpus, device: str, threads):
    """None for the local backend; for ray, a RayBackend (ray must import: checked before any work)."""
    if name == "local":
        given = [flag for flag, v in (("--address", address), ("--workers", workers),
                                      ("--num-gpus-per-worker", gpus)) if v is not None]
        if given:
            raise ConfigError(f"{', '.join(given)} only appl{'ies' if len(given) == 1 else 'y'} to --backend ray")
        return None
    if name != "ray":
        raise ConfigError(f"--backend must be local or ray; got {name!r}")
    from .ray_backend import RayBackend, RayOptions, import_ray

    options = RayOptions(address=address, workers=workers, num_gpus_per_worker=gpus or 0.0, device=device,
                         threads=threads)
    import_ray()
    return RayBackend(options)


def _rules(gate: Path | None, junit: Path | None):
    """The --gate rules, loaded before any work, so that bad rules fail early (exit 2)."""
    if junit is not None and gate is None:
        raise ConfigError("--junit needs --gate RULES.yaml")
    if gate is None:
        return ()
    from .gate import load_rules

    return load_rules(gate)


def _check_rules(rules, setup: pipeline.RunSetup) -> None:
    """What the report will hold: every rule's measure, method and threshold, and labels for accuracy rules."""
    s = setup.config.settings
    for rule in rules:
        where = f"--gate rule {rule.describe()}"
        uses_radii = rule.min_accuracy is not None or rule.min_mean_radius is not None
        if rule.measure != "label" and uses_radii:
            if rule.measure not in s.measures:
                raise ConfigError(f"{where}: this run does not certify the {rule.measure} (measures: {', '.join(s.measures)})")
            if rule.method not in s.methods:
                raise ConfigError(f"{where}: this run does not use method {rule.method} (methods: {', '.join(s.methods)})")
            ths = s.thresholds[rule.measure]
            if rule.threshold is not None and not any(math.isclose(c, rule.threshold, abs_tol=1e-9) for c in ths):
                raise ConfigError(f"{where}: threshold {rule.threshold:g} is not one of this run's {rule.measure} "
                                  f"thresholds ({', '.join(f'{c:g}' for c in ths)})")
        if rule.min_accuracy is not None and not setup.inputs.has_labels:
            raise ConfigError(f"{where}: certified accuracy needs labels, and these inputs have none")


def _gate(report: dict, rules, source: str, junit: Path | None) -> None:
    from .gate import evaluate_rules, write_junit

    result = evaluate_rules(report, rules, source=source)
    for line in result.lines():
        typer.echo(line)
    if junit is not None:
        write_junit(result, junit)
    raise typer.Exit(result.exit_code)


@contextlib.contextmanager
def _progress(setup: pipeline.RunSetup, enabled: bool, done: int = 0):
    """Two bars on stderr, inputs and samples, with throughput and ETA; nothing when disabled.
    ``done`` inputs came from the journal."""
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
        t_in = bar.add_task("inputs", total=n_in, completed=done, unit="inputs")
        t_s = bar.add_task("samples", total=(n_in - done) * setup.samples_per_input, unit="samples")
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

