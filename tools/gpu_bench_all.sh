#!/bin/sh
# gpu_bench_all.sh - one device session for the GPU numbers of issues 5-7, with binaries built
# on the dev machine (.devbin/{g4,g4-tests[,bench_batch]}), their media libraries (.devlibs/) and the
# Gemma 3 tokenizer (.devshared/tokenizer.json.gz) + a 30 s test clip (.devshared/), all git-excluded and carried.
# Steps (each bounded): CUDA op tests + parity, multimodal parity on CUDA, 12B NVFP4A16 synth,
# g4 bench (1k and 8k prompts), bench_batch (when carried), media TTFT (280-token image, 30 s audio),
# then g4 serve + bench_serve.py
# at 1/8/32/64 streams (512-token prompts, 256-token outputs). Logs under $OUT.
. tools/device_env.sh
M=/tmp/g4-12b
nvidia-smi -L > "$OUT/smi.txt" 2>&1; cat "$OUT/smi.txt"
timeout 120 $B/g4-tests cuda_ > "$OUT/cuda_tests.log" 2>&1; echo "cuda tests rc=$? $(tail -1 "$OUT/cuda_tests.log")"
grep -E "^FAIL|worst|:[0-9]+: " "$OUT/cuda_tests.log" | head -20
synth_12b $M
for pl in 1024 8192; do   # decode + TTFT (issue 5)
  timeout 90 $B/g4 bench $M --json --device cuda --prompt-len $pl --gen 64 --reps 2 > "$OUT/bench_$pl.json" 2>&1
  echo "bench $pl rc=$?"; cat "$OUT/bench_$pl.json"
done
if [ -x $B/bench_batch ]; then   # batched decode steps (issue 6), short and 600-token contexts
  timeout 150 $B/bench_batch $M --device cuda --batches 1,8,16,32,64 --steps 8 > "$OUT/bench_batch.jsonl" 2>&1
  timeout 150 $B/bench_batch $M --device cuda --ctx 1024 --prompt 600 --batches 1,16,64 --steps 6 >> "$OUT/bench_batch.jsonl" 2>&1
  echo "bench_batch rc=$?"; cat "$OUT/bench_batch.jsonl"
fi
timeout 60 $B/g4 bench $M --json --device cuda --image tests/fixtures/media/images/large_640x480.jpg \
  --audio .devshared/audio30.wav > "$OUT/bench_media.json" 2>&1; echo "media rc=$?"; cat "$OUT/bench_media.json"
command -v ffmpeg > /dev/null && timeout 60 $B/g4 bench $M --json --device cuda --video tests/fixtures/media/video/clip.mp4 \
  >> "$OUT/bench_media.json" 2>&1 || echo "no ffmpeg on this machine: video TTFT not measured"
$B/g4 serve $M --port 8011 --device cuda --max-num-seqs 64 --max-model-len 1024 > "$OUT/serve.log" 2>&1 &
SP=$!
for i in $(seq 1 120); do python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8011/health')" 2>/dev/null && break; sleep 1; done
timeout 200 python3 tools/bench_serve.py --url http://127.0.0.1:8011 --concurrency 1,8,32,64 --prompt-len 512 \
  --gen 256 --out "$OUT/serve_bench.json" > "$OUT/serve_bench.log" 2>&1; echo "serve bench rc=$?"
tail -30 "$OUT/serve_bench.log"
kill -TERM $SP; wait $SP; echo "serve exit $?"; tail -3 "$OUT/serve.log"
