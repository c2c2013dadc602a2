#!/usr/bin/env bash
# The README's demo command: set everything up, then run `cdcsync demo` (a private PostgreSQL cluster,
# a synthetic hospital day, the pipeline). Extra arguments go to `cdcsync demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/cdcsync demo "$@"
