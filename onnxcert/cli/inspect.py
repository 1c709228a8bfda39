"""`onnxcert inspect` (Typer code only)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import ModelError
from .options import (ClassesOpt, ConfigOpt, InputName, OutputName, PreprocessFrom, app, handle_errors,
                      model_layer_flags)


@app.command("inspect")
@handle_errors
def inspect_cmd(
    model: Annotated[Path, typer.Argument(help="The ONNX model to describe.")],
    config: ConfigOpt = None, input_name: InputName = None, output_name: OutputName = None,
    classes: ClassesOpt = None, preprocess_from: PreprocessFrom = None,
) -> None:
    """Show the model's inputs, outputs, opset and metadata, and the preprocessing onnxcert would use."""
    from ..config import cli_layer, load_yaml, merge
    from ..model_info import describe_model, select_input, select_output
    from ..pipeline import resolve_model_config

    info = describe_model(model)
    file = load_yaml(config) if config else {}
    cli = [model_layer_flags(classes, preprocess_from), cli_layer(input_name=input_name, output_name=output_name)]
    merged = merge(file, *cli)
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
    cfg = resolve_model_config(info, cli=cli, file=file, require_sigma=False)
    p, s, m = cfg.preprocess, cfg.settings, cfg.model
    out("preprocessing (model input shape < model metadata < config file < flags):")
    out(f"  size {list(p.size) if p.size else 'per image'}, resize {p.resize}"
        + (f" (shorter side to {p.resize_to}, longer side {p.resize_round}ed)" if p.resize == "shorter" and p.resize_to
           else f" (to {_hw(p.resize_to)} before the crop)" if p.resize == "exact" and p.resize_to else "")
        + (f" with {p.interpolation}" if p.resize != "none" else "")
        + f", crop {p.crop}" + (f" (offsets {p.crop_offset}ed)" if p.crop == "center" else "")
        + f", channels {p.channels}, layout {p.layout}")
    out(f"  mean {list(p.mean)}, std {list(p.std)}; the model receives (x + noise - mean) / std, x in [0, 1]")
    out(f"  output kind {m.output_kind}" + (f"; {len(m.classes)} class names" if m.classes else ""))
    sigma = "not set (pass --sigma or set smoothing.sigma)" if s.sigma is None else f"{s.sigma:g}"
    out(f"smoothing  sigma {sigma}, alpha {s.alpha:g}, n0 {s.n0}, n {s.n}, seed {s.seed}")
    try:
        from ..runtime import import_ort

        out(f"providers  {', '.join(import_ort().get_available_providers())}")
    except Exception:  # onnxruntime missing: inspect still works with onnx alone
        out("providers  onnxruntime is not installed")


def _hw(value) -> str:
    return str(list(value)) if isinstance(value, tuple) else f"[{value}, {value}]"


def _try(fn, *args):
    """The chosen tensor, or the reason none can be chosen (as a string)."""
    try:
        return fn(*args)
    except ModelError as exc:
        return str(exc)

