"""``python -m exporters`` (from the repository root): export a torch
classifier to ONNX with onnxcert metadata.

    python -m exporters generic --module my_models.py --factory Net --checkpoint net.pt \\
        --input-shape 3,32,32 --mean 0.49,0.48,0.45 --std 0.25,0.24,0.26 --sigma 0.25 -o net.onnx
    python -m exporters cohen models/cifar10/resnet110/noise_0.25/checkpoint.pth.tar -o r110.onnx

Errors the user can fix print one line and exit 1 (2 for bad usage); no traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence


def _floats(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}")
    return values


def _shape(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 3 or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected C,H,W (three positive integers), got {text!r}")
    return values


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc.msg}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", type=Path, required=True, help="the .onnx file to write")
    p.add_argument("--force", action="store_true", help="overwrite an existing output file")
    p.add_argument("--sigma", type=float, help="noise level the model was trained with, in [0, 1] "
                   "pixel units; stored as onnxcert's default --sigma")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default: 17)")
    p.add_argument("--atol", type=float, default=1e-4, help="parity: absolute tolerance (default: 1e-4)")
    p.add_argument("--rtol", type=float, default=1e-3, help="parity: relative tolerance (default: 1e-3)")
    p.add_argument("--parity-batch", type=int, default=4, help="parity: random noisy images compared (default: 4)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m exporters",
        description="Export a torch classifier to ONNX with onnxcert metadata. The file is written "
        "only if onnxruntime reproduces torch on random noisy inputs within atol + rtol * |torch|.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{generic,cohen}")

    g = sub.add_parser("generic", help="any model: module path + class/factory + checkpoint",
                       description="Build MODULE.FACTORY(**KWARGS), load CHECKPOINT (torch.load with "
                       "weights_only=True) and export it.")
    g.add_argument("--module", required=True, help="dotted module path (pkg.models) or a .py file")
    g.add_argument("--factory", required=True, help="class or function in MODULE that builds the model")
    g.add_argument("--kwargs", type=_json_object, default={}, help="JSON object of keyword arguments for FACTORY")
    g.add_argument("--checkpoint", type=Path, help="state_dict file (or a dict holding one); omit to "
                   "export the factory's own weights")
    g.add_argument("--state-dict-key", help="key of the state_dict inside the checkpoint "
                   "(default: the checkpoint itself, or 'state_dict', 'model_state_dict', 'model')")
    g.add_argument("--strip-prefix", action="append", default=[], metavar="PREFIX",
                   help="remove PREFIX from every checkpoint key (repeatable); a shared 'module.' is always removed")
    g.add_argument("--input-shape", type=_shape, required=True, metavar="C,H,W", help="one input image, e.g. 3,32,32")
    g.add_argument("--channels", choices=("RGB", "BGR", "L"), default="RGB", help="channel order (default: RGB)")
    g.add_argument("--mean", type=_floats, default=[0.0], help="normalization mean in [0, 1] units (default: 0)")
    g.add_argument("--std", type=_floats, default=[1.0], help="normalization std in [0, 1] units (default: 1)")
    g.add_argument("--fold-normalization", action="store_true",
                   help="put (x - mean) / std into the graph; the metadata then says mean 0, std 1")
    g.add_argument("--resize", choices=("exact", "shorter", "none"), default="exact", help="(default: exact)")
    g.add_argument("--resize-to", type=int, help="shorter side before the crop, for --resize shorter")
    g.add_argument("--crop", choices=("center", "none"), default="none", help="(default: none)")
    classes = g.add_mutually_exclusive_group()
    classes.add_argument("--classes", help="comma-separated class names, in output order")
    classes.add_argument("--classes-file", type=Path, help="text file with one class name per line")
    g.add_argument("--output-kind", choices=("logits", "probabilities"), default="logits", help="(default: logits)")
    g.add_argument("--input-name", default="input", help="graph input name (default: input)")
    g.add_argument("--output-name", default="logits", help="graph output name (default: logits)")
    _common(g)

    c = sub.add_parser("cohen", help="Cohen et al. (2019) CIFAR-10 ResNet-110 / ImageNet ResNet-50",
                       description="Export a checkpoint of Cohen et al.'s smoothing models "
                       "({'arch', 'state_dict'}) with its preprocessing and classes.")
    c.add_argument("checkpoint", type=Path, help="e.g. models/cifar10/resnet110/noise_0.25/checkpoint.pth.tar")
    c.add_argument("--arch", choices=("cifar_resnet20", "cifar_resnet110", "resnet50"),
                   help="default: the checkpoint's 'arch'")
    c.add_argument("--no-fold-normalization", action="store_true",
                   help="export the bare network; the metadata then carries mean and std")
    _common(c)
    return parser


def _classes(args: argparse.Namespace) -> list[str] | None:
    if args.classes is not None:
        return [c.strip() for c in args.classes.split(",") if c.strip()]
    if args.classes_file is not None:
        from .errors import ExportError

        if not args.classes_file.is_file():
            raise ExportError(f"classes file {str(args.classes_file)!r} does not exist")
        return [line.strip() for line in args.classes_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    return None


def run(args: argparse.Namespace):
    from .cohen import export_cohen
    from .errors import ExportError
    from .generic import export_checkpoint

    if args.output.exists() and not args.force:
        raise ExportError(f"{str(args.output)!r} exists; pass --force to overwrite it")
    common = dict(sigma=args.sigma, opset=args.opset, atol=args.atol, rtol=args.rtol,
                  parity_batch=args.parity_batch)
    if args.command == "cohen":
        return export_cohen(args.checkpoint, args.output, arch=args.arch,
                            fold_normalization=not args.no_fold_normalization, **common)
    return export_checkpoint(
        args.module, args.factory, args.checkpoint, args.output, kwargs=args.kwargs,
        state_dict_key=args.state_dict_key, strip=args.strip_prefix, input_shape=args.input_shape,
        channels=args.channels, mean=args.mean, std=args.std, resize=args.resize,
        resize_to=args.resize_to, crop=args.crop, classes=_classes(args), output_kind=args.output_kind,
        fold_normalization=args.fold_normalization, input_name=args.input_name,
        output_name=args.output_name, **common)


def main(argv: Sequence[str] | None = None) -> int:
    from . import require_torch
    from .errors import ExportError

    args = build_parser().parse_args(argv)
    try:
        require_torch()
    except ImportError as exc:
        print(f"exporters: error: {exc}", file=sys.stderr)
        return 2
    try:
        result = run(args)
    except ExportError as exc:
        print(f"exporters: error: {exc}", file=sys.stderr)
        return 1
    p = result.parity
    print(f"wrote {result.path} (opset {result.opset}, {result.num_classes} classes, input "
          f"{result.input_name!r} -> {result.output_name!r}); parity on {p.batch} noisy inputs: "
          f"max |diff| {p.max_abs_diff:.2g} <= {p.atol:g} + {p.rtol:g} * |torch|")
    return 0


if __name__ == "__main__":
    sys.exit(main())
