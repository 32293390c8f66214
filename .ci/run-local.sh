#!/usr/bin/env bash
# Runs redcast for real on this machine: makes sure a Redis answers on
# 127.0.0.1:6379 (installing and starting one if needed), then starts the
# gateway with config.example.toml. Extra arguments go to redcast.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

if ! command -v redis-server >/dev/null 2>&1; then
  $SUDO apt-get update
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server
fi

redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }
if ! redis_up; then
  echo "starting a local redis-server on 127.0.0.1:6379"
  redis-server --bind 127.0.0.1 --port 6379 --save '' --appendonly no --daemonize yes >/dev/null
  for _ in $(seq 1 100); do redis_up && break; sleep 0.1; done
  redis_up || { echo "redis-server did not start" >&2; exit 1; }
fi

exec cargo run --release --locked -- --config config.example.toml "$@"
