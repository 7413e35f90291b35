#!/bin/sh
# Stops the backends that scripts/start-backends.sh started, as listed in
# $BACKENDS_DIR/backends.pid (default target/backends): each gets SIGTERM
# (with its whole process group), then SIGKILL if it is still there after
# $BACKEND_STOP_TIMEOUT seconds (default 15). Only the processes of that
# file are touched: a pid now used by another process is left alone. The
# pid file is removed; logs and data stay.
#
# Usage: scripts/stop-backends.sh            stop them
#        scripts/stop-backends.sh --running  print the names of those still running
set -eu
DIR=${BACKENDS_DIR:-target/backends}
PIDS="$DIR/backends.pid"
TIMEOUT=${BACKEND_STOP_TIMEOUT:-15}
[ -f "$PIDS" ] || exit 0

# PID START: is PID still the process that was started (same start time),
# and not yet a zombie?
ours() {
  stat=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null) || return 1
  [ "$(echo "$stat" | cut -d' ' -f1)" != Z ] && [ "$(echo "$stat" | cut -d' ' -f20)" = "$2" ]
}
# The names of the listed processes still running.
running() {
  while read -r name pid start; do
    if ours "$pid" "$start"; then printf ' %s' "$name"; fi
  done <"$PIDS"
}

if [ "${1:-}" = "--running" ]; then
  running
  exit 0
fi

signal() { # SIGNAL: to each listed process that is still ours, and its group
  while read -r name pid start; do
    if ours "$pid" "$start"; then
      kill "-$1" -- "-$pid" 2>/dev/null || kill "-$1" "$pid" 2>/dev/null || true
    fi
  done <"$PIDS"
}

left=$(running)
if [ -n "$left" ]; then
  echo "stopping:$left"
  signal TERM
  i=0
  while [ -n "$(running)" ] && [ "$i" -lt $((TIMEOUT * 4)) ]; do
    i=$((i + 1))
    sleep 0.25
  done
  left=$(running)
  if [ -n "$left" ]; then
    echo "killing:$left"
    signal KILL
  fi
fi
rm -f "$PIDS"
