#!/usr/bin/env bash
# deps.sh - install what building and testing g4 needs on Debian 12 (run as root).
# Idempotent: skips apt when every tool is already there.
set -euo pipefail
need=()
command -v cc >/dev/null 2>&1 || need+=(build-essential)
command -v make >/dev/null 2>&1 || need+=(make)
command -v python3 >/dev/null 2>&1 || need+=(python3)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
# media: image decoders, audio decode + resample (libs), video frames (the ffmpeg command)
# server: libcurl (image_url / video_url http(s) fetch)
for p in libjpeg62-turbo-dev libpng-dev libwebp-dev libgif-dev libsndfile1-dev libvorbis-dev libsoxr-dev libcurl4-openssl-dev; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
command -v ffmpeg >/dev/null 2>&1 || need+=(ffmpeg)
# server: curl (demo), Python venv + pip for the server tests (openai client, pytest, lm-eval)
command -v curl >/dev/null 2>&1 || need+=(curl)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need+=(python3-venv python3-pip)
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${need[@]}"
fi
