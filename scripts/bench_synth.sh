#!/bin/sh
# bench_synth.sh - time `g4 synth` on the full 12B preset (NVFP4A16 by default), check it with
# `g4 info`, then delete it (about 7.7 GB). Usage: scripts/bench_synth.sh [G4_BIN] [FORMAT] [OUT_DIR]
set -e
G4=${1:-build/g4}
FMT=${2:-nvfp4a16}
OUT=${3:-/tmp/g4-synth-12b-$FMT}
rm -rf "$OUT"
start=$(date +%s)
"$G4" synth "$OUT" --preset gemma-4-12b --format "$FMT" --seed 1
end=$(date +%s)
echo "synth: $((end - start)) s, $(du -sb "$OUT" | cut -f1) bytes on disk"
"$G4" info "$OUT"
rm -rf "$OUT"
