"""`onnxcert run --backend ray` (issue 9): the same records as the local backend, faults, resume.

One local Ray instance (2 CPUs, no dashboard) serves the whole module; the tests that need it skip
when ray is not installed (``pip install 'onnxcert[ray]'``). The reference for every comparison is
the local backend with the same seed: each input's noise depends only on (seed, index), so the
records must be equal, not close. Provenance and timing fields may differ.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import cli

import onnxcert.cli  # noqa: F401  (registers every command)
from onnxcert import pipeline
from onnxcert.errors import ConfigError, DependencyError, ModelError, OnnxCertError
from onnxcert.ray_backend import RayBackend, RayOptions, Worker, chunk_size, import_ray

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "sample_models" / "digits_sigma0.25.onnx"
FAST = ("--n", "500", "--n0", "50", "--methods", "naive,cdf-dkw")
SMOOTHING = {"smoothing": {"n": 500, "n0": 50}, "certify": {"methods": ["naive", "cdf-dkw"]}}


@pytest.fixture(scope="module")
def ray_session():
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'onnxcert[ray]')")
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def local(digits12, tmp_path_factory):
    """The local backend's report, CSV and journal: the reference."""
    out = tmp_path_factory.mktemp("local")
    res = cli("run", MODEL, digits12, *FAST, "-o", out / "r.json", "-o", out / "r.csv", "-q")
    assert res.exit_code == 0, res.output
    return out


@pytest.fixture(scope="module")
def setup(digits12):
    return pipeline.prepare(MODEL, digits12, cli=SMOOTHING, device="cpu")


def _records(path):
    return json.loads(Path(path).read_text())["records"]


def _journal_records(path):
    lines = [json.loads(line) for line in Path(path).read_text().splitlines()[1:]]
    return sorted((e for e in lines if "record" in e), key=lambda e: e["record"]["index"])


def _dying_worker(marker: Path, index: int, once: bool = True):
    """A Worker whose process exits (as a crash or an OOM kill would) on the chunk holding input
    ``index``: the first time only (while ``marker`` exists) or every time."""

    class DyingWorker(Worker):
        def certify(self, indices, loaded, output_kind):
            if index in indices and marker.exists():
                if once:
                    marker.unlink()
                os._exit(1)
            return super().certify(indices, loaded, output_kind)

    marker.touch()
    return DyingWorker


# ---------------------------------------------------------------- same report as local


def test_cli_report_csv_and_journal_equal_local(ray_session, digits12, local, tmp_path):
    res = cli("run", MODEL, digits12, *FAST, "--backend", "ray", "--workers", "2",
              "-o", tmp_path / "r.json", "-o", tmp_path / "r.csv", "-q")
    assert res.exit_code == 0, res.output
    ours = _records(tmp_path / "r.json")
    assert [r["index"] for r in ours] == list(range(12))
    assert ours == _records(local / "r.json")
    assert (tmp_path / "r.csv").read_text() == (local / "r.csv").read_text()
    assert _journal_records(tmp_path / "r.jsonl") == _journal_records(local / "r.jsonl")
    report = json.loads((tmp_path / "r.json").read_text())
    prov = report["provenance"]
    assert prov["backend"] == "ray" and prov["workers"] == 2 and prov["workers_replaced"] == 0
    assert report["summary"] == json.loads((local / "r.json").read_text())["summary"]


def test_resume_a_local_journal_on_ray(ray_session, digits12, local, tmp_path):
    """A run that lost its driver after 5 inputs continues on Ray from the JSONL."""
    lines = (local / "r.jsonl").read_text().splitlines(keepends=True)
    kept = [ln for ln in lines if '"record"' not in ln] + [ln for ln in lines if '"record"' in ln][:5]
    (tmp_path / "r.jsonl").write_text("".join(kept))
    res = cli("run", MODEL, digits12, *FAST, "--backend", "ray", "--workers", "2", "--resume",
              "-o", tmp_path / "r.json", "-q")
    assert res.exit_code == 0, res.output
    assert _records(tmp_path / "r.json") == _records(local / "r.json")
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["provenance"]["records_from_journal"] == 5
    assert _journal_records(tmp_path / "r.jsonl") == _journal_records(local / "r.jsonl")


def test_subset_of_indices_in_any_order(ray_session, setup, local):
    backend = RayBackend(RayOptions(workers=2, chunk_size=1))
    sampler = pipeline.make_sampler(setup)
    got = list(backend.iter_records(setup, sampler, [9, 2, 7]))
    assert sorted(r.index for r in got) == [2, 7, 9]
    by_index = {r["index"]: r for r in _records(local / "r.json")}
    assert all(r.to_dict() == by_index[r.index] for r in got)
    assert sampler.output_kind == json.loads((local / "r.json").read_text())["settings"]["output_kind"]


# ---------------------------------------------------------------- faults


def test_worker_killed_mid_run_each_input_certified_once(ray_session, setup, local, tmp_path):
    worker = _dying_worker(tmp_path / "die-once", index=6)
    backend = RayBackend(RayOptions(workers=2, chunk_size=2), worker_cls=worker)
    seen = []
    result = backend.certify(setup, on_record=lambda rec: seen.append(rec.index))
    assert sorted(seen) == list(range(12))  # every input once, none twice
    assert [r.to_dict() for r in result.records] == _records(local / "r.json")
    assert result.report["provenance"]["workers_replaced"] == 1
    assert not (tmp_path / "die-once").exists()


def test_an_input_that_kills_every_worker_stops_the_run(ray_session, setup, tmp_path):
    worker = _dying_worker(tmp_path / "die-always", index=3, once=False)
    backend = RayBackend(RayOptions(workers=1, chunk_size=4, max_chunk_failures=2), worker_cls=worker)
    with pytest.raises(OnnxCertError, match="were running on 2 Ray workers when they died"):
        backend.certify(setup)


def test_a_workers_onnxcert_error_reaches_the_driver_as_itself(ray_session, setup):
    class NanWorker(Worker):
        def certify(self, indices, loaded, output_kind):
            raise ModelError("the model's output holds NaN or inf for input 0")

    with pytest.raises(ModelError, match="holds NaN or inf for input 0"):
        RayBackend(RayOptions(workers=1), worker_cls=NanWorker).certify(setup)


# ---------------------------------------------------------------- no ray in the local path, options


def test_local_run_never_imports_ray(digits12, tmp_path):
    code = ("import sys; from typer.testing import CliRunner; "
            "from onnxcert.cli import app; "
            f"res = CliRunner().invoke(app, ['run', {str(MODEL)!r}, {str(digits12)!r}, '--n', '100', '--n0', '20', "
            f"'-o', {str(tmp_path / 'r.json')!r}, '-q']); "
            "assert res.exit_code == 0, res.output; "
            "assert 'ray' not in sys.modules, 'the local backend imported ray'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_missing_ray_is_a_dependency_error_with_the_hint(monkeypatch, digits12, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    with pytest.raises(DependencyError, match=r"pip install 'onnxcert\[ray\]'"):
        import_ray()
    res = cli("run", MODEL, digits12, "--backend", "ray", "-o", tmp_path / "r.json")
    assert res.exit_code == 2
    assert "onnxcert: error: ray is not installed: pip install 'onnxcert[ray]'" in res.output
    assert not (tmp_path / "r.jsonl").exists()


@pytest.mark.parametrize("args, message", [
    (("--backend", "spark"), "--backend must be local or ray; got 'spark'"),
    (("--workers", "2"), "--workers only applies to --backend ray"),
    (("--backend", "ray", "--workers", "0"), "--workers must be >= 1, got 0"),
    (("--backend", "ray", "--num-gpus-per-worker", "1.5"), "a fraction in [0, 1] or a whole number of GPUs, got 1.5"),
    (("--backend", "ray", "--device", "cuda"), "--device cuda with --backend ray needs --num-gpus-per-worker > 0"),
])
def test_bad_backend_options_are_one_line_exit_2(digits12, tmp_path, args, message):
    pytest.importorskip("ray", reason="ray is not installed (pip install 'onnxcert[ray]')")
    res = cli("run", MODEL, digits12, *args, "-o", tmp_path / "r.json")
    assert res.exit_code == 2, res.output
    assert message in res.output


def test_chunk_size_balances_small_runs_and_caps_large_inputs():
    assert chunk_size(12, 2, 550) == 2  # at least 4 chunks per worker
    assert chunk_size(50_000, 8, 100_100) == 1  # n = 100,000: one input per chunk
    assert chunk_size(50_000, 8, 600) == 64  # capped
    assert chunk_size(1, 4, 600) == 1
    with pytest.raises(ConfigError, match="chunk size must be >= 1, got 0"):
        RayOptions(chunk_size=0)


def test_the_journal_names_the_workers_provider_not_the_drivers(setup):
    """The driver checks the model on its CPU; the records come from the workers' provider, and
    a GPU draws its noise differently, so the journal's identity must name the workers'."""
    gpu = RayBackend(RayOptions(num_gpus_per_worker=0.5))
    assert gpu.provider == "CUDAExecutionProvider" and RayBackend().provider == "CPUExecutionProvider"
    assert pipeline.run_identity(setup, gpu.provider)["runtime"] == {"provider": "CUDAExecutionProvider"}
    assert pipeline.run_identity(setup)["runtime"] == {"provider": setup.classifier.provider}
