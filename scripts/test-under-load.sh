#!/usr/bin/env bash
# The tests with both cores kept busy, as on a shared machine: a CPU hog (stress-ng, one
# worker per core unless LOAD_WORKERS says otherwise) runs beside scripts/test.sh for as long
# as it does. Arguments go to pytest (scripts/test-under-load.sh tests/integration).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v stress-ng >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get install -y -q stress-ng >/dev/null 2>&1 \
            || { apt-get update -q >/dev/null && apt-get install -y -q stress-ng >/dev/null; }
    else
        echo "scripts/test-under-load.sh needs stress-ng (apt-get install stress-ng)" >&2
        exit 1
    fi
fi
workers=${LOAD_WORKERS:-$(nproc)}
echo "== load: stress-ng --cpu $workers beside the tests"
stress-ng --cpu "$workers" --quiet &
hog=$!
trap 'kill "$hog" 2>/dev/null; wait "$hog" 2>/dev/null || true' EXIT
scripts/test.sh "$@"
