#!/usr/bin/env bash
# Create .venv and install sensord with everything the demo and the tests need.
# torch is installed first, pinned to the CPU build (pip install torch==2.13.0): any looser
# spec lets pip pull the newest torch with gigabytes of CUDA packages.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
# pip's output is shown only when it fails (this machine's pip.conf makes it warn at length).
pip() {
    local log
    log=$(mktemp)
    if ! .venv/bin/python -m pip --disable-pip-version-check -q "$@" >"$log" 2>&1; then
        cat "$log" >&2
        rm -f "$log"
        return 1
    fi
    rm -f "$log"
}
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
    pip install "torch==2.13.0"
fi
pip install -e ".[train,plot,broker,dev]"
# The integration tests start a real Mosquitto broker of their own.
if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get install -y -q mosquitto >/dev/null 2>&1 \
            || { apt-get update -q >/dev/null && apt-get install -y -q mosquitto >/dev/null; }
    else
        echo "note: no mosquitto binary; install it (apt-get install mosquitto) for the" \
             "integration tests" >&2
    fi
fi
