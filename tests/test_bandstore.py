"""The cdf-bj table cache (onnxcert.bandstore): tables prove themselves or are refused.

Each planted table below would have inflated every radius had it been used; each must be refused
with a one-line warning and the band calibrated again (the result equals a fresh calibration).
"""

import json
import logging
import os
import subprocess
import sys

import numpy as np
import pytest

from onnxcert import bandstore
from onnxcert.stats import berk_jones as bj

N, ALPHA = 700, 0.002  # not shipped


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ONNXCERT_CACHE_DIR", str(tmp_path))
    bj.clear_bands()
    yield tmp_path
    bj.clear_bands()


def _table(**change):
    data = {"format": bandstore.FORMAT, "algorithm": bj.ALGORITHM, "n": N, "alpha": ALPHA,
            "scale": bj.calibrate(N, ALPHA).scale}
    data.update(change)
    return data


def _fresh_scale():
    return bj.calibrate(N, ALPHA).scale


def test_first_run_calibrates_and_caches_second_run_loads(cache, caplog, monkeypatch):
    caplog.set_level(logging.INFO, "onnxcert")
    lines = []
    first = bandstore.prepare_bands([(N, ALPHA), (N, ALPHA)], progress=lines.append)
    assert any("calibrating the cdf-bj band for n=700, alpha=0.002" in line for line in lines)
    assert bandstore.table_path(N, ALPHA).exists()
    bj.clear_bands()

    def no_calibration(*a, **k):
        raise AssertionError("calibrated although a valid table is cached")

    monkeypatch.setattr(bandstore, "calibrate", no_calibration)
    second = bandstore.prepare_bands([(N, ALPHA)])
    assert second[(N, ALPHA)].scale == first[(N, ALPHA)].scale
    assert bj.bj_band(N, ALPHA) is second[(N, ALPHA)]  # registered: the stats see it at once
    assert "ignoring" not in caplog.text


def test_shipped_band_needs_no_cache(cache, monkeypatch):
    monkeypatch.setattr(bandstore, "calibrate", lambda *a, **k: pytest.fail("calibrated a shipped band"))
    bands = bandstore.prepare_bands([(100_000, 0.001), (10_000, 0.001 / 5)])
    assert len(bands) == 2
    assert not list(cache.iterdir())


PLANTED = {
    # pointwise medians: every level 1/2, true crossing ~1
    "pointwise medians": lambda: _table(scale=0.5 / float(bj.level_weights(N, bj.rank_grid(N)).max())),
    "inflated scale (x1.5)": lambda: _table(scale=1.5 * _fresh_scale()),
    "deflated scale (x0.5)": lambda: _table(scale=0.5 * _fresh_scale()),
    "another algorithm": lambda: _table(algorithm="bj1-0123456789"),
    "another format": lambda: _table(format="onnxcert.bj-table/1"),
    "another n": lambda: _table(n=N + 1),
    "another alpha": lambda: _table(alpha=ALPHA * 2),
    "q inconsistent with 1 - g": lambda: _table(g=[0.5], q=[0.9]),
    "another rank grid": lambda: _table(ranks=[1, 2, 700]),
    "scale not a number": lambda: _table(scale="0.1"),
    "scale above one": lambda: _table(scale=2.0),
    "negative crossing claimed": lambda: _table(crossing=-1e-12),
}


@pytest.mark.parametrize("kind", list(PLANTED))
def test_planted_table_is_refused_and_recalibrated(cache, caplog, kind):
    path = bandstore.table_path(N, ALPHA)
    path.write_text(json.dumps(PLANTED[kind]()))
    caplog.set_level(logging.WARNING, "onnxcert")
    band = bandstore.prepare_bands([(N, ALPHA)])[(N, ALPHA)]
    warnings = [r.getMessage() for r in caplog.records if "ignoring the cached cdf-bj table" in r.getMessage()]
    assert len(warnings) == 1 and "\n" not in warnings[0]
    assert band.scale == _fresh_scale()
    assert band.crossing <= ALPHA
    # and the recalibrated table replaced the planted one
    assert json.loads(path.read_text())["scale"] == band.scale


@pytest.mark.parametrize("kind", ["old npz bytes", "not json", "huge", "directory", "fifo", "deep json"])
def test_unreadable_or_hostile_files_are_refused(cache, caplog, kind):
    path = bandstore.table_path(N, ALPHA)
    if kind == "old npz bytes":
        np.savez(path.with_suffix(".npz"), n=N, alpha=ALPHA, g=np.ones(3))
        os.replace(path.with_suffix(".npz"), path)
    elif kind == "not json":
        path.write_bytes(b"\xff\xfe not a table")
    elif kind == "huge":
        path.write_text(json.dumps(_table()) + " " * 10_000)
    elif kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        if not hasattr(os, "mkfifo"):
            pytest.skip("no FIFOs here")
        os.mkfifo(path)
    elif kind == "deep json":
        path.write_text("[" * 1500 + "]" * 1500)
    caplog.set_level(logging.WARNING, "onnxcert")
    band = bandstore.prepare_bands([(N, ALPHA)])[(N, ALPHA)]  # must not block on the FIFO
    assert "ignoring the cached cdf-bj table" in caplog.text
    assert band.scale == _fresh_scale()


def test_unwritable_cache_warns_and_still_gives_the_band(tmp_path, monkeypatch, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv("ONNXCERT_CACHE_DIR", str(blocker / "cache"))  # parent is a file
    bj.clear_bands()
    caplog.set_level(logging.WARNING, "onnxcert")
    band = bandstore.prepare_bands([(N, ALPHA)])[(N, ALPHA)]
    assert band.crossing <= ALPHA
    assert "could not cache the cdf-bj band" in caplog.text
    bj.clear_bands()


def test_cache_location_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("ONNXCERT_CACHE_DIR", str(tmp_path / "a"))
    assert bandstore.cache_dir() == tmp_path / "a"
    monkeypatch.delenv("ONNXCERT_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert bandstore.cache_dir() == tmp_path / "x" / "onnxcert"
    # the file name carries the algorithm: a changed algorithm never reads an old table
    assert bj.ALGORITHM in bandstore.table_path(N, ALPHA).name


def test_stats_do_no_io_and_import_no_heavy_scipy():
    import onnxcert.stats as stats_pkg
    from pathlib import Path

    for path in Path(stats_pkg.__file__).parent.glob("*.py"):
        text = path.read_text()
        for word in ("open(", "os.environ", "getenv", "np.load", "np.save", "read_text", "write_text"):
            assert word not in text, f"{path.name} uses {word}"
    code = ("import sys, onnxcert.bandstore, onnxcert.stats.berk_jones as b; b.bj_band(1000, 0.001); "
            "print(sorted(m for m in ('scipy.optimize', 'scipy.signal', 'scipy.stats') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_certify_scores_obtains_the_band_before_certifying(cache, monkeypatch):
    import onnxcert

    order = []
    real_prepare, real_bj = bandstore.prepare_bands, bj.bj_band
    monkeypatch.setattr(bandstore, "prepare_bands", lambda r, *a, **k: order.append(("prepare", list(r))) or real_prepare(r, *a, **k))
    monkeypatch.setattr(bj, "calibrate", lambda *a, **k: pytest.fail("calibrated while certifying"))
    rng = np.random.default_rng(0)
    est = rng.dirichlet([20, 1, 1], size=(2, N))
    sel = rng.dirichlet([20, 1, 1], size=(2, 50))
    onnxcert.certify_scores(est, sel, sigma=0.25, n=N, n0=50)  # n = 700: no shipped table
    assert order == [("prepare", [(N, 0.001)])]
