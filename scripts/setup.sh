#!/usr/bin/env bash
# Sets up a fresh Debian/Ubuntu machine for cdcsync: system packages when missing, a venv, the project.
# Safe to run again; installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

need=()
if ! compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null && ! command -v initdb >/dev/null; then
  need+=(postgresql)
fi
command -v pg_recvlogical >/dev/null || compgen -G "/usr/lib/postgresql/*/bin/pg_recvlogical" >/dev/null \
  || need+=(postgresql-client)
command -v openssl >/dev/null || need+=(openssl)
if [ "${CDCSYNC_WITH_BROWSER:-0}" = 1 ]; then
  # For the tests (scripts/test.sh). Browser tests of the status page, the HTML report and the workbench
  # (tests/test_workbench_browser.py: Playwright from the test extra drives this chromium; nothing is
  # downloaded, `playwright install` is never run); CJK font so screenshots show Chinese.
  command -v chromium >/dev/null || need+=(chromium)
  compgen -G "/usr/share/fonts/truetype/wqy/wqy-microhei.tt*" >/dev/null || need+=(fonts-wqy-microhei)
  # The unit tests check scripts/systemd/cdcsync.service with systemd-analyze (works without systemd running).
  command -v systemd-analyze >/dev/null || need+=(systemd)
fi
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
# The stream decoder's C extension (cdcsync/source/_pgtuple.c; without it a slower pure-Python
# parser runs): a C compiler and the headers of the Python the venv is made from.
command -v cc >/dev/null || command -v gcc >/dev/null || need+=(gcc)
python3 -c 'import sysconfig, os, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
  || need+=(python3-dev)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing system packages: ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[test]"
