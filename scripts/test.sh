#!/usr/bin/env bash
# The tests on a fresh machine: set up, lint, type-check, check the layering, build the docs,
# run the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
echo "== ruff" && .venv/bin/ruff check sensord tests benchmarks scripts \
    && .venv/bin/ruff format --check sensord tests benchmarks scripts
echo "== mypy" && .venv/bin/mypy
echo "== layering (import-linter contracts in pyproject.toml)" && .venv/bin/lint-imports --no-cache
echo "== docs (mkdocs build --strict: a broken link fails)"
docs_log=$(mktemp)
if ! .venv/bin/mkdocs build --strict --site-dir "$(mktemp -d)" >"$docs_log" 2>&1; then
    cat "$docs_log" >&2
    exit 1
fi
echo "== pytest" && exec .venv/bin/python -m pytest "$@"
