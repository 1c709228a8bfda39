"""The Typer application, the option types and the plumbing every command module shares.

Command modules (``cli/scores.py``, ``cli/run.py``, ``cli/inspect.py``, ``cli/results.py``)
import this module and never each other. Nothing here imports SciPy, onnxruntime or matplotlib:
``onnxcert --help`` must start fast (benchmarks/bench_startup.py)."""

from __future__ import annotations

import functools
import logging
import sys
from pathlib import Path
from typing import Annotated, Callable, List, Optional

import typer
from typer.core import TyperGroup

try:  # Typer >= 0.24 vendors click as typer._click; older ones use click itself
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover
    from click import exceptions as click_errors

from ..errors import ConfigError, InputError, OnnxCertError


class OneLineErrors(TyperGroup):
    """Usage errors (an unknown option, a missing argument, a value of the wrong type) as the one
    ``onnxcert: error:`` line every other error is, exit 2, instead of Typer's multi-line box."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click_errors.NoArgsIsHelpError as exc:  # `onnxcert` or `onnxcert run` alone: the help
            exc.show()
            sys.exit(exc.exit_code)
        except click_errors.ClickException as exc:
            ctx = getattr(exc, "ctx", None)
            where = f"{ctx.command_path}: " if ctx is not None and ctx.command_path else ""
            see = f" (see {ctx.command_path} --help)" if isinstance(exc, click_errors.UsageError) and ctx is not None else ""
            fail_line(f"{where}{exc.format_message()}{see}")
            sys.exit(2 if isinstance(exc, click_errors.UsageError) else exc.exit_code)
        except typer.Abort:
            fail_line("aborted")
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    cls=OneLineErrors,
    name="onnxcert",
    help="Certified confidence for ONNX image classifiers by randomized smoothing "
    "(Cohen et al. 2019; Kumar et al. 2020). Noise is added in [0, 1] pixel space, after "
    "resize/crop and before mean/std normalization; radii are L2 norms in those units.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: Rich's help renderer alone costs ~1 s of start-up (issue 16)
)


MAX_LINE = 1000  # characters of an error line; every message also caps what it quotes


def fail_line(message: str) -> None:
    """Print ``onnxcert: error: MESSAGE`` to stderr as one line of at most MAX_LINE characters."""
    line = " ".join(str(message).split())
    line = line if len(line) <= MAX_LINE else line[:MAX_LINE - 3] + "..."
    typer.echo(f"onnxcert: error: {line}", err=True)


def fail(message: str, code: int = 1) -> None:
    """Print one line to stderr and exit with ``code``."""
    fail_line(message)
    raise typer.Exit(code)


def handle_errors(fn: Callable) -> Callable:
    """Turn OnnxCertError into one line on stderr and its exit code; never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except OnnxCertError as exc:
            fail(str(exc), exc.exit_code)
        except KeyboardInterrupt:
            fail("interrupted", 130)

    return wrapper


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at emit time (test runners swap it per invocation)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def setup_logging(quiet: bool = False, verbose: bool = False) -> None:
    """The "onnxcert" logger's level and its one stderr handler. Records still propagate to the
    root logger (an application's or a test's handlers see them too); the root has no handler
    of its own in the command line, so nothing is printed twice."""
    level = logging.WARNING if quiet else (logging.DEBUG if verbose else logging.INFO)
    log = logging.getLogger("onnxcert")
    log.setLevel(level)
    if not log.handlers:
        h = _StderrHandler()
        h.setFormatter(logging.Formatter("onnxcert: %(message)s"))
        log.addHandler(h)


def split_list(value: str | None, name: str) -> list[str] | None:
    if value is None:
        return None
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise ConfigError(f"{name} must be a comma-separated list, got {value!r}")
    return items


def float_list(value: str | None, name: str) -> list[float] | None:
    items = split_list(value, name)
    if items is None:
        return None
    try:
        return [float(v) for v in items]
    except ValueError:
        raise ConfigError(f"{name} must be comma-separated numbers, got {value!r}") from None


def command_line(ctx: typer.Context) -> list[str]:
    """The command being run, for the report: ``onnxcert`` and its arguments as typed when the
    console script runs it (``main`` passes sys.argv down), else rebuilt from the parameters given
    on the command line (e.g. under Typer's CliRunner)."""
    root = ctx.find_root()
    if isinstance(root.obj, dict) and isinstance(root.obj.get("argv"), list):
        return ["onnxcert", *root.obj["argv"]]
    words = ["onnxcert", ctx.info_name or ""]
    for param in ctx.command.params:
        source = ctx.get_parameter_source(param.name)
        if source is None or source.name != "COMMANDLINE":
            continue
        value = ctx.params[param.name]
        values = list(value) if isinstance(value, (list, tuple)) else [value]
        if param.param_type_name == "argument":
            words += [str(v) for v in values]
        elif getattr(param, "is_flag", False):
            words.append(max(param.opts, key=len) if value else max(param.secondary_opts or param.opts, key=len))
        else:
            for v in values:
                words += [max(param.opts, key=len), str(v)]
    return words


def _print_version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"onnxcert {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", help="Print the version and exit.", is_eager=True,
                                 callback=_print_version),
) -> None:
    """Certified confidence for ONNX image classifiers by randomized smoothing."""


# ---------------------------------------------------------------- option types

NOISE_NOTE = ("sigma is the noise std in [0, 1] pixel space: noise is added after resize/crop and "
              "before (x - mean) / std. Radii are L2 norms in the same units.")

Sigma = Annotated[Optional[float], typer.Option("--sigma", help=f"Noise level. {NOISE_NOTE} [default: from config or model metadata; else required]")]
Alpha = Annotated[Optional[float], typer.Option("--alpha", help="Each certificate fails with probability at most alpha. [default: 0.001]")]
N0 = Annotated[Optional[int], typer.Option("--n0", help="Selection samples that choose the class. [default: 100]")]
N = Annotated[Optional[int], typer.Option("--n", help="Estimation samples behind every certificate. [default: 100000]")]
BatchSize = Annotated[Optional[int], typer.Option("--batch-size", help="Noisy samples per forward pass. [default: chosen automatically]")]
Seed = Annotated[Optional[int], typer.Option("--seed", help="Global seed; each input derives its own stream from it. [default: 0]")]
Measures = Annotated[Optional[str], typer.Option("--measures", help="Comma-separated: score, margin. [default: score,margin]")]
Methods = Annotated[Optional[str], typer.Option("--methods", help="Comma-separated: naive, cdf-dkw, cdf-bj. [default: naive,cdf-dkw,cdf-bj]")]
ScoreTh = Annotated[Optional[str], typer.Option("--score-thresholds", help="Thresholds c for the score, in (0, 1). [default: 0.5,0.6,0.7,0.8,0.9]")]
MarginTh = Annotated[Optional[str], typer.Option("--margin-thresholds", help="Thresholds c for the margin, in (-1, 1). [default: 0,0.2,0.4,0.6,0.8]")]
Radii = Annotated[Optional[str], typer.Option("--radii", help="L2 radii (in [0, 1] pixel units) for bounds and accuracy tables. [default: 0,0.25,...,1.5]")]
ConfigOpt = Annotated[Optional[Path], typer.Option("-c", "--config", help="YAML config (sections model, preprocess, smoothing, certify).")]
Output = Annotated[Optional[List[Path]], typer.Option("-o", "--output", help="Report file, .json or .csv by suffix; repeat for both. [default: onnxcert-report.json]")]
OutputKind = Annotated[Optional[str], typer.Option("--output-kind", help="auto | logits | probabilities. auto detects rows in [0, 1] that sum to 1. [default: auto]")]
Force = Annotated[bool, typer.Option("--force", help="Overwrite existing report files.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or summary; errors only.")]
Device = Annotated[str, typer.Option("--device", help="auto | cpu | cuda. auto uses CUDA when onnxruntime offers it.")]
InputName = Annotated[Optional[str], typer.Option("--input-name", help="The image input, when the model has several. [default: model.input, or the only input]")]
OutputName = Annotated[Optional[str], typer.Option("--output-name", help="The [N, k] class-score output, when the model has several. [default: model.output, or the only [N, k] output]")]
Threads = Annotated[Optional[int], typer.Option("--threads", help="Threads for the forward passes: onnxruntime intra-op threads, shared among the lanes (see --lanes). [default: the CPU cores available]")]
Lanes = Annotated[Optional[int], typer.Option("--lanes", help="Forward passes run at once on the CPU, each on --threads / lanes intra-op threads; the noise of every sample stays the same. 1 runs one batch at a time. [default: --threads for models with at most 16 MiB of weights, else 1]")]
Resume = Annotated[bool, typer.Option("--resume", help="Continue an interrupted run from its journal (the first report's name with .jsonl), after checking that the model, inputs and settings match. Without a journal, start from the first input.")]
StrictInputs = Annotated[bool, typer.Option("--strict-inputs", help="Stop at an image of the folder that cannot be decoded (corrupt, not an image, too large) instead of skipping it with a warning.")]
GateRules = Annotated[Optional[Path], typer.Option("--gate", help="YAML list of gate rules (as for `onnxcert gate --rules`), checked after the report is written; exit 0 when all hold, 1 when one fails, 2 on bad rules (checked before certifying).")]
Backend = Annotated[str, typer.Option("--backend", help="local: certify in this process. ray: on Ray workers (pip install 'onnxcert[ray]'; see docs/ray.md).")]
RayAddress = Annotated[Optional[str], typer.Option("--address", help="With --backend ray: 'auto' joins the cluster `ray start` runs on this machine; 'ray://HOST:PORT' connects through Ray Client. [default: RAY_ADDRESS, else a new local Ray instance]")]
Workers = Annotated[Optional[int], typer.Option("--workers", help="With --backend ray: Ray workers, each holding one onnxruntime session. [default: as many as the cluster's GPUs (or CPUs) allow]")]
GpusPerWorker = Annotated[Optional[float], typer.Option("--num-gpus-per-worker", help="With --backend ray: GPUs each worker reserves (0.5: two workers per GPU); workers then use CUDA. [default: 0, CPU workers]")]
Sequential = Annotated[bool, typer.Option("--sequential", help="With --gate: sample each input in looks (1000, 2000, 4000, ... up to --n; every bound at alpha/K) and stop it once every rule is decided (certified, or shown futile). The bounds hold at level 1 - alpha at the look where it stops. See README 'Sequential certification'.")]
DatasetStop = Annotated[Optional[bool], typer.Option("--dataset-stop/--no-dataset-stop", help="With --sequential: stop the run once the inputs certified so far settle every gate rule (in input order); the rest are listed under 'unevaluated' in the report. [default: on with --sequential]")]
Junit = Annotated[Optional[Path], typer.Option("--junit", help="With --gate: also write JUnit XML, one testcase per check.")]
ClassesOpt = Annotated[Optional[str], typer.Option("--classes", help="Class names in output order: a comma-separated list, or a file (.txt one per line, .json list or index -> name). [default: model.classes, else the model's metadata]")]
PreprocessFrom = Annotated[Optional[Path], typer.Option("--preprocess-from", help="A timm data config / pretrained_cfg JSON or a Hugging Face preprocessor_config.json; same as preprocess: {from: FILE}.")]
Skip = Annotated[Optional[int], typer.Option("--skip", help="Take every N-th input: 0, N, 2N, ... (Cohen et al.'s --skip). [default: 1, every input]")]
Limit = Annotated[Optional[int], typer.Option("--limit", help="At most M inputs (after --skip; Cohen et al.'s --max). [default: all]")]
LabelsCsv = Annotated[Optional[Path], typer.Option("--labels-csv", help="Labels for a folder's images from this CSV (file, label). [default: the folder's labels.csv]")]
LabelColumns = Annotated[Optional[str], typer.Option("--label-columns", help="The CSV's file and label columns, by header name or 0-based index: FILE,LABEL. [default: file,label]")]
NpzKeys = Annotated[Optional[str], typer.Option("--npz-keys", help="The .npz arrays holding the images and (optionally) the labels: IMAGES[,LABELS]. [default: x,y]")]
Html = Annotated[Optional[Path], typer.Option("--html", help="Also write a self-contained HTML page of the results (as `onnxcert report`; with --gate, the gate's result too).")]
AllowMismatch = Annotated[bool, typer.Option("--allow-mismatch", help="Compare reports whose inputs, sigma, n or alpha differ (refused otherwise).")]


# ---------------------------------------------------------------- shared by run and certify-scores


def setting_flags(sigma, alpha, n0, n, batch_size, seed, measures, methods, score_thresholds,
           margin_thresholds, radii, output_kind=None) -> dict:
    from ..config import cli_layer

    return cli_layer(
        sigma=sigma, alpha=alpha, n0=n0, n=n, batch_size=batch_size, seed=seed,
        measures=split_list(measures, "--measures"), methods=split_list(methods, "--methods"),
        score_thresholds=float_list(score_thresholds, "--score-thresholds"),
        margin_thresholds=float_list(margin_thresholds, "--margin-thresholds"),
        radii=float_list(radii, "--radii"), output_kind=output_kind,
    )


DEFAULT_REPORT = Path("onnxcert-report.json")


def output_paths(output: list[Path] | None, force: bool) -> list[Path]:
    """The -o files, checked before any work: a known suffix, not a directory, a folder that
    takes new files, and not there already unless --force."""
    from ..files import check_writable
    from ..untrusted import shown

    paths = list(output) if output else [DEFAULT_REPORT]
    for p in paths:
        if p.suffix.lower() not in (".json", ".csv"):
            raise ConfigError(f"--output must end in .json or .csv, got {shown(p)}")
        check_writable(p, "the report")
        if (p.exists() or p.is_symlink()) and not force:
            raise InputError(f"{shown(p)} exists; pass --force to overwrite it")
    return paths


def print_summary(report: dict) -> None:
    from ..reports.render import print_run_summary

    print_run_summary(report)


# ---------------------------------------------------------------- shared by run and check


def input_options(labels_csv, label_columns, npz_keys) -> dict:
    """Keyword arguments for ``load_inputs`` from the CLI's dataset flags."""
    out: dict = {}
    if labels_csv is not None:
        out["labels_csv"] = labels_csv
    if label_columns is not None:
        cols = split_list(label_columns, "--label-columns")
        if len(cols) != 2:
            raise ConfigError(f"--label-columns must be FILE,LABEL (two columns), got {label_columns!r}")
        out["csv_columns"] = tuple(cols)
    if npz_keys is not None:
        keys = split_list(npz_keys, "--npz-keys")
        if len(keys) > 2:
            raise ConfigError(f"--npz-keys must be IMAGES[,LABELS], got {npz_keys!r}")
        out["npz_keys"] = tuple(keys)
    return out


def model_layer_flags(classes: str | None, preprocess_from: Path | None) -> dict:
    """--classes and --preprocess-from as a config layer (CLI precedence)."""
    layer: dict = {}
    if preprocess_from is not None:
        layer["preprocess"] = {"from": str(preprocess_from)}
    if classes is not None:
        from ..preprocess_configs import read_class_names

        layer["model"] = {"classes": read_class_names(classes)}
    return layer


def html_path(html: Path | None, force: bool) -> Path | None:
    """--html, checked before any work: an .html/.htm path, not overwritten without --force."""
    if html is None:
        return None
    from ..reports.html import check_output

    path = check_output(html)
    if path.exists() and not force:
        raise InputError(f"{str(path)!r} exists; pass --force to overwrite it")
    return path
