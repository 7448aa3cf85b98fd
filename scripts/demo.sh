#!/usr/bin/env bash
# Set up (idempotent), then run the end-to-end demo on a virtual desktop: record, upload, build, summarise.
# Its output (--out, default demo-out/) goes in the folder it was started from, like any command's.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
(cd "$repo" && bash scripts/setup.sh)
exec "$repo/.venv/bin/demotrace" demo "$@"
