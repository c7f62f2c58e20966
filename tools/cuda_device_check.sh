#!/bin/sh
# cuda_device_check.sh - one device session of the CUDA backend: build, op tests, CUDA parity,
# compute-sanitizer memcheck, synthetic 12B checkpoints, g4 bench, HF baseline. Logs to $OUT.
# Usage: tools/cuda_device_check.sh [steps...]   steps: build tests memcheck synth bench fp8 bf16 hf
OUT=${OUT:-/tmp/g4-cuda-out}
mkdir -p "$OUT"
export PATH=/usr/local/cuda/bin:$PATH
STEPS=${*:-build tests synth bench memcheck}
M=/tmp/g4-12b
has() { case " $STEPS " in *" $1 "*) return 0;; esac; return 1; }
nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.mem,driver_version --format=csv > "$OUT/smi.txt" 2>&1
if has build; then
  [ -x build/g4 ] && [ -n "$PREBUILT" ] && { echo prebuilt; } ||
  make -j16 > "$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
  echo "build ok"
fi
if has tests; then
  timeout 240 ./build/g4-tests cuda_ > "$OUT/cuda_tests.log" 2>&1
  grep -E "^(ok|FAIL|SKIP)|passed|cuda |tests/" "$OUT/cuda_tests.log" | head -60
fi
run_bench() { # fmt prompt gen
  timeout 240 ./build/g4 bench "$M-$1" --prompt-len "$2" --gen "$3" --json >> "$OUT/bench.jsonl" 2>> "$OUT/bench.err"
  tail -1 "$OUT/bench.jsonl"
}
synth() {
  [ -d "$M-$1" ] || { /usr/bin/time -f "synth $1 %e s" timeout 300 ./build/g4 synth "$M-$1" --preset gemma-4-12b --format "$1" --threads 16 > "$OUT/synth-$1.log" 2>&1; tail -2 "$OUT/synth-$1.log"; }
}
if has synth; then synth nvfp4a16; fi
if has bench; then
  run_bench nvfp4a16 128 128
  run_bench nvfp4a16 1024 64
fi
if has ctx8k; then run_bench nvfp4a16 8000 64; fi
if has fp8; then synth fp8-dynamic; run_bench fp8-dynamic 128 128; rm -rf "$M-fp8-dynamic"; fi
if has bf16; then synth bf16; run_bench bf16 128 128; fi
if has hf; then PYTHONUNBUFFERED=1 timeout 300 python3 tools/hf_baseline.py "$M-bf16" --prompt-len 128 --gen 64 > "$OUT/hf.json" 2> "$OUT/hf.err"; tail -1 "$OUT/hf.json"; tail -3 "$OUT/hf.err"; fi
if has memcheck; then
  timeout 200 compute-sanitizer --tool memcheck --print-limit 20 ./build/g4-tests cuda_ > "$OUT/memcheck.log" 2>&1
  grep -E "ERROR SUMMARY|passed" "$OUT/memcheck.log" | tail -3
fi
