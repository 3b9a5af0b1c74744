#!/usr/bin/env bash
# The test command: set up what the tests need, then lint, type-check and run the test suite.
# Extra arguments go to pytest. P2PFAAS_REQUIRE_DOCKER=1 / P2PFAAS_REQUIRE_MYSQL=1 make the Docker
# and MySQL tests fail, not skip, when those services are missing (CI sets both).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
echo "[test] ruff"; .venv/bin/ruff check .
echo "[test] mypy"; .venv/bin/mypy
echo "[test] pytest"; exec .venv/bin/pytest -q -p no:cacheprovider "$@"
