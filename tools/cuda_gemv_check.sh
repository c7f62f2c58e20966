#!/bin/sh
# cuda_gemv_check.sh - one device session for the decode GEMV work, with binaries built on the
# dev machine: .devbin/{g4,g4-tests,bench_cuda_gemv}, their media libraries in .devlibs/, the
# Gemma 3 tokenizer in .devshared/data/gemma3-tokenizer/ (all git-excluded, carried by the device call).
# Steps: CUDA op tests + CUDA parity, GEMV micro-benchmark, 12B NVFP4A16 synth, g4 bench.
OUT=${OUT:-/tmp/g4-gemv-out}
mkdir -p "$OUT"
export LD_LIBRARY_PATH=$PWD/.devlibs:$LD_LIBRARY_PATH
B=.devbin
M=/tmp/g4-12b-nvfp4a16
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,driver_version --format=csv > "$OUT/smi.txt" 2>&1
timeout 150 $B/g4-tests cuda_ > "$OUT/cuda_tests.log" 2>&1; echo "tests rc=$?"
grep -E "FAIL|passed|failed" "$OUT/cuda_tests.log" | head -20
timeout 90 $B/bench_cuda_gemv > "$OUT/gemv.jsonl" 2> "$OUT/gemv.err"; echo "gemv rc=$?"
cat "$OUT/gemv.jsonl"; tail -3 "$OUT/gemv.err"
G4_SHARED=.devshared /usr/bin/time -f "synth %e s" timeout 200 $B/g4 synth $M --preset gemma-4-12b --format nvfp4a16 \
  --threads 16 > "$OUT/synth.log" 2>&1; echo "synth rc=$?"; tail -2 "$OUT/synth.log"
for pl in 256 1024; do
  timeout 90 $B/g4 bench $M --json --device cuda --prompt-len $pl --gen 64 >> "$OUT/bench.jsonl" 2>> "$OUT/bench.err"
  echo "bench $pl rc=$?"; tail -1 "$OUT/bench.jsonl"
done
G4_CUDA_GEMV_DEC=0 timeout 60 $B/g4 bench $M --json --device cuda --prompt-len 256 --gen 64 >> "$OUT/bench_generic.jsonl" 2>> "$OUT/bench.err"
echo "generic rc=$?"; tail -1 "$OUT/bench_generic.jsonl"; tail -5 "$OUT/bench.err"
