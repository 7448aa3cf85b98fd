#!/usr/bin/env bash
# Install everything demotrace needs on a fresh Debian machine (run as root, or with sudo available):
# the Debian programs the recorder, demo and tests use, then the locked Python environment in .venv.
set -euo pipefail
cd "$(dirname "$0")/.."

# systemd and desktop-file-utils: `agent install`'s unit and autostart entry are checked with their
# validators (systemd-analyze verify, desktop-file-validate) in tests/test_agent_install.py.
DEBIAN_PACKAGES=(xvfb openbox xterm xdotool x11-utils tesseract-ocr ffmpeg chromium systemd desktop-file-utils)
PROGRAMS=(Xvfb openbox xterm xdotool xwininfo tesseract ffmpeg chromium systemd-analyze desktop-file-validate)

missing=0
for program in "${PROGRAMS[@]}"; do
    command -v "$program" >/dev/null 2>&1 || missing=1
done
if [ "$missing" = 1 ]; then
    echo "setup: installing Debian packages: ${DEBIAN_PACKAGES[*]}" >&2
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq -o DPkg::Lock::Timeout=300 --no-install-recommends "${DEBIAN_PACKAGES[@]}" >/dev/null
fi

# The collector's PostgreSQL tests need a server: this machine's image has one on PATH; elsewhere take
# Debian's (its binaries live in /usr/lib/postgresql/*/bin).
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    echo "setup: installing Debian package postgresql" >&2
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends postgresql >/dev/null
fi

PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
# An activated virtual environment (ours too, with .venv/bin on PATH) has no pip: use the Python it was made from.
PYTHON="$("$PYTHON" -c 'import sys; print(getattr(sys, "_base_executable", sys.executable))')"
"$PYTHON" -c 'import sys, tkinter; assert sys.version_info[:2] == (3, 11), sys.version' \
    || { echo "setup: need Python 3.11 with tkinter (found $PYTHON)" >&2; exit 1; }

if ! "$PYTHON" -m uv --version >/dev/null 2>&1; then
    echo "setup: installing uv" >&2
    "$PYTHON" -m pip install -q "uv==0.13.8"
fi
# Never let uv fetch a Python of its own: this machine's 3.11 is the one we test on.
# Bytecode compiled once at install: otherwise every recorder start compiles its imports again
# (this machine sets PYTHONDONTWRITEBYTECODE), seconds of CPU on battery.
UV_PYTHON_DOWNLOADS=never "$PYTHON" -m uv sync --frozen --quiet --compile-bytecode --python "$PYTHON"
