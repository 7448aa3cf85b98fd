#!/usr/bin/env bash
# Set up (idempotent), then run the end-to-end demo on a virtual desktop: record, upload, build, summarise.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/demotrace demo "$@"
