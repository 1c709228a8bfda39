"""Start-up cost of the command line: ``onnxcert --help`` and ``--version`` against the bare
interpreter (issue 16: the target is < 0.5 s above ``python -c pass``).

    python benchmarks/bench_startup.py [--repeat 7]

Each command runs in a fresh subprocess (``python -m onnxcert.cli ...``, as the console script
does), alternating with ``python -c pass`` so both see the same machine load; the table shows
the medians and the difference, all measured in this run. It also lists any heavy module
(SciPy's optimize/signal/stats, onnxruntime, matplotlib, torch) that a command imported.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("scipy.optimize", "scipy.signal", "scipy.stats", "onnxruntime", "matplotlib", "torch")
COMMANDS = {
    "python -c pass": ["-c", "pass"],
    "import onnxcert": ["-c", "import onnxcert"],
    "onnxcert --version": ["-m", "onnxcert.cli", "--version"],
    "onnxcert --help": ["-m", "onnxcert.cli", "--help"],
}
TARGET_S = 0.5


def _time(args: list[str]) -> float:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    t = time.perf_counter()
    subprocess.run([sys.executable, *args], cwd=ROOT, env=env, check=True, capture_output=True)
    return time.perf_counter() - t


def _heavy(args: list[str]) -> list[str]:
    """The heavy modules loaded by the command (run in-process through runpy, then listed)."""
    code = ("import runpy, sys\n"
            f"sys.argv = {['onnxcert', *args[2:]]!r}\n"
            "try:\n"
            f"    runpy.run_module({args[1]!r}, run_name='__main__') if {args[0]!r} == '-m' else exec({args[-1]!r})\n"
            "except SystemExit:\n    pass\n"
            f"print('HEAVY:' + ','.join(sorted(m for m in sys.modules if m.startswith({HEAVY!r}))))")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, capture_output=True,
                         text=True).stdout.splitlines()
    line = next(ln for ln in reversed(out) if ln.startswith("HEAVY:"))
    return [m for m in line[len("HEAVY:"):].split(",") if m]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args(argv)
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.repeat):
        for name, cmd in COMMANDS.items():
            times[name].append(_time(cmd))
    base = statistics.median(times["python -c pass"])
    print(f"start-up, median of {args.repeat} fresh processes (target: < {TARGET_S} s above python -c pass)\n")
    print("| command | median s | above python -c pass, s | heavy modules imported |")
    print("|---|---:|---:|---|")
    worst = 0.0
    for name, cmd in COMMANDS.items():
        med = statistics.median(times[name])
        heavy = "" if name == "python -c pass" else (", ".join(_heavy(cmd)) or "none")
        if name != "python -c pass":
            worst = max(worst, med - base)
        print(f"| {name} | {med:.3f} | {med - base:+.3f} | {heavy} |")
    print(f"\nworst: {worst:+.3f} s above the interpreter ({'within' if worst < TARGET_S else 'OVER'} the target)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
