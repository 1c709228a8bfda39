"""`onnxcert check` (Typer code only): what the model sees, with no noise."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import ConfigError, InputError
from .options import (ClassesOpt, ConfigOpt, Device, Force, InputName, LabelColumns, LabelsCsv, Limit, NpzKeys,
                      OutputKind, OutputName, PreprocessFrom, Quiet, Skip, app, handle_errors, input_options,
                      model_layer_flags, setup_logging)

# check adds no noise: sigma only satisfies validation, and naive needs no calibrated band
NO_NOISE = {"smoothing": {"sigma": 1.0}, "certify": {"methods": ["naive"]}}

CheckOutput = Annotated[Optional[Path], typer.Option("-o", "--output", help="Write the result as JSON (clean_accuracy, count, records with the top classes).")]
Dump = Annotated[Optional[int], typer.Option("--dump", help="Write input INDEX as the model receives it (check-input-INDEX.npy, normalized) and, for images, check-input-INDEX.png (x in [0, 1] before normalization, in RGB order).")]
DumpDir = Annotated[Path, typer.Option("--dump-dir", help="Folder for the --dump files.")]
Reference = Annotated[Optional[Path], typer.Option("--reference", help="Expected outputs, one row per input in order: .npz/.npy/.csv of scores [N, k] or predicted classes [N]; reports the largest difference.")]
Top = Annotated[int, typer.Option("--top", help="Classes shown per input.")]
Show = Annotated[int, typer.Option("--show", help="Inputs listed on the terminal (all are in -o).")]


@app.command("check")
@handle_errors
def check_cmd(
    model: Annotated[Path, typer.Argument(help="The ONNX classifier.")],
    inputs: Annotated[Path, typer.Argument(help="A folder of images, an image, a .npy or a .npz (as for `run`).")],
    config: ConfigOpt = None, output: CheckOutput = None, dump: Dump = None, dump_dir: DumpDir = Path("."),
    reference: Reference = None, top: Top = 5, show: Show = 50,
    classes: ClassesOpt = None, preprocess_from: PreprocessFrom = None, output_kind: OutputKind = None,
    input_name: InputName = None, output_name: OutputName = None,
    skip: Skip = None, limit: Limit = None, labels_csv: LabelsCsv = None, label_columns: LabelColumns = None,
    npz_keys: NpzKeys = None, device: Device = "auto",
    force: Force = False, quiet: Quiet = False,
) -> None:
    """Show what the model sees, with no noise: per input the top classes and scores, the label and
    right/wrong; the clean accuracy, counts per class and the folder -> class mapping. Run it first on
    a new model: it takes seconds, and a certificate for a misconfigured model means nothing."""
    from .. import pipeline
    from ..check import check, compare_reference, dump as dump_input, load_reference
    from ..config import cli_layer, load_yaml

    setup_logging(quiet)
    if top < 1 or show < 0:
        raise ConfigError(f"--top must be >= 1 and --show >= 0, got {top} and {show}")
    if output is not None:
        if output.suffix.lower() != ".json":
            raise ConfigError(f"--output must end in .json, got {str(output)!r}")
        if output.exists() and not force:
            raise InputError(f"{str(output)!r} exists; pass --force to overwrite it")
    ref = load_reference(reference) if reference is not None else None
    cli = [NO_NOISE,
           model_layer_flags(classes, preprocess_from),
           cli_layer(output_kind=output_kind, input_name=input_name, output_name=output_name)]
    setup = pipeline.prepare(model, inputs, file=load_yaml(config) if config else None, cli=cli, device=device,
                             input_options=input_options(labels_csv, label_columns, npz_keys), skip=skip, limit=limit)
    result = check(setup, top_k=top)
    out = typer.echo
    if not quiet:
        _print_header(setup, result, out)
        _print_records(result, show, out)
        _print_totals(result, out)
    for line in result.warnings:
        typer.echo(f"onnxcert: warning: {line}", err=True)
    data = result.to_dict()
    if ref is not None:
        cmp = compare_reference(result, ref)
        data["reference"] = {"path": str(reference), **cmp.to_dict()}
        out(cmp.line())
    if dump is not None:
        dump_dir.mkdir(parents=True, exist_ok=True)
        stem = dump_dir / f"check-input-{dump}"
        if not force and any(stem.with_suffix(s).exists() for s in (".npy", ".png")):
            raise InputError(f"{str(stem)}.npy/.png exist; pass --force to overwrite them")
        written = dump_input(setup, dump, stem)
        out("dumped input %d: %s" % (dump, ", ".join(str(p) for p in written)))
    if output is not None:
        data["model"] = {"path": setup.classifier.info.path, "sha256": setup.classifier.info.sha256}
        _write_json(data, output)
        if not quiet:
            typer.echo(f"wrote {output}", err=True)


def _print_header(setup, result, out) -> None:
    p, items = setup.config.preprocess, setup.inputs
    source = {None: "no labels", "sub-folders": "labels from sub-folders"}.get(items.label_source,
                                                                             f"labels from {items.label_source}")
    out(f"model      {setup.classifier.info.path} (output {setup.classifier.output.name!r} read as "
        f"{result.output_kind}; {result.k} classes" + (f", last op {setup.output_op}" if setup.output_op else "") + ")")
    out(f"inputs     {len(result.records)} from {items.source} ({source})"
        + (f"; {len(result.skipped)} skipped" if result.skipped else ""))
    resize = p.resize + (f" to {p.resize_to}" if p.resize_to else "")
    out(f"preprocess size {list(p.size) if p.size else 'per image'}, resize {resize} ({p.interpolation}), "
        f"crop {p.crop}, channels {p.channels}, layout {p.layout}, mean {list(p.mean)}, std {list(p.std)}")
    for line in mapping_lines(result.mapping):
        out(line)


def mapping_lines(mapping) -> list[str]:
    """'classes    folder 'cat' -> 0 (cat), ...' lines, a few mappings per line."""
    shown = [f"{m['folder']!r} -> {m['class']}" + (f" ({m['name']})" if m["name"] is not None else "")
             for m in mapping]
    return [f"{'classes' if i == 0 else '':<10} " + ", ".join(shown[i:i + 6]) for i in range(0, len(shown), 6)]


def _print_records(result, show: int, out) -> None:
    if not show:
        return
    name = lambda c: f"{c}" + (f" {result.classes[c]}" if result.classes and c < len(result.classes) else "")  # noqa: E731
    out(f"{'index':>6}  {'input':<28} {'label':<14} {'mark':<5} top classes (score)")
    for r in result.records[:show]:
        where = Path(r.input).name if r.input else "-"
        where = where if len(where) <= 28 else "..." + where[-25:]
        label = "-" if r.label is None else name(r.label)
        mark = "" if r.correct is None else ("ok" if r.correct else "WRONG")
        tops = ", ".join(f"{name(t.cls)} {t.score:.3f}" for t in r.top)
        out(f"{r.index:>6}  {where:<28} {label[:14]:<14} {mark:<5} {tops}")
    if len(result.records) > show:
        out(f"{'':>6}  ... {len(result.records) - show} more (all in -o FILE.json; --show N lists more)")


def _print_totals(result, out) -> None:
    acc = result.clean_accuracy
    labelled = sum(r.label is not None for r in result.records)
    out("clean accuracy " + (f"{acc:.3f} ({sum(bool(r.correct) for r in result.records)} of {labelled} "
                             "labelled inputs, no noise)" if acc is not None else "unknown (no labels)"))
    pred, lab = result.predicted_counts(), result.label_counts()
    cls = sorted(set(pred) | set(lab))
    name = lambda c: f"{c}" + (f" ({result.classes[c]})" if result.classes and c < len(result.classes) else "")  # noqa: E731
    parts = [f"{name(c)}: {pred.get(c, 0)}" + (f"/{lab.get(c, 0)}" if lab else "") for c in cls]
    out("per class  predicted" + ("/labelled" if lab else "") + ": " + ", ".join(parts))


def _write_json(data: dict, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise InputError(f"cannot write {str(path)!r} ({exc.strerror or type(exc).__name__})") from None
