#!/bin/sh
# devpack.sh - pack the dev machine's binaries for a device call: strip build-dev/{g4,g4-tests,
# bench_batch, bench_cuda_gemm, bench_cuda_gemv} into .devbin/bins.tar.xz (the carry is 64 MiB in all; compressed they are ~2.5 MB
# each). device_env.sh unpacks it, and .devff/ff.tar.xz (static ffmpeg + ffprobe, when carried).
set -e
BUILD=${BUILD:-build-dev}
rm -rf .devbin && mkdir -p .devbin /tmp/g4-devpack
for b in g4 g4-tests bench_batch bench_cuda_gemm bench_cuda_gemv; do
  [ -x "$BUILD/$b" ] && strip -o /tmp/g4-devpack/$b "$BUILD/$b"
done
tar -C /tmp/g4-devpack -cf - . | xz -T0 -6 > .devbin/bins.tar.xz
ls -la .devbin
