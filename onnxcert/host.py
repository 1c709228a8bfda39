"""The host's CPUs as this process may use them: affinity, capped by a container's CPU quota."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

CGROUP_FILES = ("/sys/fs/cgroup/cpu.max", "/sys/fs/cgroup/cpu/cpu.cfs_quota_us")


def available_cores() -> int:
    """The cores this process may use: its CPU affinity, capped by a container's CPU quota (a
    container limited to 2 CPUs on a 64-core host sees 64 cores in its affinity; 64 threads on
    2 CPUs' worth of time would thrash)."""
    try:
        cores = max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        cores = max(1, os.cpu_count() or 1)
    quota = cgroup_cpu_quota()
    return cores if quota is None else max(1, min(cores, math.ceil(quota)))


def cgroup_cpu_quota(files: Sequence[str] = CGROUP_FILES) -> float | None:
    """CPUs' worth of time the cgroup allows (cgroup v2 ``cpu.max``, or v1 quota / period);
    None when unlimited or unknown."""
    for path in files:
        try:
            text = Path(path).read_text()
            if path.endswith("cfs_quota_us"):
                text += " " + Path(path).with_name("cpu.cfs_period_us").read_text()
        except OSError:
            continue
        return parse_cpu_quota(text)
    return None


def parse_cpu_quota(text: str) -> float | None:
    """'200000 100000' -> 2.0; 'max 100000' or '-1 100000' -> None (no limit)."""
    parts = text.split()
    try:
        quota, period = (int(parts[0]), int(parts[1])) if parts[0] != "max" else (-1, 1)
    except (IndexError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None
