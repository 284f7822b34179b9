#!/usr/bin/env bash
# The main job on a fresh machine: set up, then run the sensord demo.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
exec .venv/bin/sensord demo --out "${1:-sensord-demo}"
