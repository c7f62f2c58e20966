#!/usr/bin/env bash
# test.sh - install dependencies, build everything and run the whole test suite.
# The last line of output is "N passed, N failed, N skipped".
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
make -j"$(nproc)" all
make test
