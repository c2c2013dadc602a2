#!/usr/bin/env bash
# The README's test command: set everything up, lint, type-check, run the test suite.
# Extra arguments go to pytest (e.g. --runslow for long soaks).
set -euo pipefail
cd "$(dirname "$0")/.."
CDCSYNC_WITH_BROWSER=1 scripts/setup.sh
.venv/bin/ruff check cdcsync tests bench
.venv/bin/mypy cdcsync
# Decoder and SM2 once more without native code: the pure-Python fallbacks must stay correct.
CDCSYNC_PURE_PYTHON=1 .venv/bin/pytest -q tests/test_pgoutput.py tests/test_pgoutput_golden.py tests/test_stream.py tests/test_crypto.py
exec .venv/bin/pytest --durations=15 "$@"
