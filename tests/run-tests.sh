#!/usr/bin/env bash
# Runs the whole suite. pytest's exit code 5 (nothing collected) is a failure
# here: a suite that ran no test proves nothing.
set -uo pipefail
cd "$(dirname "$0")/.."
# Two test processes by default (TEST_WORKERS=0: one): each starts its own servers
# on its own ports; worksteal keeps both busy to the end of the long tests.
.venv/bin/python -m pytest -p no:cacheprovider -q -ra --durations=15 \
    -n "${TEST_WORKERS:-2}" --dist worksteal tests "$@"
code=$?
if [ "$code" -eq 5 ]; then
    echo "no tests were collected — treating that as a failure" >&2
    exit 1
fi
exit "$code"
