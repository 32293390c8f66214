#!/usr/bin/env bash
# WebSocket conformance: the Autobahn TestSuite fuzzing client (wstest)
# against redcast's /echo route (server.conformance_echo), on both write
# paths: direct writes (plain TCP, the default) and the queued path (plain
# TCP with server.direct_writes = false, and TLS). Fails when a case is
# neither OK, NON-STRICT nor INFORMATIONAL.
#
#   bash conformance/run.sh                          # sections 1-7, 9, 10 (~6 min on 2 cores)
#   SECTIONS="1 2 3 4 5 6 7 10" bash conformance/run.sh   # what CI runs (~35 s)
#   DOC=docs/conformance.md bash conformance/run.sh  # also rewrite the summary
#
# Environment: SECTIONS (default "1 2 3 4 5 6 7 9 10"; 12 and 13 are
# compression, which redcast does not negotiate), AGENTS (default
# "direct queued tls"), OUT (reports; default target/conformance),
# WSTEST_VENV (the Python 2.7 virtualenv; default ~/.cache/redcast/wstest),
# PYTHON2 (default: pyenv's 2.7.18), REDCAST_BIN (default: build release).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
SECTIONS="${SECTIONS:-1 2 3 4 5 6 7 9 10}"
AGENTS="${AGENTS:-direct queued tls}"
OUT="${OUT:-$ROOT/target/conformance}"
VENV="${WSTEST_VENV:-$HOME/.cache/redcast/wstest}"
PYTHON2="${PYTHON2:-$HOME/.pyenv/versions/2.7.18/bin/python}"
mkdir -p "$OUT"

# --- wstest, in its own Python 2.7 virtualenv (pinned requirements) -----
if [ ! -x "$VENV/bin/wstest" ]; then
  echo "== installing wstest into $VENV" >&2
  [ -x "$PYTHON2" ] || { echo "Python 2.7 not found at $PYTHON2 (set PYTHON2)" >&2; exit 1; }
  tools="$(mktemp -d)"
  "$PYTHON2" -m pip install -q --disable-pip-version-check --target "$tools" virtualenv==16.7.12
  PYTHONPATH="$tools" "$PYTHON2" -m virtualenv -q "$VENV"
  rm -rf "$tools"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r conformance/requirements-py2.txt
fi

# --- redcast --------------------------------------------------------------
if [ -z "${REDCAST_BIN:-}" ]; then
  cargo build --locked --release -p redcast >&2
  REDCAST_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/redcast"
fi
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
# A self-signed certificate for the TLS agent (wstest does not verify it).
if [[ " $AGENTS " == *" tls "* ]] && [ ! -f "$OUT/tls/cert.pem" ]; then
  mkdir -p "$OUT/tls"
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=localhost" \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$OUT/tls/key.pem" -out "$OUT/tls/cert.pem" 2>/dev/null
fi

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

# One redcast per agent. No Redis is needed: /echo never touches it.
servers=""
for agent in $AGENTS; do
  port=$(free_port)
  conf="$OUT/$agent.toml"
  {
    echo "[server]"
    echo "listen = \"127.0.0.1:$port\""
    echo "conformance_echo = true"
    [ "$agent" = queued ] && echo "direct_writes = false"
    echo "[admin]"
    echo "listen = \"127.0.0.1:$(free_port)\""
    echo "[redis]"
    echo "url = \"redis://127.0.0.1:$(free_port)\""
    echo "[client]"
    # Section 9 sends messages of up to 16 MiB, in bursts.
    echo "max_message_bytes = 67108864"
    echo "queue_max_bytes = 268435456"
    if [ "$agent" = tls ]; then
      echo "[tls]"
      echo "cert = \"$OUT/tls/cert.pem\""
      echo "key = \"$OUT/tls/key.pem\""
    fi
    echo "[log]"
    echo "level = \"error\""
  } >"$conf"
  "$REDCAST_BIN" --config "$conf" 2>"$OUT/$agent.log" &
  pids+=($!)
  scheme=ws; [ "$agent" = tls ] && scheme=wss
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
  done
  servers+="${servers:+,}{\"agent\": \"redcast-$agent\", \"url\": \"$scheme://127.0.0.1:$port/echo\"}"
done

cases=""
for s in $SECTIONS; do cases+="${cases:+,}\"$s.*\""; done
cat >"$OUT/fuzzingclient.json" <<JSON
{
  "outdir": "$OUT/reports",
  "servers": [$servers],
  "cases": [$cases],
  "exclude-cases": ["12.*", "13.*"],
  "exclude-agent-cases": {}
}
JSON
echo "== wstest: sections $SECTIONS against: $AGENTS" >&2
rm -rf "$OUT/reports"
(cd "$OUT" && "$VENV/bin/wstest" -m fuzzingclient -s "$OUT/fuzzingclient.json" >"$OUT/wstest.log" 2>&1)

python3 conformance/summary.py "$OUT/reports/index.json" "$SECTIONS" >"$OUT/summary.md"
status=$?
cat "$OUT/summary.md"
if [ -n "${DOC:-}" ]; then
  {
    python3 conformance/summary.py "$OUT/reports/index.json" "$SECTIONS" --doc
    echo
    echo "Run of $(date -u +%Y-%m-%d) at commit $(git rev-parse --short HEAD), $("$VENV/bin/wstest" -a 2>&1 | tr '\n' ' ' | sed 's/ *$//')."
  } >"$DOC"
fi
exit $status
