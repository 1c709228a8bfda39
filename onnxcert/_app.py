"""The Typer application object and the CLI plumbing shared by every command module."""

from __future__ import annotations

import functools
import logging
import sys
from typing import Callable

import typer

from .errors import ConfigError, OnnxCertError

app = typer.Typer(
    name="onnxcert",
    help="Certified confidence for ONNX image classifiers by randomized smoothing "
    "(Cohen et al. 2019; Kumar et al. 2020). Noise is added in [0, 1] pixel space, after "
    "resize/crop and before mean/std normalization; radii are L2 norms in those units.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def fail(message: str, code: int = 1) -> None:
    """Print one line to stderr and exit with ``code``."""
    typer.echo(f"onnxcert: error: {message}", err=True)
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
    level = logging.WARNING if quiet else (logging.DEBUG if verbose else logging.INFO)
    log = logging.getLogger("onnxcert")
    log.setLevel(level)
    if not log.handlers:
        h = _StderrHandler()
        h.setFormatter(logging.Formatter("onnxcert: %(message)s"))
        log.addHandler(h)
    log.propagate = False


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


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", help="Print the version and exit."),
) -> None:
    """Certified confidence for ONNX image classifiers by randomized smoothing."""
    if version:
        from . import __version__

        typer.echo(f"onnxcert {__version__}")
        raise typer.Exit(0)
