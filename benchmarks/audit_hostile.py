"""Audit: run every hostile case the test suite holds and print how many hold.

A case holds when its test passes: the documented exit code, one ``onnxcert: error:`` line that
names the problem (and quotes at most a few hundred characters), no traceback, no report written,
nothing lost. The cases are the tables ``CASES`` of tests/test_hostile.py (issue 8) and
tests/test_hardening.py (issue 15), and the fault injections of tests/test_hardening.py and
tests/test_reliability.py (full disk, held locks, concurrent runs, symbolic links, FIFOs,
unreadable folders, signals).

    python benchmarks/audit_hostile.py                 # this checkout
    python benchmarks/audit_hostile.py --code OTHER    # the same cases against another checkout's
                                                       # onnxcert package (e.g. an older commit)

Prints one line per case that does not hold, then a table: cases, held, not held, skipped (a
skip says why, e.g. no private mount namespace on this machine).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Cases that, against code without the checks, take the shared machine down with them instead of
# failing: 10,000 onnxruntime threads, or a 16-20 GB batch buffer that is filled. They are not run
# with --code unless --unsafe is given.
UNSAFE = ("threads-10000", "batch-size-over-memory", "dynamic-hw-size-40000")
FILES = ("tests/test_hostile.py", "tests/test_hardening.py", "tests/test_reliability.py")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--code", type=Path, default=None,
                        help="a checkout whose onnxcert package the cases run against (default: this one)")
    parser.add_argument("--files", nargs="*", default=list(FILES), help="test files holding the cases")
    parser.add_argument("-k", default=None, help="only cases whose id matches (pytest -k)")
    parser.add_argument("--unsafe", action="store_true",
                        help=f"with --code, also run {', '.join(UNSAFE)} (they can exhaust the machine)")
    args = parser.parse_args()
    env, where = dict(os.environ), ROOT
    if args.code is not None:
        # this checkout's tests, copied outside it so that nothing puts its onnxcert on the path,
        # run with the other checkout's package first on PYTHONPATH (subprocesses inherit it)
        where = Path(tempfile.mkdtemp(prefix="onnxcert-audit-"))
        shutil.copytree(ROOT / "tests", where / "tests", ignore=shutil.ignore_patterns("__pycache__"))
        env["PYTHONPATH"] = os.pathsep.join([str(args.code.resolve()), env.get("PYTHONPATH", "")])
    report = Path(tempfile.gettempdir()) / "onnxcert-audit-hostile.txt"
    cmd = [sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", "--rootdir", str(where),
           *[str(where / f) for f in args.files]]
    skip = [] if args.code is None or args.unsafe else list(UNSAFE)
    selection = " and ".join([f"({args.k})"] * bool(args.k) + [f"not {case}" for case in skip])
    if selection:
        cmd += ["-k", selection]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=where, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    report.write_text(proc.stdout + proc.stderr)
    outcomes: dict[str, list[str]] = {"PASSED": [], "FAILED": [], "ERROR": [], "SKIPPED": []}
    for line in proc.stdout.splitlines():
        word, _, rest = line.partition(" ")
        if word in outcomes:
            outcomes[word].append(rest.split(" - ")[0].replace(str(where) + "/", ""))
    broken = outcomes["FAILED"] + outcomes["ERROR"]
    for case in broken:
        print(f"does not hold: {case}")
    total = sum(len(v) for v in outcomes.values())
    code = str(args.code.resolve()) if args.code else str(ROOT)
    print(f"\nhostile cases of {', '.join(args.files)} against {code} ({wall:.0f} s; pytest output in {report})\n")
    print("| cases | hold | do not hold | skipped |")
    print("|---|---|---|---|")
    print(f"| {total} | {len(outcomes['PASSED'])} | {len(broken)} | {len(outcomes['SKIPPED'])} |")
    for case in outcomes["SKIPPED"]:
        print(f"skipped: {case}")
    for case in skip:
        print(f"not run against {code}: {case} (see --unsafe)")
    if total == 0:
        print(proc.stdout[-2000:] + proc.stderr[-2000:])
        return 1
    return 0 if not broken else 1


if __name__ == "__main__":
    sys.exit(main())
