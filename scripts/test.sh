#!/usr/bin/env bash
# Set up (idempotent), then lint, type-check and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check demotrace tests bench
.venv/bin/ruff format --check demotrace tests bench || { echo "run: .venv/bin/ruff format" >&2; exit 1; }
.venv/bin/mypy
bash scripts/lint-extension.sh  # the browser extension: web-ext lint errors fail
exec .venv/bin/pytest -q -p no:cacheprovider "$@"
