#!/usr/bin/env bash
# The soak (docs/soak.md): redcast with default settings under 5,000
# churning clients (connect, subscribe, add and drop a channel, close,
# again), 1,000 messages/s over 1,000 channels, a Redis restart every
# 5 minutes (alternately kill -9 and a clean shutdown) and a SIGHUP every
# minute, for 30 minutes; then every client leaves. Pass: RSS within 5 %
# after the 5-minute warm-up, fds back to baseline, connection, channel
# and subscription gauges back to zero, no message lost between restarts.
#
#   bash bench/soak.sh                        # 30 minutes, rewrites docs/soak.md
#   DURATION=3m WARMUP=1m bash bench/soak.sh  # a short smoke run (report in $OUT only)
#
# Extra arguments go to redcast-soak (see `redcast-soak --help`), e.g.
# `--clients 1000 --rate 200`. REDCAST_BIN: test this redcast binary
# instead of building the work tree (REDCAST_COMMIT names its commit in
# the doc). Loopback only; every wait is bounded.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${DURATION:-30m}"
WARMUP="${WARMUP:-5m}"
TARGET="${CARGO_TARGET_DIR:-target}"
OUT="${OUT:-$TARGET/soak}"
# The documented run rewrites the doc; a shortened one does not.
if [ "$DURATION" = 30m ]; then DOC="${DOC:-docs/soak.md}"; else DOC="${DOC:-}"; fi
# 5,000 client sockets in one process and 5,000 more in redcast.
ulimit -n "$(ulimit -Hn)"
if [ -n "${REDCAST_BIN:-}" ]; then
  cargo build --locked --release -p redcast-bench >&2
else
  cargo build --locked --release -p redcast -p redcast-bench >&2
  REDCAST_BIN="$TARGET/release/redcast"
fi
COMMIT="${REDCAST_COMMIT:-$(git rev-parse --short HEAD)}"
set +e
"$TARGET/release/redcast-soak" --redcast "$REDCAST_BIN" \
  --duration "$DURATION" --warmup "$WARMUP" --out "$OUT" "$@"
status=$?
set -e
if [ -n "$DOC" ] && [ -f "$OUT/report.md" ]; then
  {
    echo "# Soak: 30 minutes of churn, Redis restarts and reloads"
    echo
    echo "redcast runs with its default settings (loopback, one redis-server) while"
    echo "\`redcast-soak\` (bench/src/soak/) drives it. Regenerate with"
    echo "\`bash bench/soak.sh\` (about 32 minutes; \`DURATION=3m WARMUP=1m\` for a"
    echo "smoke run). Machine: $(nproc) cores, shared with other builds during the run;"
    echo "redcast at commit $COMMIT."
    echo
    echo "Payloads carry a per-channel sequence number, the count of that channel's"
    echo "publishes that failed so far (a gap they explain is the publisher's), and"
    echo "a phase: phases are odd"
    echo "while Redis is left alone and even from 0.5 s before a restart until"
    echo "0.5 s after redcast is ready again. A gap in one channel's sequence"
    echo "within an odd phase, on a client subscribed across it, is a lost message;"
    echo "messages around a restart are not judged (redcast stores nothing, so a"
    echo "message published while its subscription is being re-made is gone)."
    echo
    cat "$OUT/report.md"
  } >"$DOC"
fi
exit $status
