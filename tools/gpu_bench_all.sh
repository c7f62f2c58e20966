#!/bin/sh
# gpu_bench_all.sh [tests|bench|serve|all] - the GPU numbers of issues 5-7 in one device call each
# (each part stays under the 10-minute call limit), with binaries built on the dev machine and
# packed by tools/devpack.sh (.devbin/bins.tar.xz), their media libraries (.devlibs/), the Gemma 3
# tokenizer and a 30 s clip (.devshared/) and, for the video cases, a static ffmpeg (.devff/): carry
# [".devbin", ".devlibs", ".devshared", ".devff"]. Logs under $OUT.
#   tests: CUDA op tests + parity, multimodal parity on CUDA, memcheck of the attention kernels
#   bench: 12B NVFP4A16 synth, g4 bench 1k / 8k (and the phase profile at 1k), bench_batch at short
#          and 600-token contexts (and its phase profile), media TTFT (image, 30 s audio, video)
#   serve: g4 serve + bench_serve.py at 1 / 8 / 32 / 64 streams, greedy, then sampled (T = 0.8)
. tools/device_env.sh
M=/tmp/g4-12b
part=${1:-all}
nvidia-smi -L > "$OUT/smi.txt" 2>&1; cat "$OUT/smi.txt"
if [ "$part" = tests ] || [ "$part" = all ]; then
  timeout 200 $B/g4-tests cuda_ > "$OUT/cuda_tests.log" 2>&1; echo "cuda tests rc=$? $(tail -1 "$OUT/cuda_tests.log")"
  grep -E "^FAIL|:[0-9]+: " "$OUT/cuda_tests.log" | head -20
  G4_MM_DEVICE=cuda timeout 150 $B/g4-tests mm_parity > "$OUT/mm.log" 2>&1; echo "mm parity cuda rc=$? $(tail -1 "$OUT/mm.log")"
  for t in cuda_attention cuda_attention_rows cuda_rope_kv_prep cuda_attention_flash; do
    timeout 120 compute-sanitizer --tool memcheck --print-limit 5 $B/g4-tests $t > "$OUT/mc_$t.log" 2>&1
    echo "memcheck $t rc=$? $(grep -E 'ERROR SUMMARY' "$OUT/mc_$t.log")"
  done
fi
if [ "$part" = bench ] || [ "$part" = all ]; then
  synth_12b $M
  for pl in 1024 8192; do   # decode + TTFT (issue 5)
    timeout 90 $B/g4 bench $M --json --device cuda --prompt-len $pl --gen 64 --reps 2 > "$OUT/bench_$pl.json" 2>&1
    echo "bench $pl rc=$?"; cat "$OUT/bench_$pl.json"
  done
  G4_CUDA_PROFILE=1 timeout 90 $B/g4 bench $M --json --device cuda --prompt-len 1024 --gen 32 > /dev/null 2> "$OUT/prof_decode.txt"
  tail -12 "$OUT/prof_decode.txt"
  if [ -x $B/bench_batch ]; then   # batched decode steps (issue 6), short and 600-token contexts
    timeout 150 $B/bench_batch $M --device cuda --batches 1,8,16,32,64 --steps 8 > "$OUT/bench_batch.jsonl" 2>&1
    timeout 150 $B/bench_batch $M --device cuda --ctx 1024 --prompt 600 --batches 16,64 --steps 6 >> "$OUT/bench_batch.jsonl" 2>&1
    echo "bench_batch rc=$?"; cat "$OUT/bench_batch.jsonl"
    G4_CUDA_PROFILE=1 timeout 150 $B/bench_batch $M --device cuda --ctx 1024 --prompt 512 --batches 64 --steps 6 \
      > /dev/null 2> "$OUT/prof_batch.txt"
    grep -A9 "1 < T" "$OUT/prof_batch.txt"
  fi
  video=""
  command -v ffmpeg > /dev/null && video="--video tests/fixtures/media/video/clip.mp4"
  timeout 120 $B/g4 bench $M --json --device cuda --image tests/fixtures/media/images/large_640x480.jpg \
    --audio .devshared/audio30.wav $video > "$OUT/bench_media.json" 2>&1; echo "media rc=$?"; cat "$OUT/bench_media.json"
fi
if [ "$part" = serve ] || [ "$part" = all ]; then
  synth_12b $M
  $B/g4 serve $M --port 8011 --device cuda --max-num-seqs 64 --max-model-len 1024 > "$OUT/serve.log" 2>&1 &
  SP=$!
  for i in $(seq 1 120); do python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8011/health')" 2>/dev/null && break; sleep 1; done
  for temp in 0 0.8; do
    timeout 240 python3 tools/bench_serve.py --url http://127.0.0.1:8011 --concurrency 1,8,32,64 --prompt-len 512 \
      --gen 256 --temperature $temp --out "$OUT/serve_bench_t$temp.json" > "$OUT/serve_bench_t$temp.log" 2>&1
    echo "serve bench temperature $temp rc=$?"; grep "\[bench\]" "$OUT/serve_bench_t$temp.log"
  done
  kill -TERM $SP; wait $SP; echo "serve exit $?"; tail -3 "$OUT/serve.log"
fi
