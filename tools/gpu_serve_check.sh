#!/bin/sh
# gpu_serve_check.sh - one device call for the batched-decode / serving numbers of issue 6: the CUDA
# op and parity tests (batch logits held in the batch's rows included), decode steps of 1 / 16 / 64
# rows for the f16 and E4M3 caches, then `g4 serve` (64 sequences, f16 cache) under a burst of
# 1 / 8 / 32 / 64 streams and under 64 staggered streams (512-token prompts, 256 generated), with
# the scheduler's step trace (G4_SCHED_TRACE) over both.
# Needs .devbin (tools/devpack.sh), .devlibs, .devshared. Logs under $OUT.
. tools/device_env.sh
G4_BIN=$B/g4 timeout 200 $B/g4-tests cuda_ > $OUT/cuda_tests.log 2>&1; echo "cuda tests rc=$? $(tail -1 $OUT/cuda_tests.log)"
grep -aE "^FAIL|:[0-9]+: " $OUT/cuda_tests.log | head
M=/tmp/m; synth_12b $M
bb() { timeout 90 $B/bench_batch $M --device cuda --ctx 640 --prompt 512 --steps 8 "$@" > $OUT/bb.log 2>&1; echo "rc=$? $(grep -o '"batch": [0-9]*, "step_ms_median": [0-9.]*' $OUT/bb.log | tr '\n' ' ')"; }
echo -n "steps f16: "; bb --batches 1,16,64
echo -n "steps fp8: "; bb --kv-cache-dtype fp8 --batches 1,16,64
G4_SCHED_TRACE=1 $B/g4 serve $M --port 8011 --device cuda --max-num-seqs 64 --max-model-len 1024 "$@" > "$OUT/serve.log" 2>&1 &
SP=$!
for i in $(seq 1 120); do python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8011/health')" 2>/dev/null && break; sleep 1; done
timeout 100 python3 tools/bench_serve.py --url http://127.0.0.1:8011 --concurrency 1,8,32,64 --prompt-len 512 --gen 256 --out "$OUT/burst.json" > "$OUT/burst.log" 2>&1
echo "burst rc=$?"; grep -a "\[bench\]" "$OUT/burst.log"
timeout 100 python3 tools/bench_serve.py --url http://127.0.0.1:8011 --concurrency 64 --rounds 4 --stagger 4 --prompt-len 512 --gen 256 --out "$OUT/stag.json" > "$OUT/stag.log" 2>&1
echo "staggered rc=$?"; grep -a "\[bench\]" "$OUT/stag.log"
kill -TERM $SP; wait $SP; echo "serve exit $?"
grep -a "step trace" "$OUT/serve.log"
