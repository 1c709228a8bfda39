"""Shared test setup: a private cache for calibrated bands, so tests never depend on ~/.cache, and
a small image folder from the sample model's test set."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_IMAGES = ROOT / "sample_models" / "digits_test"
if str(ROOT) not in sys.path:  # the repository's exporters/ (not installed) for test_exporters
    sys.path.insert(0, str(ROOT))


@pytest.fixture(autouse=True, scope="session")
def _private_band_cache(tmp_path_factory):
    old = os.environ.get("ONNXCERT_CACHE_DIR")
    os.environ["ONNXCERT_CACHE_DIR"] = str(tmp_path_factory.mktemp("onnxcert-cache"))
    yield
    if old is None:
        os.environ.pop("ONNXCERT_CACHE_DIR", None)
    else:
        os.environ["ONNXCERT_CACHE_DIR"] = old


@pytest.fixture(scope="module")
def digits12(tmp_path_factory):
    """12 of the sample model's test images, spread over the classes, in label sub-folders."""
    root = tmp_path_factory.mktemp("digits12")
    for f in sorted(SAMPLE_IMAGES.rglob("*.png"))[::21][:12]:
        (root / f.parent.name).mkdir(exist_ok=True)
        shutil.copy(f, root / f.parent.name / f.name)
    return root


@pytest.fixture(params=["compiled", "numpy"])
def stats_kernel(request, monkeypatch):
    """Runs a statistics test on both paths: the compiled pools, their evaluation and the
    count-space sums (``onnxcert._kernels.pool_moments``, ``pools``, ``group_sums``), and NumPy
    (``confidence.STATS_KERNEL`` off)."""
    from onnxcert.stats import confidence

    built = confidence._kernels is not None and all(hasattr(confidence._kernels, f) for f in ("pools", "group_sums", "pool_moments"))
    if request.param == "compiled" and not built:
        pytest.skip("onnxcert._kernels is not built")
    monkeypatch.setattr(confidence, "STATS_KERNEL", request.param == "compiled")
    return request.param
