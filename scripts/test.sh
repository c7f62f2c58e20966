#!/usr/bin/env bash
# test.sh - install dependencies, build everything and run the whole test suite:
# the C tests (make test), then the server tests (tests/server: the openai client,
# pytest and lm-evaluation-harness against `g4 serve`, from a venv in build/venv).
# The last line of output is "N passed, N failed, N skipped" (C + Python summed);
# the exit status is non-zero when anything failed.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh || exit 1
make -j"$(nproc)" all || exit 1
mkdir -p build
make test 2>&1 | tee build/test-c.log
c_rc=${PIPESTATUS[0]}

VENV=build/venv
py_ok=1
if [ ! -x "$VENV/bin/python" ]; then python3 -m venv "$VENV" || py_ok=0; fi
if [ $py_ok = 1 ] && ! "$VENV/bin/python" -c 'import openai, pytest, lm_eval, tenacity' >/dev/null 2>&1; then
  "$VENV/bin/pip" install -q --disable-pip-version-check openai pytest "lm-eval[api]" || py_ok=0
fi
if [ $py_ok = 1 ]; then
  G4_BIN=build/g4 G4_TEST_TMP=build HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 \
    "$VENV/bin/python" -m pytest tests/server -q -p no:cacheprovider 2>&1 | tee build/test-py.log
  py_rc=${PIPESTATUS[0]}
else
  echo "server tests: could not create build/venv or install openai/pytest/lm-eval (no network?)" | tee build/test-py.log
  echo "0 passed, 1 failed, 0 skipped" >> build/test-py.log
  py_rc=1
fi

count() {   # count WORD FILE: the number before WORD on the file's last summary line
  grep -E '[0-9]+ (passed|failed|skipped|error)' "$2" | tail -1 | grep -oE "[0-9]+ $1" | grep -oE '[0-9]+' || echo 0
}
p=$(( $(count passed build/test-c.log) + $(count passed build/test-py.log) ))
f=$(( $(count failed build/test-c.log) + $(count failed build/test-py.log) + $(count error build/test-py.log) ))
s=$(( $(count skipped build/test-c.log) + $(count skipped build/test-py.log) ))
if [ "$c_rc" != 0 ] || [ "$py_rc" != 0 ]; then [ $f = 0 ] && f=1; fi
echo "$p passed, $f failed, $s skipped"
[ $f = 0 ]
