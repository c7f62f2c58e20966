#!/bin/sh
# gpu_final_check.sh - one device call: CUDA op tests + parity, compute-sanitizer memcheck of the GEMV /
# parity tests, and ncu warp-stall source counters of one NVFP4 decode GEMV (k_gemv_tc) of the synthetic 12B.
# Needs .devbin/{g4,g4-tests}, .devlibs/, .devshared/tokenizer.json.gz (see gpu_bench_all.sh). Logs under $OUT.
. tools/device_env.sh
G4_BIN=$B/g4 timeout 150 $B/g4-tests cuda_ > $OUT/cuda_tests.log 2>&1; echo "tests rc=$? $(tail -1 $OUT/cuda_tests.log)"
grep -E "^FAIL|:[0-9]+: " $OUT/cuda_tests.log | head
for t in cuda_matmul_formats cuda_matmul_batched cuda_fused_matmuls cuda_nvfp4_shares cuda_residual_fused cuda_matmul_tensor_cores cuda_parity_tiny_a_nvfp4; do
  G4_BIN=$B/g4 timeout 120 compute-sanitizer --tool memcheck --error-exitcode 9 $B/g4-tests $t > $OUT/memcheck_$t.log 2>&1
  echo "memcheck $t rc=$? $(grep -E 'ERROR SUMMARY' $OUT/memcheck_$t.log | tail -1)"
done
synth_12b /tmp/m
NCU=$(command -v ncu)
timeout 150 $NCU --clock-control none --kernel-name regex:k_gemv_tc --launch-skip 11 --launch-count 1 --section WarpStateStats --section SourceCounters --section InstructionStats $B/g4 bench /tmp/m --device cuda --prompt-len 1 --gen 2 > $OUT/ncu_src.txt 2>&1; echo "ncu rc=$?"
grep -vE "^==" $OUT/ncu_src.txt | grep -iE "stall|Executed Instructions|Issued|sampl" | head -40
