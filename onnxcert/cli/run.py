"""`onnxcert run` and `onnxcert inspect` (Typer code only).

``run`` streams every finished input to a journal beside the first report (``report.json`` ->
``report.jsonl``, see ``onnxcert.journal``), stops after the current batch on SIGINT/SIGTERM
(exit 130, reports not written), and continues with ``--resume``. Existing reports, and an
existing journal when not resuming, are refused without ``--force`` before any work starts.
"""

from __future__ import annotations

import contextlib
import functools
import sys
from pathlib import Path
from typing import Annotated

import typer

from ..errors import ConfigError, InputError
from .options import (DEFAULT_REPORT, Alpha, Backend, BatchSize, ClassesOpt, ConfigOpt, DatasetStop, Device, Force, Lanes,
                      GateRules, GpusPerWorker, Html, html_path, InputName, Junit, LabelColumns, LabelsCsv, Limit, MarginTh,
                      Measures, Methods, N, N0, NpzKeys, Output, OutputKind, OutputName, PreprocessFrom, Quiet, Radii,
                      RayAddress, Resume, ScoreTh, Seed, Sequential, Sigma, Skip, StrictInputs, Threads, Workers, app,
                      command_line, handle_errors, input_options, model_layer_flags, output_paths, print_summary,
                      setting_flags, setup_logging)

def _journal_locked(fn):
    """Hold the lock of the run's journal (beside the first -o) for the whole command: a second
    run with the same -o refuses before any work (see journal.JournalLock)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from ..files import check_writable
        from ..journal import JournalLock, journal_path

        outputs = kwargs.get("output") or [DEFAULT_REPORT]
        if Path(outputs[0]).suffix.lower() not in (".json", ".csv"):
            return fn(*args, **kwargs)  # refused by output_paths, with its own message
        check_writable(outputs[0], "the report")  # its folder will hold the lock
        with JournalLock(journal_path(outputs[0])):
            return fn(*args, **kwargs)

    return wrapper


@app.command("run")
@handle_errors
@_journal_locked
def run_cmd(
    ctx: typer.Context,
    model: Annotated[Path, typer.Argument(help="The ONNX classifier; its output must be [N, k] logits or probabilities.")],
    inputs: Annotated[Path, typer.Argument(help="A folder of images (labels from sub-folders or labels.csv), an image, "
                                                "a .npy [N, ...] in [0, 1], or a .npz with 'x' and optional 'y'.")],
    sigma: Sigma = None, alpha: Alpha = None, n0: N0 = None, n: N = None, batch_size: BatchSize = None,
    seed: Seed = None, measures: Measures = None, methods: Methods = None,
    score_thresholds: ScoreTh = None, margin_thresholds: MarginTh = None, radii: Radii = None,
    config: ConfigOpt = None, output: Output = None, output_kind: OutputKind = None, device: Device = "auto",
    input_name: InputName = None, output_name: OutputName = None, threads: Threads = None, lanes: Lanes = None,
    force: Force = False, resume: Resume = False, strict_inputs: StrictInputs = False,
    gate: GateRules = None, junit: Junit = None, backend: Backend = "local", address: RayAddress = None,
    workers: Workers = None, num_gpus_per_worker: GpusPerWorker = None, html: Html = None,
    sequential: Sequential = False, dataset_stop: DatasetStop = None, quiet: Quiet = False,
    classes: ClassesOpt = None, preprocess_from: PreprocessFrom = None, skip: Skip = None, limit: Limit = None,
    labels_csv: LabelsCsv = None, label_columns: LabelColumns = None, npz_keys: NpzKeys = None,
) -> None:
    """Certify every input with the ONNX classifier MODEL and write the report. On a new model, run
    `onnxcert check` first: it shows in seconds what the model sees."""
    from .. import pipeline
    from ..config import cli_layer, load_yaml
    from ..gate import check_rules_for_run
    from ..report import write_reports

    setup_logging(quiet)
    flags = setting_flags(sigma, alpha, n0, n, batch_size, seed, measures, methods, score_thresholds,
                   margin_thresholds, radii, output_kind)
    names = cli_layer(input_name=input_name, output_name=output_name)
    paths = output_paths(output, force)
    page = html_path(html, force)
    journal = _journal(paths[0], resume, force)
    rules = _rules(gate, junit)
    if sequential and not rules:
        raise ConfigError("--sequential needs --gate RULES.yaml: the rules say when an input is decided")
    if dataset_stop is not None and not sequential:
        raise ConfigError(f"--{'' if dataset_stop else 'no-'}dataset-stop only applies with --sequential")
    if lanes is not None and backend != "local":
        raise ConfigError("--lanes only applies to --backend local (Ray workers choose their lanes from --threads)")
    remote = _backend(backend, address, workers, num_gpus_per_worker, device, threads)
    setup = pipeline.prepare(model, inputs, file=load_yaml(config) if config else None,
                             cli=[model_layer_flags(classes, preprocess_from), flags, names],
                             device="cpu" if remote else device, threads=None if remote else threads, lanes=lanes,
                             strict_inputs=strict_inputs,
                             input_options=input_options(labels_csv, label_columns, npz_keys), skip=skip, limit=limit)
    _print_mapping(setup)
    if rules:
        check_rules_for_run(rules, setup.config.settings, setup.inputs.has_labels)
    if sequential:
        setup = pipeline.with_sequential(setup, rules, dataset_stop=dataset_stop is not False)
    writer, state = pipeline.open_journal(setup, journal, resume, provider=remote.provider if remote else None)
    done = state.done if state else 0
    with writer, pipeline.stop_on_signals() as stop, \
            _progress(setup, quiet, sys.stderr.isatty(), done) as (on_batch, on_record):
        certify = pipeline.certify if remote is None else remote.certify
        result = certify(setup, on_batch=on_batch, on_record=on_record, journal=writer, resumed=state, stop=stop,
                         command=command_line(ctx))
    write_reports(result.report, paths, hint=f"every certified input is kept in {str(journal)!r}: make room and "
                                             "run the same command with --resume to write the report")
    skipped = result.report["skipped"]
    if skipped:
        typer.echo(f"onnxcert: warning: {len(skipped)} input(s) skipped (listed under 'skipped' in the report)",
                   err=True)
    _warn(result.report, setup)
    if not quiet:
        print_summary(result.report)
        prov = result.report["provenance"]
        resumed = f" (+{done} from {journal})" if done else ""
        ran = (prov.get("session_options") or {}).get("lanes", 1)
        where = prov["provider"] + (f" in {ran} lanes" if ran > 1 else "")
        typer.echo(f"{len(result.records)} input(s){resumed}, {prov['samples']:,} samples in {prov['wall_time_s']:.1f} s "
                   f"({prov['samples_per_second'] or 0:,.0f} samples/s) on {where}; "
                   f"output read as {result.report['settings']['output_kind']}", err=True)
        typer.echo(f"wrote {', '.join(str(p) for p in paths)} (journal {journal})", err=True)
    gated = _gate(result.report, rules, str(paths[0]), junit) if rules else None
    if page is not None:
        from ..reports.html import Source, write_html

        write_html(page, [Source(result.report, str(paths[0]))], gate=gated)
        if not quiet:
            typer.echo(f"wrote {page}", err=True)
    if gated is not None:
        raise typer.Exit(gated.exit_code)


def _journal(first_output: Path, resume: bool, force: bool) -> Path:
    """The journal beside the first report; an earlier run's journal needs --resume or --force."""
    from ..journal import journal_path

    from ..files import check_writable

    path = journal_path(first_output)
    check_writable(path, "the run's journal")
    if resume and path.is_symlink():
        raise InputError(f"the run's journal {str(path)!r} is a symbolic link; onnxcert does not append through "
                         "links: drop --resume and pass --force to start a new journal there")
    if (path.exists() or path.is_symlink()) and not resume and not force:
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
    from ..ray_backend import RayBackend, RayOptions, import_ray

    options = RayOptions(address=address, workers=workers, num_gpus_per_worker=gpus or 0.0, device=device,
                         threads=threads)
    import_ray()
    backend = RayBackend(options)
    backend.check_address()
    return backend


def _rules(gate: Path | None, junit: Path | None):
    """The --gate rules, loaded before any work, so that bad rules fail early (exit 2)."""
    if junit is not None and gate is None:
        raise ConfigError("--junit needs --gate RULES.yaml")
    if junit is not None:
        from ..files import check_writable

        check_writable(junit, "the JUnit file")
    if gate is None:
        return ()
    from ..gate import load_rules

    return load_rules(gate)


def _gate(report: dict, rules, source: str, junit: Path | None):
    """Evaluate the --gate rules, print their lines and write the JUnit file; the GateResult."""
    from ..gate import evaluate_rules, write_junit

    result = evaluate_rules(report, rules, source=source)
    for line in result.lines():
        typer.echo(line)
    if junit is not None:
        write_junit(result, junit)
    return result


def _print_mapping(setup) -> None:
    """The folder -> class index -> class name mapping, before any work, so a wrong one is seen at once."""
    classes, items = setup.config.model.classes, setup.inputs
    if items.folders:
        shown = ", ".join(f"{folder!r} -> {c}" + (f" ({classes[c]})" if classes and c < len(classes) else "")
                          for folder, c in items.folders[:20])
        more = f", ... ({len(items.folders)} classes)" if len(items.folders) > 20 else ""
        typer.echo(f"onnxcert: labels from sub-folders: {shown}{more}", err=True)
    elif items.label_source is not None:
        typer.echo(f"onnxcert: labels from {items.label_source}"
                   + (f"; {len(classes)} class names" if classes else ""), err=True)


def _warn(report: dict, setup) -> None:
    from ..diagnostics import run_warnings

    k = setup.classifier.num_classes or (len(setup.config.model.classes) if setup.config.model.classes else None)
    for line in run_warnings(report["records"], k=k, classes=setup.config.model.classes, last_op=setup.output_op,
                             configured_kind=setup.config.model.output_kind):
        typer.echo(f"onnxcert: warning: {line}", err=True)


@contextlib.contextmanager
def _progress(setup, quiet: bool, terminal: bool, done: int = 0):
    """On a terminal: two bars on stderr, inputs and samples, with throughput and ETA. Elsewhere
    (CI, a log file): a plain line every few seconds. Either way, a run that the first batch says
    will be long gets its estimated duration. Nothing with ``quiet``. ``done`` inputs came from
    the journal."""
    if quiet:
        yield None, None
        return
    from ..progress import PlainProgress

    n0 = setup.config.settings.n0
    drawn = (lambda rec: n0 + rec.sequential["samples"]) if setup.sequential is not None else None
    plain = PlainProgress(len(setup.inputs), setup.samples_per_input, done=done, lines=not terminal,
                          echo=lambda line: typer.echo(f"onnxcert: {line}", err=True), drawn=drawn)
    if not terminal:
        yield plain.on_batch, plain.on_record
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
    plain.echo = lambda line: bar.console.print(f"onnxcert: {line}", highlight=False)

    def on_batch(count: int) -> None:
        bar.advance(t_s, count)
        plain.on_batch(count)

    with bar:
        n_in = len(setup.inputs)
        t_in = bar.add_task("inputs", total=n_in, completed=done, unit="inputs")
        t_s = bar.add_task("samples", total=(n_in - done) * setup.samples_per_input, unit="samples")

        def on_record(rec) -> None:
            bar.advance(t_in, 1)
            unused = plain.on_record(rec)  # a sequential input that stopped early: fewer samples to go
            if unused:
                bar.update(t_s, total=bar.tasks[t_s].total - unused)

        yield on_batch, on_record
