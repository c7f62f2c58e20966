#!/usr/bin/env bash
# demo.sh - the main job on the built-in default: build g4, start `g4 serve` on the
# bundled tiny model (random weights: the reply is gibberish, the plumbing is real),
# send one chat request with curl, show the reply, stop the server.
#   G4_MODEL=DIR  serve another model directory;  G4_PORT=N  listen on port N.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
make -j"$(nproc)" build/g4 >/dev/null
MODEL=${G4_MODEL:-tests/fixtures/models/tiny-a}
PORT=${G4_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}
URL=http://127.0.0.1:$PORT
echo "== g4 info $MODEL"
build/g4 info "$MODEL"
echo "== g4 serve $MODEL --port $PORT --served-model-name g4-demo"
build/g4 serve "$MODEL" --port "$PORT" --served-model-name g4-demo --max-model-len 1024 --threads 2 \
  2> build/demo-serve.log &
SERVER=$!
trap 'kill -TERM $SERVER 2>/dev/null || true; wait $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do
  curl -sf "$URL/health" >/dev/null 2>&1 && break
  kill -0 $SERVER 2>/dev/null || { cat build/demo-serve.log; exit 1; }
  sleep 0.1
done
REQ='{"model":"g4-demo","messages":[{"role":"user","content":"Hello! Who are you?"}],"max_tokens":24,"temperature":0}'
echo "== POST $URL/v1/chat/completions"
echo "$REQ"
echo "== reply"
curl -sS "$URL/v1/chat/completions" -H 'Content-Type: application/json' -d "$REQ"
echo
kill -TERM $SERVER
wait $SERVER && echo "== server stopped cleanly (exit 0)"
trap - EXIT
