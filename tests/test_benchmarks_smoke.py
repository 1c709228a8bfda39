"""Every benchmark script runs in its quick mode and prints its table (issue 7).

Only that they run: never how fast, so these tests do not depend on the machine. Each script runs
in a subprocess, as the README shows it, with the torch exports written to a temporary folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"

pytest.importorskip("onnxruntime")


def run(script: str, *args: str, tmp_path: Path, timeout: int = 300) -> str:
    env = dict(os.environ, ONNXCERT_BENCH_DIR=str(tmp_path / "bench-models"), PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, str(BENCH / script), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def table_rows(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("|") and not line.startswith("|-")]


@pytest.mark.parametrize("script, needle", [
    ("bench_pipeline.py", "sampling / bare"),
    ("bench_scaling.py", "prefetch / bare"),
    ("bench_certifier.py", "statistics % of total"),
    ("bench_memory.py", "total bytes/sample"),
    ("bench_profile.py", "forward pass"),
    ("bench_noise.py", "onnxcert ns/value"),
    ("bench_sequential.py", "samples / n"),
    ("bench_lanes.py", "lanes / one call"),
])
def test_quick_benchmark_prints_its_table(script, needle, tmp_path):
    out = run(script, "--quick", tmp_path=tmp_path)
    assert out.startswith("machine: ")
    rows = table_rows(out)
    assert needle in rows[0] and len(rows) >= 2


@pytest.mark.torch
def test_quick_peer_benchmark_prints_its_table(tmp_path):
    pytest.importorskip("torch")
    out = run("bench_peers.py", "--quick", tmp_path=tmp_path)
    rows = table_rows(out)
    assert "onnxcert / torch" in rows[0] and "CIFAR ResNet-20" in rows[1]
    assert not any(p.suffix == ".onnx" for p in ROOT.rglob("*random*.onnx"))  # exports stay out of the repo


def test_the_kernel_ab_benchmark_runs_against_a_build(tmp_path):
    # against this very build: it only has to load another .so and print its table
    kernels = pytest.importorskip("onnxcert._kernels", reason="onnxcert._kernels is not built")
    out = run("bench_kernel_ab.py", kernels.__file__, "--repeat", "2", tmp_path=tmp_path)
    rows = table_rows(out)
    assert out.startswith("machine: ") and "paired this / other" in rows[0] and len(rows) == 4


def test_statistics_benchmarks_still_run(tmp_path):
    assert "ms" in run("bench_stats.py", "--n", "2000", "--repeat", "1", tmp_path=tmp_path)
    assert "cdf-bj" in run("bench_bands.py", "--n", "2000", tmp_path=tmp_path)
    out = run("bench_calibration.py", "--quick", tmp_path=tmp_path)
    assert "crossing evaluations" in out and "first - second" in out
