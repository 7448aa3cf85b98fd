#!/usr/bin/env bash
# Screenshots of a built dataset's pages in headless Chromium, to look at them as a reader would:
#   bash scripts/screenshots.sh DATASET_DIR [OUT_DIR]   ->  OUT_DIR/index.png, OUT_DIR/report.png
set -euo pipefail
dataset="$(cd "${1:?usage: screenshots.sh DATASET_DIR [OUT_DIR]}" && pwd)"
out="${2:-$dataset/screenshots}"
mkdir -p "$out"
for page in index report; do
    chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1400,2400 \
        --screenshot="$out/$page.png" "file://$dataset/$page.html" >/dev/null 2>&1
    echo "$out/$page.png"
done
