"""Checkpoints: read with ``torch.load(weights_only=True)``, unwrap, strip prefixes, load strictly."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch

from onnxcert.files import sha256_file as sha256  # noqa: F401  (re-exported: the one file-hashing helper)

from .errors import CheckpointError

STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model")


def load_checkpoint(path: str | Path) -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)``, with one-line errors.

    ``weights_only=True`` refuses to run code stored in the file, so a checkpoint that pickled
    whole modules or custom classes is rejected: save ``model.state_dict()`` instead.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise CheckpointError(
            f"checkpoint {str(path)!r} cannot be loaded with weights_only=True ({first[:200]}); "
            "save model.state_dict() (tensors only) and export that") from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {str(path)!r} is not a readable torch file "
                              f"({exc.__class__.__name__}: {str(exc)[:200]})") from None


def extract_state_dict(obj: Any, key: str | None = None) -> dict[str, torch.Tensor]:
    """The tensor mapping inside a checkpoint: ``obj[key]``, the first of STATE_DICT_KEYS, or obj."""
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"checkpoint holds a {type(obj).__name__}, expected a dict of tensors")
    if key is not None:
        if key not in obj:
            raise CheckpointError(f"checkpoint has no key {key!r} (found: {_names(obj)})")
        obj = obj[key]
    elif not _is_tensor_dict(obj):
        found = [k for k in STATE_DICT_KEYS if k in obj and isinstance(obj[k], Mapping)]
        if not found:
            raise CheckpointError(f"checkpoint is neither a state_dict nor holds one under "
                                  f"{', '.join(STATE_DICT_KEYS)} (found: {_names(obj)})")
        obj = obj[found[0]]
    if not _is_tensor_dict(obj):
        raise CheckpointError("the checkpoint's state_dict holds values other than tensors")
    return dict(obj)


def strip_prefix(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Remove ``prefix`` from every key; keys without it are an error (a mixed checkpoint)."""
    missing = [k for k in state if not k.startswith(prefix)]
    if missing:
        raise CheckpointError(f"key {missing[0]!r} lacks the prefix {prefix!r}")
    return {k[len(prefix):]: v for k, v in state.items()}


def strip_common_prefixes(state: Mapping[str, torch.Tensor],
                          prefixes: Iterable[str] = ("module.",)) -> dict[str, torch.Tensor]:
    """Repeatedly strip any of ``prefixes`` that every key shares (``module.`` from DataParallel)."""
    state = dict(state)
    changed = True
    while changed and state:
        changed = False
        for p in prefixes:
            if all(k.startswith(p) for k in state):
                state = {k[len(p):]: v for k, v in state.items()}
                changed = True
    return state


def load_weights(model: torch.nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Load ``state`` into ``model`` strictly: every key and shape must match.

    The only tolerated gap is a missing BatchNorm ``num_batches_tracked`` counter (checkpoints
    from torch < 0.4.1 lack it; it does not affect inference).
    """
    own = model.state_dict()
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (first: {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (first: {', '.join(unexpected[:3])})")
        raise CheckpointError("checkpoint keys do not fit the model: " + "; ".join(parts))
    for k, v in state.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise CheckpointError(f"checkpoint tensor {k!r} has shape {list(v.shape)}, "
                                  f"the model expects {list(own[k].shape)}")
    model.load_state_dict(state, strict=False)




def _is_tensor_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def _names(obj: Mapping) -> str:
    keys = [str(k) for k in list(obj)[:8]]
    return ", ".join(keys) + (", ..." if len(obj) > 8 else "") if keys else "nothing"
