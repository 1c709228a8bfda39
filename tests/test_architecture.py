"""The arrows that must never exist (docs/architecture.md), read from the source with ``ast``, and
a fast start: ``import onnxcert``, ``onnxcert.errors``, ``--help`` and ``--version`` load no heavy
module. Every import counts, at module level or inside a function."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "onnxcert"
HEAVY = ("scipy.optimize", "scipy.signal", "scipy.stats", "onnxruntime", "matplotlib", "torch")


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path, root: Path, names: bool = True) -> set[str]:
    """Absolute names of every module ``path`` imports (``from a import b`` gives a and a.b;
    without ``names``, only a)."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            found.add(mod)
            if names:
                found.update(f"{mod}.{a.name}" for a in node.names)
    return found


def graph(root: Path) -> dict[str, set[str]]:
    return {module_name(p, root): imports_of(p, root) for p in sorted((root / "onnxcert").rglob("*.py"))}


def _in(name: str, *prefixes: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _command_module(name: str) -> bool:
    return _in(name, "onnxcert.cli") and name not in ("onnxcert.cli", "onnxcert.cli.options", "onnxcert.cli.__main__")


# (what the rule says, does it apply to this importer, is this import forbidden for it)
RULES = [
    ("stats is pure: it imports nothing of onnxcert outside stats (no runtime, pipeline, cli, config)"
     " but errors and the compiled leaf _kernels",
     lambda m: _in(m, "onnxcert.stats"),
     # (``from .. import _kernels`` also names the package itself, which is no arrow of its own)
     lambda i: _in(i, "onnxcert") and i != "onnxcert" and not _in(i, "onnxcert.stats", "onnxcert.errors", "onnxcert._kernels")),
    ("only onnxcert.runtime imports onnxruntime",
     lambda m: m != "onnxcert.runtime", lambda i: _in(i, "onnxruntime")),
    ("nothing in onnxcert imports torch (it lives in the repository's exporters/)",
     lambda m: True, lambda i: _in(i, "torch")),
    ("onnxcert never imports the exporters (torch stays optional)",
     lambda m: True, lambda i: _in(i, "exporters", "onnxcert.exporters")),
    ("only onnxcert.plot imports matplotlib",
     lambda m: m != "onnxcert.plot", lambda i: _in(i, "matplotlib")),
    ("command modules import cli.options, never each other",
     _command_module, lambda i: _in(i, "onnxcert.cli") and i != "onnxcert.cli" and not _in(i, "onnxcert.cli.options")),
    ("the CLI is the top: nothing below it imports onnxcert.cli",
     lambda m: not _in(m, "onnxcert.cli"), lambda i: _in(i, "onnxcert.cli")),
    ("reading results needs no model: reports never imports runtime, sampling, pipeline or the backends",
     lambda m: _in(m, "onnxcert.reports"),
     lambda i: _in(i, "onnxcert.runtime", "onnxcert.sampling", "onnxcert.pipeline", "onnxcert.fastpath",
                   "onnxcert.ray_backend", "onnxcert.model_info", "onnxruntime", "onnx")),
    ("config is below everything that uses it: no runtime, pipeline, sampling, reports or report",
     lambda m: m in ("onnxcert.config", "onnxcert.values", "onnxcert.errors", "onnxcert.files", "onnxcert.host"),
     lambda i: _in(i, "onnxcert.runtime", "onnxcert.pipeline", "onnxcert.sampling", "onnxcert.reports",
                   "onnxcert.report", "onnxcert.model_info", "onnxcert.gate")),
    ("describing a model needs onnx only: model_info never imports runtime or onnxruntime",
     lambda m: m == "onnxcert.model_info", lambda i: _in(i, "onnxcert.runtime", "onnxruntime")),
]


def violations(g: dict[str, set[str]]) -> list[str]:
    return sorted(f"{mod} imports {imp}: {rule}" for mod, imps in g.items() for imp in imps
                  for rule, applies, forbidden in RULES if applies(mod) and forbidden(imp))


def test_no_forbidden_arrow_exists():
    g = graph(ROOT)
    assert "onnxcert.stats.certify" in g and "onnxcert.cli.run" in g  # the walk sees the package
    assert violations(g) == []


def test_every_import_of_onnxcert_names_a_module_that_exists():
    """A lazy import inside a function fails only when it runs: catch a moved module here."""
    missing = []
    for p in sorted(PACKAGE.rglob("*.py")):
        for mod in imports_of(p, ROOT, names=False):
            if _in(mod, "onnxcert"):
                base = ROOT.joinpath(*mod.split("."))
                if not (base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()):
                    missing.append(f"{module_name(p, ROOT)} imports {mod}")
    assert missing == []


@pytest.mark.parametrize("where, line, rule", [
    ("onnxcert/stats/label.py", "from ..runtime import import_ort", "stats is pure"),
    ("onnxcert/stats/bands.py", "import onnxruntime", "only onnxcert.runtime imports onnxruntime"),
    ("onnxcert/reports/read.py", "def f():\n    import torch", "nothing in onnxcert imports torch"),
    ("onnxcert/cli/run.py", "from .results import summary_cmd", "command modules import cli.options"),
    ("onnxcert/pipeline.py", "from .cli.options import app", "the CLI is the top"),
    ("onnxcert/reports/metrics.py", "from .. import pipeline", "reading results needs no model"),
    ("onnxcert/config.py", "from .report import Record", "config is below everything"),
    ("onnxcert/api.py", "import exporters", "onnxcert never imports the exporters"),
])
def test_a_planted_bad_import_is_caught(tmp_path, where, line, rule):
    """The checker on a copy of the package with one bad import added."""
    for p in PACKAGE.rglob("*.py"):
        dest = tmp_path / p.relative_to(ROOT)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(p.read_text(encoding="utf-8"), encoding="utf-8")
    target = tmp_path / where
    target.write_text(target.read_text(encoding="utf-8") + "\n" + line + "\n", encoding="utf-8")
    found = violations(graph(tmp_path))
    assert found and all(rule in f for f in found), found


def _loaded(code: str) -> list[str]:
    """Heavy modules in sys.modules after running ``code`` in a fresh interpreter."""
    probe = code + f"\nimport sys\nprint('HEAVY:' + ','.join(m for m in sys.modules if m.startswith({HEAVY!r})))"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("HEAVY:")]
    assert line, out.stderr
    return [m for m in line[-1][len("HEAVY:"):].split(",") if m]


@pytest.mark.parametrize("code", [
    "import onnxcert",
    "import onnxcert.errors",
    "from onnxcert import OnnxCertError, ConfigError",
    "import onnxcert.cli",
])
def test_a_light_import_loads_no_heavy_module(code):
    assert _loaded(code) == []


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["run", "--help"], ["summary", "--help"]])
def test_help_and_version_load_no_heavy_module(args):
    code = (f"import sys; sys.argv = {['onnxcert', *args]!r}\nfrom onnxcert.cli import main\n"
            "try:\n    main()\nexcept SystemExit as exc:\n    assert exc.code in (0, None), exc.code")
    assert _loaded(code) == []


def test_version_prints_the_version():
    from typer.testing import CliRunner

    import onnxcert
    from onnxcert.cli import app

    res = CliRunner().invoke(app, ["--version"])
    assert res.exit_code == 0 and res.output == f"onnxcert {onnxcert.__version__}\n"


def test_setup_logging_lets_records_reach_the_root_logger():
    """A handler on the root (an application's, pytest's caplog) sees onnxcert's records after any
    command ran in-process; ``propagate = False`` made tests depend on their order."""
    import logging

    from onnxcert.cli.options import setup_logging

    setup_logging(quiet=True)
    assert logging.getLogger("onnxcert").propagate is True
