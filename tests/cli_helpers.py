"""CLI helpers shared by the end-to-end tests: run a command in-process, get its one error line."""

from typer.testing import CliRunner

from onnxcert.cli import app


def cli(*args):
    """Invoke ``onnxcert ARGS`` through Typer's CliRunner; a traceback is always a failure."""
    res = CliRunner().invoke(app, [str(a) for a in args])
    assert "Traceback" not in res.output, res.output
    return res


def error_line(res) -> str:
    """The single ``onnxcert: error:`` line of a failed command."""
    lines = [ln for ln in res.output.splitlines() if ln.startswith("onnxcert: error:")]
    assert len(lines) == 1, res.output
    return lines[0]
