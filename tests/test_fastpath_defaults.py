"""The defaults chosen from benchmarks/README.md: threads (cores, container quotas), no spinning,
the automatic batch size. Pure functions and file parsing; nothing here is timed."""

from __future__ import annotations

import pytest

from onnxcert import host, runtime
from onnxcert.host import cgroup_cpu_quota, parse_cpu_quota
from onnxcert.runtime import session_settings
from onnxcert.sampling import ACTIVATION_FACTOR, MAX_BATCH, MAX_BATCH_TINY, auto_batch_size


@pytest.mark.parametrize("text, cpus", [
    ("200000 100000\n", 2.0), ("150000 100000", 1.5), ("max 100000", None), ("-1 100000", None),
    ("", None), ("garbage", None), ("100000 0", None),
])
def test_parse_cpu_quota(text, cpus):
    assert parse_cpu_quota(text) == cpus


def test_cgroup_v2_and_v1_files(tmp_path):
    v2 = tmp_path / "cpu.max"
    v2.write_text("300000 100000\n")
    assert cgroup_cpu_quota([str(v2)]) == 3.0
    v1 = tmp_path / "v1" / "cpu.cfs_quota_us"
    v1.parent.mkdir()
    v1.write_text("50000\n")
    (v1.parent / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_quota([str(tmp_path / "missing"), str(v1)]) == 0.5
    assert cgroup_cpu_quota([str(tmp_path / "missing")]) is None


def test_threads_follow_the_container_quota(monkeypatch):
    monkeypatch.setattr(host, "cgroup_cpu_quota", lambda: 1.5)
    monkeypatch.setattr(host.os, "sched_getaffinity", lambda pid: set(range(64)), raising=False)
    assert host.available_cores() == 2  # 64 cores visible, 1.5 CPUs of time: 2 threads
    monkeypatch.setattr(host, "cgroup_cpu_quota", lambda: None)
    assert host.available_cores() == 64
    assert session_settings()["intra_op_num_threads"] == 64


def test_sessions_do_not_spin(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    so = runtime._session_options(ort, session_settings(1))
    assert so.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    spinning = dict(session_settings(1), allow_spinning=True)
    assert runtime._session_options(ort, spinning).get_session_config_entry("session.intra_op.allow_spinning") == "1"


def test_auto_batch_size_follows_the_measured_plateau():
    assert auto_batch_size((1, 8, 8), 100_000) == MAX_BATCH_TINY == 1024  # 64 values: per-batch cost matters
    assert auto_batch_size((1, 32, 32), 100_000) == 1024
    assert auto_batch_size((3, 32, 32), 100_000) == MAX_BATCH == 256
    assert auto_batch_size((1, 8, 8), 100_000, max_batch=64) == 64
    imagenet = auto_batch_size((3, 224, 224), 100_000)
    assert imagenet == (1 << 30) // (4 * 3 * 224 * 224 * ACTIVATION_FACTOR)  # 55: memory, not speed, decides
    assert auto_batch_size((3, 224, 224), 10) == 10
