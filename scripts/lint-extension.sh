#!/usr/bin/env bash
# Lint the browser extension (extension/, Manifest V3) with Mozilla's web-ext, pinned, installed from the
# npm registry into .tools/ on first use. Errors fail; warnings are printed (one manifest serves Chromium
# and Firefox, so Firefox warns that it ignores background.service_worker).
set -euo pipefail
cd "$(dirname "$0")/.."
WEB_EXT_VERSION=10.7.0
TOOLS=.tools/web-ext
if ! command -v npm >/dev/null 2>&1; then
    echo "lint-extension: npm is missing (Debian: apt-get install npm); the extension is not linted" >&2
    exit 0
fi
if [ ! -x "$TOOLS/node_modules/.bin/web-ext" ] || ! grep -q "\"version\": \"$WEB_EXT_VERSION\"" "$TOOLS/node_modules/web-ext/package.json"; then
    mkdir -p "$TOOLS"
    npm install --prefix "$TOOLS" --no-audit --no-fund --silent "web-ext@$WEB_EXT_VERSION" >/dev/null
fi
"$TOOLS/node_modules/.bin/web-ext" lint --source-dir extension --no-input
