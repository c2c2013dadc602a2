#!/usr/bin/env bash
# The README's test command: set everything up, lint, type-check, run the test suite.
# Extra arguments go to pytest (e.g. --runslow for long soaks).
set -euo pipefail
cd "$(dirname "$0")/.."
CDCSYNC_WITH_BROWSER=1 scripts/setup.sh
.venv/bin/ruff check cdcsync tests bench
.venv/bin/mypy cdcsync
exec .venv/bin/pytest "$@"
