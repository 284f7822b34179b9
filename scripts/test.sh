#!/usr/bin/env bash
# The tests on a fresh machine: set up, lint, type-check, run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
echo "== ruff" && .venv/bin/ruff check sensord tests benchmarks && .venv/bin/ruff format --check sensord tests benchmarks
echo "== mypy" && .venv/bin/mypy
echo "== pytest" && exec .venv/bin/python -m pytest "$@"
