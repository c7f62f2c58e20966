# device_env.sh - sourced by the device scripts (gpu_bench_all.sh, gpu_profile.sh, gpu_final_check.sh):
# binaries built on the dev machine in .devbin/, their media libraries in .devlibs/, the Gemma 3
# tokenizer gzipped in .devshared/ (all git-excluded, carried by the device call; 64 MiB in all).
# Scripts print their result lines as they go and the call runs them bare: the call returns the
# last 12,000 characters of output, and a `| tail` in the call's command prints nothing at all
# when the call reaches its time limit (stop 19 lost a 7-minute call that way).
OUT=${OUT:-/tmp/g4-gpu-out}
mkdir -p "$OUT"
export LD_LIBRARY_PATH=$PWD/.devlibs:$LD_LIBRARY_PATH
B=.devbin
# binaries packed by tools/devpack.sh; a static ffmpeg + ffprobe (video) when .devff is carried
[ -f $B/bins.tar.xz ] && python3 -c "import tarfile; tarfile.open('$B/bins.tar.xz').extractall('$B')"
if [ -f .devff/ff.tar.xz ]; then
  mkdir -p /tmp/g4ff && python3 -c "import tarfile; tarfile.open('.devff/ff.tar.xz').extractall('/tmp/g4ff')"
  export PATH=/tmp/g4ff:$PATH
fi

# synth_12b DIR: the synthetic 12B NVFP4A16 checkpoint at DIR, unless one is there already.
# G4_SHARED: synth converts the Gemma 3 tokenizer at $G4_SHARED/data/gemma3-tokenizer to Gemma 4 names.
synth_12b() {
  [ -f "$1/config.json" ] && return 0
  mkdir -p /tmp/g4shared/data/gemma3-tokenizer
  gunzip -c .devshared/tokenizer.json.gz > /tmp/g4shared/data/gemma3-tokenizer/tokenizer.json
  G4_SHARED=/tmp/g4shared timeout 150 $B/g4 synth "$1" --preset gemma-4-12b --format nvfp4a16 --threads 16 \
    > "$OUT/synth.log" 2>&1
  echo "synth rc=$? $(tail -1 "$OUT/synth.log")"
}
