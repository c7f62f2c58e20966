#!/bin/sh
# gpu_g16t_check.sh (branch wip/attn-g16-team) - one device call: attn_g16t.cu's op tests (memcheck,
# racecheck), then 16 / 64-row steps with the team kernel off / on and the phase profile. No pipes
# through tail: each line is printed as it comes. Needs .devbin, .devlibs, .devshared.
. tools/device_env.sh
G4_BIN=$B/g4 timeout 60 $B/g4-tests cuda_attention_rows > $OUT/t.log 2>&1; echo "rows test rc=$? $(tail -1 $OUT/t.log)"
grep -aE "^FAIL|:[0-9]+: " $OUT/t.log | head -5
CS=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null)
timeout 60 $CS --tool memcheck $B/g4-tests cuda_attention_rows > $OUT/memcheck.log 2>&1; echo "memcheck rc=$? $(grep -a 'ERROR SUMMARY' $OUT/memcheck.log | tail -1)"
timeout 60 $CS --tool racecheck $B/g4-tests cuda_attention_rows > $OUT/racecheck.log 2>&1; echo "racecheck rc=$? $(grep -a 'RACECHECK SUMMARY' $OUT/racecheck.log | tail -1)"
M=/tmp/m; synth_12b $M
bb() { timeout 60 $B/bench_batch $M --device cuda --ctx 640 --prompt 512 --steps 8 "$@" > $OUT/bb.log 2>&1; echo "rc=$? $(grep -o '"batch": [0-9]*, "step_ms_median": [0-9.]*' $OUT/bb.log | tr '\n' ' ')"; }
echo "g16t off: $(G4_CUDA_ATTN_G16T=0 bb --batches 16,64)"
echo "g16t on:  $(bb --batches 16,64)"
G4_CUDA_PROFILE=1 timeout 60 $B/bench_batch $M --device cuda --ctx 640 --prompt 512 --steps 8 --batches 64 > $OUT/prof.log 2>&1; echo "prof rc=$?"
grep -a -A9 "1 < T < 128" $OUT/prof.log
