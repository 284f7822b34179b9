#!/usr/bin/env bash
# Create .venv and install sensord with everything the demo and the tests need.
# torch is installed first, pinned to the CPU build (pip install torch==2.13.0): any looser
# spec lets pip pull the newest torch with gigabytes of CUDA packages.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
say() { echo "== setup: $*"; }
if [ ! -x .venv/bin/python ]; then
    say "creating .venv with $("$PYTHON" --version)"
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
    say "installing torch 2.13.0 (CPU build; a minute or so the first time)"
    pip install "torch==2.13.0"
fi
say "installing sensord with its extras (train, plot, broker, cluster, dev)"
pip install -e ".[train,plot,broker,cluster,dev]"
# The detector's compiled path: compiled once here into numba's cache beside the package, so
# neither the demo's daemon nor the tests' wait for the compiler.
say "compiling the detector's machine code (numba; half a minute the first time, then cached)"
.venv/bin/sensord compile >/dev/null
# Debian packages the tests use: a real Mosquitto broker of their own, systemd-analyze
# to rate the unit's sandboxing (deploy/sensord.service), Chromium for the web page.
apt_install() {  # package, command it provides
    if command -v "$2" >/dev/null 2>&1 || [ -x "/usr/sbin/$2" ]; then
        return
    fi
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "installing $1 from Debian's packages"
        apt-get install -y -q "$1" >/dev/null 2>&1 \
            || { apt-get update -q >/dev/null && apt-get install -y -q "$1" >/dev/null; }
    else
        echo "note: no $2; install it (apt-get install $1) for the integration tests" >&2
    fi
}
apt_install mosquitto mosquitto
apt_install systemd systemd-analyze
# The web page's test drives a real headless browser (tests/integration/test_web_browser.py).
apt_install chromium chromium
apt_install chromium-driver chromedriver
# Cluster mode's tests run a real NATS server with JetStream (tests/cluster/).
apt_install nats-server nats-server
