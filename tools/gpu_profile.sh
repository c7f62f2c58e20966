#!/bin/sh
# gpu_profile.sh - where a decode step's time goes on the GPU (one device call).
# Needs .devbin/{g4,bench_cuda_gemv}, .devlibs/, .devshared/tokenizer.json.gz (see gpu_bench_all.sh).
# 1) synth the 12B NVFP4A16; 2) g4 bench (1k prompt) as the end-to-end number; 3) ncu: the duration
# and DRAM bytes of every kernel of a short run (prompt 16, 3 decode steps; caches flushed per
# kernel, so durations are per kernel, HBM-cold, without PDL overlap); 4) ncu detail sections on
# a few decode GEMVs. Output under $OUT.
OUT=${OUT:-/tmp/g4-prof-out}
. tools/device_env.sh
M=/tmp/g4-12b
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,driver_version --format=csv > "$OUT/smi.txt" 2>&1; cat "$OUT/smi.txt"
if [ -x $B/g4-tests ]; then
  G4_BIN=$B/g4 timeout 200 $B/g4-tests ${TESTS:-cuda_} > "$OUT/cuda_tests.log" 2>&1; echo "tests rc=$? $(tail -1 "$OUT/cuda_tests.log")"
  grep -E "^FAIL|:[0-9]+: " "$OUT/cuda_tests.log" | head -20
fi
[ -x $B/bench_cuda_gemv ] && timeout 60 $B/bench_cuda_gemv --trace > "$OUT/gemv.jsonl" 2>&1; echo "gemv rc=$?"
cat "$OUT/gemv.jsonl"
synth_12b $M
timeout 60 $B/g4 bench $M --json --device cuda --prompt-len ${PL:-1024} --gen 64 > "$OUT/bench.json" 2>&1; echo "bench rc=$?"; cat "$OUT/bench.json"
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
timeout 120 $NCU --clock-control none --kernel-name regex:${KREGEX:-k_gemv_tc} --launch-skip 8 --launch-count 4 \
  --section SpeedOfLight --section WarpStateStats --section SchedulerStats --section MemoryWorkloadAnalysis \
  --section LaunchStats --section Occupancy --section InstructionStats $B/g4 bench $M --device cuda --prompt-len 1 --gen 2 > "$OUT/ncu_gemv.txt" 2>&1
echo "ncu gemv rc=$?"
[ -n "$SKIP_ALL" ] || timeout 240 $NCU --clock-control none --metrics gpu__time_duration.sum,dram__bytes_read.sum,launch__grid_size,launch__registers_per_thread \
  --csv $B/g4 bench $M --device cuda --prompt-len 16 --gen 3 > "$OUT/ncu_all.csv" 2> "$OUT/ncu_all.err"
echo "ncu all rc=$? lines $(wc -l < "$OUT/ncu_all.csv")"; tail -3 "$OUT/ncu_all.err"
