"""The committed sample models (sample_models/, written by sample_models/train.py) and their test
digits: metadata, accuracy, end-to-end certification, and onnxcert working without torch."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from PIL import Image
from typer.testing import CliRunner

from onnxcert.cli import app
from onnxcert.config import METADATA_KEYS, build_config, load_yaml, metadata_layer

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_models"
TEST_DIR = SAMPLES / "digits_test"
MODELS = {0.25: SAMPLES / "digits_sigma0.25.onnx", 0.5: SAMPLES / "digits_sigma0.50.onnx"}
CONFIGS = {0.25: ROOT / "configs" / "sample_digits_sigma0.25.yaml",
           0.5: ROOT / "configs" / "sample_digits_sigma0.50.yaml"}
METRICS = json.loads((SAMPLES / "metrics.json").read_text())
# Floors, a few points under what train.py measured on the same images (metrics.json, README):
# clean 0.988 / 0.964, under noise 0.957 / 0.778.
FLOORS = {0.25: {"clean": 0.95, "noisy": 0.92}, 0.5: {"clean": 0.93, "noisy": 0.73}}


def load_pngs() -> tuple[np.ndarray, np.ndarray]:
    files = sorted(TEST_DIR.glob("*/*.png"))
    x = np.stack([np.asarray(Image.open(f), dtype=np.float32) / 255.0 for f in files])[:, None]
    return x, np.asarray([int(f.parent.name) for f in files])


def session(sigma: float) -> ort.InferenceSession:
    return ort.InferenceSession(str(MODELS[sigma]), providers=["CPUExecutionProvider"])


def logits(sess: ort.InferenceSession, x: np.ndarray) -> np.ndarray:
    """The model's input is (x - 0.5) / 0.5, as its metadata says."""
    return sess.run(None, {"input": ((x - 0.5) / 0.5).astype(np.float32)})[0]


def mean_radius(report: dict, measure: str, method: str) -> np.ndarray:
    """Mean certified radius per threshold; an uncertified input (radius null) counts as 0."""
    radii = [[0.0 if r is None else float(r) for r in rec["confidence"][measure][method]["radius"]]
             for rec in report["records"]]
    return np.asarray(radii).mean(axis=0)


# ---------------------------------------------------------------- the committed files


def test_committed_test_digits():
    files = sorted(TEST_DIR.rglob("*"))
    pngs = [f for f in files if f.is_file()]
    assert len(pngs) == METRICS["data"]["test"] == 250 and all(f.suffix == ".png" for f in pngs)
    assert sorted({f.parent.name for f in pngs}) == [str(i) for i in range(10)]
    for f in pngs[::25]:
        img = Image.open(f)
        assert (img.mode, img.size) == ("L", (8, 8))
    counts = np.bincount([int(f.parent.name) for f in pngs])
    assert counts.min() >= 24  # stratified: 25 per digit, +-1
    total = sum(f.stat().st_size for f in pngs) + sum(p.stat().st_size for p in MODELS.values())
    assert total < 1_000_000


@pytest.mark.parametrize("sigma", [0.25, 0.5])
def test_sample_model_metadata_needs_no_config(sigma):
    props = {p.key: p.value for p in onnx.load(str(MODELS[sigma])).metadata_props}
    model = json.loads(props[METADATA_KEYS["model"]])
    pre = json.loads(props[METADATA_KEYS["preprocess"]])
    assert model == {"input": "input", "output": "logits", "output_kind": "logits",
                     "classes": [str(i) for i in range(10)]}
    assert (pre["size"], pre["channels"], pre["layout"], pre["resize"]) == ([8, 8], "L", "NCHW", "exact")
    assert json.loads(props[METADATA_KEYS["smoothing"]]) == {"sigma": sigma}
    cfg = build_config(metadata_layer(props))  # no sigma or config from anywhere else
    assert cfg.settings.sigma == sigma and cfg.preprocess.mean == (0.5,) and cfg.preprocess.std == (0.5,)
    sess = session(sigma)
    assert [(i.name, i.shape) for i in sess.get_inputs()] == [("input", ["batch", 1, 8, 8])]
    assert [(o.name, o.shape) for o in sess.get_outputs()] == [("logits", ["batch", 10])]


@pytest.mark.parametrize("sigma", [0.25, 0.5])
def test_sample_configs_agree_with_the_model_metadata(sigma):
    props = {p.key: p.value for p in onnx.load(str(MODELS[sigma])).metadata_props}
    from_file, from_model = build_config(load_yaml(CONFIGS[sigma])), build_config(metadata_layer(props))
    assert from_file.preprocess == from_model.preprocess
    assert from_file.model == from_model.model
    assert from_file.settings.sigma == sigma and from_file.settings.n == 10_000


@pytest.mark.parametrize("sigma", [0.25, 0.5])
def test_every_config_key_is_commented(sigma):
    lines = CONFIGS[sigma].read_text().splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^\s*[a-z_]+:", line) and line.split(":", 1)[1].strip():  # a key with a value
            assert "#" in line or lines[i - 1].lstrip().startswith("#"), f"uncommented key: {line!r}"


@pytest.mark.parametrize("sigma", [0.25, 0.5])
def test_accuracy_on_the_committed_pngs(sigma):
    """Clean accuracy reproduces metrics.json to within one image (float summation order may
    differ between machines); accuracy under noise (20 seeded draws) stays above the floor."""
    x, y = load_pngs()
    sess = session(sigma)
    clean = np.mean(logits(sess, x).argmax(1) == y)
    assert abs(clean - METRICS["models"][MODELS[sigma].name]["accuracy"]["clean"]) <= 1 / len(y)
    assert clean >= FLOORS[sigma]["clean"]
    rng = np.random.default_rng(0)
    noisy = np.mean([logits(sess, x + sigma * rng.standard_normal(x.shape, dtype=np.float32)).argmax(1) == y
                     for _ in range(20)])
    assert noisy >= FLOORS[sigma]["noisy"]
    assert noisy < clean  # the noise is real: it costs accuracy


# ---------------------------------------------------------------- certificates


def onnxruntime_scores(sigma: float, n: int, n0: int, seed: int = 0):
    """Softmax-ready logits of the noisy test digits: selection [B, n0, 10], estimation [B, n, 10]."""
    x, y = load_pngs()
    sess, rng = session(sigma), np.random.default_rng(seed)

    def draw(count):
        noise = rng.standard_normal((len(x), count, 1, 8, 8), dtype=np.float32)
        batch = (x[:, None] + sigma * noise).reshape(-1, 1, 8, 8)
        return logits(sess, batch).reshape(len(x), count, 10)

    selection = draw(n0)
    return selection, draw(n), y


@pytest.mark.parametrize("sigma", [0.25, 0.5])
def test_cdf_methods_certify_larger_mean_radius_than_naive(tmp_path, sigma):
    """Kumar et al. 2020's headline, on the committed digits: with the same samples (n = 1000,
    alpha = 0.001), the CDF-based certificates (Theorem 2) give a mean certified radius at least
    that of the naive one (Theorem 1), for both measures and every threshold; strictly larger on
    average. Scores come from onnxruntime here and go through `onnxcert certify-scores`."""
    selection, estimation, labels = onnxruntime_scores(sigma, n=1000, n0=100)
    np.savez(tmp_path / "scores.npz", estimation=estimation, selection=selection, labels=labels)
    out = tmp_path / "report.json"
    result = CliRunner().invoke(app, ["certify-scores", str(tmp_path / "scores.npz"), "--sigma", str(sigma),
                                      "--output-kind", "logits", "-o", str(out), "-q"])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["settings"]["n"] == 1000 and len(report["records"]) == 250
    for measure in ("score", "margin"):
        naive = mean_radius(report, measure, "naive")
        for method in ("cdf-dkw", "cdf-bj"):
            cdf = mean_radius(report, measure, method)
            assert np.all(cdf >= naive), (measure, method, cdf, naive)
            assert cdf.sum() > naive.sum()


def test_onnxcert_run_end_to_end_on_the_sample_model(tmp_path):
    """`onnxcert run MODEL FOLDER` with nothing but the model's metadata (small n for speed)."""
    out = tmp_path / "report.json"
    result = CliRunner().invoke(app, ["run", str(MODELS[0.25]), str(TEST_DIR), "--n", "1000",
                                      "-o", str(out), "-q"])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["settings"]["sigma"] == 0.25 and report["settings"]["n"] == 1000
    records = report["records"]
    assert len(records) == 250
    assert all(r["label"] == int(Path(r["input"]).parent.name) for r in records)
    accuracy = np.mean([r["correct"] for r in records])
    assert accuracy >= FLOORS[0.25]["clean"]
    certified = np.mean([r["correct"] and r["label_certificate"]["radius"] is not None
                         and r["label_certificate"]["radius"] >= 0.25 for r in records])
    assert certified >= 0.8  # README: 0.90 at n = 10000
    for measure in ("score", "margin"):
        naive = mean_radius(report, measure, "naive")
        assert np.all(mean_radius(report, measure, "cdf-dkw") >= naive)
        assert np.all(mean_radius(report, measure, "cdf-bj") >= naive)


# ---------------------------------------------------------------- without torch

BLOCK_TORCH = textwrap.dedent("""
    import importlib.abc
    import sys

    class _NoTorch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError(f"{name} is blocked in this test environment")
            return None

    sys.meta_path.insert(0, _NoTorch())
""")

CHECK_AND_RUN = textwrap.dedent("""
    import sys
    try:
        import torch
    except ImportError:
        pass
    else:
        sys.exit("the torch blocker did not work")
    from onnxcert.cli import main
    sys.argv = ["onnxcert", *sys.argv[1:]]
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code
    loaded = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
    print("torch modules loaded:", loaded, file=sys.stderr)
    sys.exit(code if not loaded else 99)
""")


def without_torch(tmp_path: Path, *args: str, module: str | None = None) -> subprocess.CompletedProcess:
    """Run Python with a sitecustomize that makes every `import torch` fail."""
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(BLOCK_TORCH)
    (site / "check_and_run.py").write_text(CHECK_AND_RUN)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])}
    cmd = [sys.executable, "-m", module, *args] if module else [sys.executable, str(site / "check_and_run.py"), *args]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_certify_scores_works_where_torch_cannot_be_imported(tmp_path):
    rng = np.random.default_rng(0)
    est, sel = rng.dirichlet([20, 1, 1], size=(2, 1000)), rng.dirichlet([20, 1, 1], size=(2, 50))
    np.savez(tmp_path / "s.npz", estimation=est, selection=sel, labels=np.array([0, 1]))
    proc = without_torch(tmp_path, "certify-scores", str(tmp_path / "s.npz"), "--sigma", "0.25",
                         "-o", str(tmp_path / "r.json"), "-q")
    assert proc.returncode == 0, proc.stderr
    assert "torch modules loaded: []" in proc.stderr
    assert [r["correct"] for r in json.loads((tmp_path / "r.json").read_text())["records"]] == [True, False]


def test_run_works_where_torch_cannot_be_imported(tmp_path):
    proc = without_torch(tmp_path, "run", str(MODELS[0.5]), str(TEST_DIR / "7"), "--n", "1000", "--n0", "50",
                         "-o", str(tmp_path / "r.json"), "-q")
    assert proc.returncode == 0, proc.stderr
    assert "torch modules loaded: []" in proc.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert len(report["records"]) == 25 and report["settings"]["sigma"] == 0.5  # the folder of 7s
    assert np.mean([r["prediction"] == 7 for r in report["records"]]) >= 0.8


def test_exporters_without_torch_print_the_install_hint(tmp_path):
    proc = without_torch(tmp_path, "cohen", "x.pth.tar", "-o", str(tmp_path / "x.onnx"), module="exporters")
    assert proc.returncode == 2
    assert proc.stderr.strip() == "exporters: error: the exporters need torch: pip install 'onnxcert[export]'"
