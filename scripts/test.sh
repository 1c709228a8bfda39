#!/usr/bin/env bash
# The README's test command: install the project with every extra the tests use, then run pytest.
# pytest's exit code 5 (no tests collected) counts as a failure here: a test run that ran nothing
# must not pass silently.
set -uo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet "torch==2.13.0" -e ".[cpu,dev,plot,export,ray]" || exit 1
python -m pytest -q -p no:cacheprovider "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: failing (exit 5 -> 1)" >&2
  exit 1
fi
exit "$rc"
