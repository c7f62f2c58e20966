#!/bin/sh
# bench_tokenizer.sh - g4 tokenizer encode speed vs the Python `tokenizers` package.
#
#   tools/bench_tokenizer.sh [TOKENIZER_PATH] [CORPUS.jsonl] [ITERS]
# Defaults: ../shared/data/gemma3-tokenizer/tokenizer.json, tests/fixtures/tokenizer/corpus.jsonl, 5.
# Env: BUILD (default build) - where libg4.a is (built with `make BUILD=...` first).
# Both sides are single-threaded (Python: one encode() call per line, no encode_batch,
# RAYON_NUM_THREADS=1) and report the best of ITERS passes. Prints one JSON object;
# "speedup" = python encode time / g4 encode time (> 1: g4 is faster).
set -eu
cd "$(dirname "$0")/.."
TOK=${1:-../shared/data/gemma3-tokenizer/tokenizer.json}
CORPUS=${2:-tests/fixtures/tokenizer/corpus.jsonl}
ITERS=${3:-5}
BUILD=${BUILD:-build}
[ -f "$BUILD/libg4.a" ] || { echo "bench_tokenizer.sh: $BUILD/libg4.a missing (run make BUILD=$BUILD)" >&2; exit 1; }
BIN="$BUILD/bench_tokenizer"
${CC:-cc} -std=c11 -D_GNU_SOURCE -O2 -Wall -Wextra -Iinclude -Isrc -o "$BIN" bench/bench_tokenizer.c "$BUILD/libg4.a" -lm -lpthread
G4=$("$BIN" "$TOK" "$CORPUS" "$ITERS")
RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false python3 - "$TOK" "$CORPUS" "$ITERS" "$G4" <<'PY'
import json, sys, time
from tokenizers import Tokenizer
tok_path, corpus, iters, g4 = sys.argv[1], sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4])
t0 = time.perf_counter(); tok = Tokenizer.from_file(tok_path); load = time.perf_counter() - t0
lines = [json.loads(l) for l in open(corpus, encoding="utf-8")]
best = best_dec = 1e30
for _ in range(iters):
    s = time.perf_counter(); out = [tok.encode(x, add_special_tokens=False).ids for x in lines]; e = time.perf_counter() - s
    s = time.perf_counter(); [tok.decode(x, skip_special_tokens=False) for x in out]; d = time.perf_counter() - s
    best, best_dec = min(best, e), min(best_dec, d)
print(json.dumps({"g4": g4, "python": {"load_s": round(load, 4), "encode_s": round(best, 5), "decode_s": round(best_dec, 5),
                  "mb_per_s": round(g4["bytes"] / best / 1e6, 2)},
                  "speedup_encode": round(best / g4["encode_s"], 2), "speedup_decode": round(best_dec / g4["decode_s"], 2),
                  "speedup_load": round(load / g4["load_s"], 2)}))
PY
