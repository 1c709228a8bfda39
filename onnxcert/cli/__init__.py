"""The command line. ``app`` holds every command; ``main`` is the console script.

One module per command family, each importing only ``cli.options`` (never each other):
``scores`` (certify-scores), ``run``, ``check``, ``inspect``, ``results`` (summary, plot, gate). Heavy
imports (SciPy, onnxruntime, matplotlib) happen inside the commands, so ``--help`` is fast.
"""

from __future__ import annotations

from . import check, inspect, results, run, scores  # noqa: F401  (each registers its commands on app)
from .options import app

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point. The arguments as typed go down to the commands, which record
    them in their reports (``options.command_line``)."""
    import sys

    app(obj={"argv": sys.argv[1:]})

