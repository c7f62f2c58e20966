#!/bin/sh
# gpu_g2f8_check.sh (branch wip/attn-g2-e4m3) - one device call: attn_g2.cu over an E4M3 cache
# (op tests, memcheck, racecheck), then fp8-cache steps of 16 / 64 rows with it off / on (k_attn's
# ring when off). Each line printed as it comes. Needs .devbin, .devlibs, .devshared.
. tools/device_env.sh
G4_BIN=$B/g4 timeout 60 $B/g4-tests cuda_attention_rows cuda_kv_fp8 > $OUT/t.log 2>&1; echo "tests rc=$? $(tail -1 $OUT/t.log)"
grep -aE "^FAIL|:[0-9]+: " $OUT/t.log | head -5
CS=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null)
timeout 60 $CS --tool memcheck $B/g4-tests cuda_attention_rows > $OUT/memcheck.log 2>&1; echo "memcheck rc=$? $(grep -a 'ERROR SUMMARY' $OUT/memcheck.log | tail -1)"
timeout 60 $CS --tool racecheck $B/g4-tests cuda_attention_rows > $OUT/racecheck.log 2>&1; echo "racecheck rc=$? $(grep -a 'RACECHECK SUMMARY' $OUT/racecheck.log | tail -1)"
M=/tmp/m; synth_12b $M
bb() { timeout 60 $B/bench_batch $M --device cuda --kv-cache-dtype fp8 --ctx 640 --prompt 512 --steps 8 "$@" > $OUT/bb.log 2>&1; echo "rc=$? $(grep -o '"batch": [0-9]*, "step_ms_median": [0-9.]*' $OUT/bb.log | tr '\n' ' ')"; }
echo "fp8, g2 off: $(G4_CUDA_ATTN_G2_F8=0 bb --batches 16,64)"
echo "fp8, g2 on:  $(bb --batches 16,64)"
