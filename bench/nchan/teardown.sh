#!/usr/bin/env bash
# Stops the nginx started by bench/nchan/setup.sh DIR and removes DIR.
#   bench/nchan/teardown.sh DIR [--keep]
set -euo pipefail
DIR="${1:?usage: teardown.sh DIR [--keep]}"
pidfile="$DIR/nginx.pid"
if [ -s "$pidfile" ]; then
  master="$(cat "$pidfile")"
  # Only the master we started (by its pid file), never nginx by name.
  kill -TERM "$master" 2>/dev/null || true
  for _ in $(seq 1 100); do
    kill -0 "$master" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$master" 2>/dev/null; then
    # Fast shutdown did not finish in 10 s: kill the master and its workers.
    for child in $(ps -o pid= --ppid "$master" 2>/dev/null); do
      kill -KILL "$child" 2>/dev/null || true
    done
    kill -KILL "$master" 2>/dev/null || true
  fi
fi
if [ "${2:-}" != "--keep" ]; then
  case "$DIR" in
    /tmp/redcast-nchan.*) rm -rf "$DIR" ;;
    *) echo "not removing $DIR (not made by setup.sh)" >&2 ;;
  esac
fi
