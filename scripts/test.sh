#!/usr/bin/env bash
# Set up .venv with the dev extras, then lint, type-check and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install --quiet --upgrade pip
# Playwright drives the system Chromium (tests/e2e); it must never download a browser of its own.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
.venv/bin/pip install --quiet -e '.[dev]'
if [ ! -x /usr/bin/chromium ]; then
  echo "installing chromium (the console's browser tests) ..." >&2
  apt-get install -y chromium chromium-driver >/dev/null 2>&1 \
    || { apt-get update >/dev/null 2>&1 && apt-get install -y chromium chromium-driver >/dev/null 2>&1; } \
    || echo "error: could not install chromium; the browser tests will fail" >&2
fi

.venv/bin/ruff check src tests bench
.venv/bin/ruff format --check src tests bench
.venv/bin/mypy
.venv/bin/pytest -q -p no:cacheprovider "$@"
