#!/bin/sh
# gpu_attn_rows_check.sh - one device call: the CUDA op tests, memcheck + racecheck of the batched
# attention tests, then 16 / 64-row decode steps of the synthetic 12B with attn_g16t (f16 cache) and
# attn_g2 over the E4M3 cache off / on, and the 64-row phase profile. Each line printed as it comes
# (no pipes through tail). Needs .devbin, .devlibs, .devshared (tools/devpack.sh, device_env.sh).
. tools/device_env.sh
G4_BIN=$B/g4 timeout 150 $B/g4-tests cuda_ > $OUT/cuda_tests.log 2>&1; echo "cuda tests rc=$? $(tail -1 $OUT/cuda_tests.log)"
grep -aE "^FAIL|:[0-9]+: " $OUT/cuda_tests.log | head
CS=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null)
timeout 60 $CS --tool memcheck $B/g4-tests cuda_attention_rows > $OUT/mc.log 2>&1; echo "memcheck rc=$? $(grep -a 'ERROR SUMMARY' $OUT/mc.log | tail -1)"
timeout 60 $CS --tool racecheck $B/g4-tests cuda_attention_rows > $OUT/rc.log 2>&1; echo "racecheck rc=$? $(grep -a 'RACECHECK SUMMARY' $OUT/rc.log | tail -1)"
M=/tmp/m; synth_12b $M
bb() { timeout 60 $B/bench_batch $M --device cuda --ctx 640 --prompt 512 --steps 8 "$@" > $OUT/bb.log 2>&1; echo "rc=$? $(grep -o '"batch": [0-9]*, "step_ms_median": [0-9.]*' $OUT/bb.log | tr '\n' ' ')"; }
echo "f16 g16t off: $(G4_CUDA_ATTN_G16T=0 bb --batches 16,64)"
echo "f16 g16t on:  $(bb --batches 16,64)"
echo "fp8 g2f8 off: $(G4_CUDA_ATTN_G2_F8=0 bb --kv-cache-dtype fp8 --batches 16,64)"
echo "fp8 g2f8 on:  $(bb --kv-cache-dtype fp8 --batches 16,64)"
G4_CUDA_PROFILE=1 timeout 60 $B/bench_batch $M --device cuda --ctx 640 --prompt 512 --steps 8 --batches 64 > $OUT/prof.log 2>&1; echo "prof rc=$?"
grep -a -A12 "1 < T < 128" $OUT/prof.log
