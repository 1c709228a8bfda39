"""Any torch classifier: a module path, a class or factory name and a checkpoint -> ONNX."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch

from .checkpoint import extract_state_dict, load_checkpoint, load_weights, sha256, strip_common_prefixes, strip_prefix
from .errors import ExportError
from .onnx_export import ExportResult, export_model


def load_factory(module: str, name: str) -> Callable[..., torch.nn.Module]:
    """``name`` from ``module``: a dotted module path (``pkg.models``) or a ``.py`` file path."""
    if module.endswith(".py") or Path(module).is_file():
        path = Path(module)
        if not path.is_file():
            raise ExportError(f"module file {module!r} does not exist")
        spec = importlib.util.spec_from_file_location(f"_onnxcert_export_{path.stem}", path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod
        try:
            spec.loader.exec_module(mod)
        except Exception as exc:
            sys.modules.pop(spec.name, None)
            raise ExportError(f"importing {module!r} failed: {exc.__class__.__name__}: {exc}") from None
    else:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            raise ExportError(f"cannot import module {module!r} ({exc}); pass a dotted module "
                              "path on sys.path or a .py file") from None
    factory = getattr(mod, name, None)
    if factory is None or not callable(factory):
        options = sorted(n for n, v in vars(mod).items()
                         if callable(v) and not n.startswith("_") and getattr(v, "__module__", None) == mod.__name__)
        raise ExportError(f"{module!r} has no class or function {name!r} "
                          f"(defined there: {', '.join(options) or 'none'})")
    return factory


def build_model(module: str, name: str, kwargs: Mapping[str, Any] | None = None) -> torch.nn.Module:
    """Call the factory with ``kwargs``; the result must be a torch.nn.Module."""
    factory = load_factory(module, name)
    try:
        model = factory(**dict(kwargs or {}))
    except TypeError as exc:
        raise ExportError(f"{name}(**{dict(kwargs or {})!r}) failed: {exc}") from None
    if not isinstance(model, torch.nn.Module):
        raise ExportError(f"{name}(...) returned a {type(model).__name__}, not a torch.nn.Module")
    return model


def export_checkpoint(
    module: str,
    name: str,
    checkpoint: str | Path | None,
    output: str | Path,
    *,
    kwargs: Mapping[str, Any] | None = None,
    state_dict_key: str | None = None,
    strip: Sequence[str] = (),
    **export_options: Any,
) -> ExportResult:
    """Build ``module.name(**kwargs)``, load ``checkpoint`` into it and export it (see export_model).

    The checkpoint is read with ``torch.load(weights_only=True)``; its state_dict is taken from
    ``state_dict_key`` or the usual wrappers; a ``module.`` prefix shared by every key
    (DataParallel) is removed, then each prefix in ``strip``. Keys and shapes must then match.
    ``checkpoint=None`` exports the factory's own weights.
    """
    model = build_model(module, name, kwargs)
    provenance: dict[str, Any] = {"source": f"{module}:{name}", "kwargs": dict(kwargs or {})}
    if checkpoint is not None:
        state = extract_state_dict(load_checkpoint(checkpoint), state_dict_key)
        state = strip_common_prefixes(state)
        for prefix in strip:
            state = strip_prefix(state, prefix)
        load_weights(model, state)
        provenance["checkpoint"] = {"file": Path(checkpoint).name, "sha256": sha256(checkpoint)}
    return export_model(model, output, provenance=provenance, **export_options)
