"""Without onnxruntime, `onnxcert run` prints the install hint (exit 2), and `certify-scores`,
which needs no model, still works."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BLOCK = textwrap.dedent("""
    import sys
    class _Block:
        def find_spec(self, name, path=None, target=None):
            if name == "onnxruntime" or name.startswith("onnxruntime."):
                raise ModuleNotFoundError("No module named 'onnxruntime' (blocked for a test)")
            return None
    sys.meta_path.insert(0, _Block())
""")


def without_onnxruntime(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCK)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), str(ROOT)]))
    cmd = [sys.executable, "-c", "from onnxcert.cli import main; main()", *args]
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def test_run_without_onnxruntime_prints_the_install_hint(tmp_path):
    model = ROOT / "sample_models" / "digits_sigma0.25.onnx"
    images = ROOT / "sample_models" / "digits_test"
    res = without_onnxruntime(tmp_path, "run", str(model), str(images), "--n", "100", "-o", "r.json")
    assert res.returncode == 2, res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("onnxcert: error:") and "pip install 'onnxcert[cpu]'" in lines[-1]
    assert "Traceback" not in res.stderr and not (tmp_path / "r.json").exists()


def test_certify_scores_needs_no_onnxruntime(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "s.npz", estimation=rng.dirichlet([9, 1], size=(1, 300)), selection=rng.dirichlet([9, 1], size=(1, 10)))
    res = without_onnxruntime(tmp_path, "certify-scores", "s.npz", "--sigma", "0.25", "-o", "r.json", "-q")
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "r.json").exists()
