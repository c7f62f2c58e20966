#!/usr/bin/env bash
# demo.sh - the main job on the built-in default: build g4, describe the bundled
# tiny model and tokenize a chat prompt with its tokenizer.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
make -j"$(nproc)" build/g4 >/dev/null
MODEL=${G4_MODEL:-tests/fixtures/models/tiny-a}
echo "== g4 info $MODEL"
build/g4 info "$MODEL"
echo "== g4 tokenize $MODEL --text 'Hello, world!'"
build/g4 tokenize "$MODEL" --text 'Hello, world!'
