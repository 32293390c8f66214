#!/usr/bin/env bash
# One command for the whole comparison: builds the release binaries,
# starts a private redis-server on a free loopback port, runs redcast and
# Nchan (nginx) side by side through every scenario, and writes
# docs/benchmarks.md from the JSON reports of this one run.
#
#   bash bench/run-all.sh            # ~8-12 minutes on 2 cores
#
# Environment:
#   OUT=DIR        where the raw reports and logs go (default: mktemp -d)
#   DOC=FILE       the Markdown written (default: docs/benchmarks.md)
#   PROFILE=0      skip the perf/strace profile of redcast (default 1)
#   ONLY="a b"     run only these cases (names below; "profile" for the
#                  profiling runs; "cluster" for the Redis Cluster cases of
#                  bench/cluster.sh; "durable" for bench/durable.sh, which
#                  then rewrites only its section of DOC), e.g. into an
#                  existing OUT to redo some
#   REDCAST_BIN    use this redcast binary instead of building the work tree
#   REDCAST_COMMIT the commit it was built from, for the report
#
# Pinning: the server under test (redcast, or nginx master+worker) runs on
# core 0, the load generator on core 1 (taskset); redis-server is not
# pinned (sharing core 1 with the generator added ms of scheduling delay
# to the latency tail in trials). All
# traffic is on 127.0.0.0/8; every run is bounded by --max-run.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
OUT="${OUT:-$(mktemp -d /tmp/redcast-bench.XXXXXX)}"
DOC="${DOC:-docs/benchmarks.md}"
PROFILE="${PROFILE:-1}"
ONLY="${ONLY:-}"
mkdir -p "$OUT"
echo "== results in $OUT" >&2
started=$(date +%s)

# One process may open at most `ulimit -Hn` files (20,000 here): the
# server and the load generator are separate processes, so each holds its
# own ~19,000 sockets. Raise the soft limit for everything started below.
ulimit -n "$(ulimit -Hn)"

TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BENCH="$TARGET_DIR/release/redcast-bench"
if [ -n "${REDCAST_BIN:-}" ]; then
  # A redcast built elsewhere (e.g. from a clean checkout of a commit).
  echo "== building the load generator; redcast is $REDCAST_BIN" >&2
  cargo build --release -p redcast-bench >&2
  REDCAST="$REDCAST_BIN"
else
  echo "== building release binaries" >&2
  cargo build --release -p redcast -p redcast-bench >&2
  REDCAST="$TARGET_DIR/release/redcast"
fi
echo "$REDCAST" >"$OUT/redcast-binary.txt"
echo "${REDCAST_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null)}" >"$OUT/redcast-commit.txt"

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# --- redis -----------------------------------------------------------------
command -v redis-server >/dev/null 2>&1 || {
  echo "== installing redis-server" >&2
  apt-get update >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server redis-tools >&2
}
REDIS_PORT=$(free_port)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
  --maxclients 10000 --daemonize no >"$OUT/redis.log" 2>&1 &
REDIS_PID=$!
REDCAST_PID=""
NCHAN_DIR=""
# Per case (the cluster cases set them): redcast's Redis URL and extra
# environment, and the --aux-pid arguments of the load generator.
RC_REDIS_URL=""
RC_EXTRA_ENV=()
AUX_ARGS=(--aux-pid "$REDIS_PID")
source bench/cluster.sh
source bench/durable.sh

cleanup() {
  if [ -n "$REDCAST_PID" ]; then kill -TERM "$REDCAST_PID" 2>/dev/null || true; fi
  if [ -n "$NCHAN_DIR" ]; then bench/nchan/teardown.sh "$NCHAN_DIR" >/dev/null 2>&1 || true; fi
  cluster_stop
  kill -TERM "$REDIS_PID" 2>/dev/null || true
}
trap cleanup EXIT

for _ in $(seq 1 50); do
  redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break
  sleep 0.1
done
redis-cli -p "$REDIS_PORT" ping >/dev/null

# --- Nchan: install (apt-get) once and check it starts ---------------------
# (not for ONLY=cluster or durable, which run redcast alone)
NCHAN_PORT=$(free_port)
if ! [[ "$ONLY" =~ ^(\ *(cluster|durable)[a-z0-9-]*\ *)+$ ]]; then
  NCHAN_DIR=$(REDIS_PORT=$REDIS_PORT NCHAN_PORT=$NCHAN_PORT bench/nchan/setup.sh)
  cp "$NCHAN_DIR/nginx.conf" "$OUT/nginx.conf"
  bench/nchan/teardown.sh "$NCHAN_DIR"
  NCHAN_DIR=""
fi

# --- redcast config: room for 19,000 clients from one address --------------
RC_PORT=$(free_port)
ADMIN_PORT=$(free_port)
cat >"$OUT/redcast.toml" <<EOF
# Written by bench/run-all.sh
[server]
max_connections = 19900
max_pending_handshakes = 1024

[client]
# All benchmark clients come from 127.0.0.x: no per-IP cap.
max_connections_per_ip = 0

[log]
level = "warn"
EOF

# --- TLS: a self-signed certificate for localhost (wss:// cases) ---------
# An end-entity certificate (CA:FALSE: webpki refuses a CA certificate as
# the server's), trusted by redcast-bench through --ca-file.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -keyout "$OUT/tls-key.pem" -out "$OUT/tls-cert.pem" -days 3 -subj /CN=localhost \
  -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
  -addext "basicConstraints=critical,CA:FALSE" >"$OUT/openssl.log" 2>&1

SERVER_ARGS=()
SERVER_PIDS="" # the server's processes, comma-separated (for perf -p)
NCHAN_TLS_PORT=$(free_port)
# start_server knobs (environment of run_case):
#   RC_TLS=1       redcast serves wss:// (RC_TICKETS=0: tls.session_tickets off)
#   NCHAN_TLS=1    nginx terminates TLS (listen ... ssl, same certificate)
#   RC_CPUS=LIST   CPUs redcast may run on (default 0); RC_WORKERS=N sets
#                  server.worker_threads (default: the CPUs it may run on)
#   BENCH_CPUS=LIST CPUs of the load generator (default 1)
start_server() { # target name
  local target=$1 name=$2
  SERVER_ARGS=()
  if [ "$target" = redcast ]; then
    local tls_env=("${RC_EXTRA_ENV[@]}") scheme=ws tls_args=()
    local redis_url=${RC_REDIS_URL:-redis://127.0.0.1:$REDIS_PORT}
    # RC_DIRECT=0: server.direct_writes off (the design-gain rows).
    if [ "${RC_DIRECT:-1}" = 0 ]; then tls_env+=(REDCAST_SERVER__DIRECT_WRITES=false); fi
    if [ -n "${RC_WORKERS:-}" ]; then tls_env+=(REDCAST_SERVER__WORKER_THREADS="$RC_WORKERS"); fi
    if [ "${RC_TICKETS:-1}" = 0 ]; then tls_env+=(REDCAST_TLS__SESSION_TICKETS=false); fi
    if [ "${RC_TLS:-0}" = 1 ]; then
      tls_env+=(REDCAST_TLS__CERT="$OUT/tls-cert.pem" REDCAST_TLS__KEY="$OUT/tls-key.pem")
      scheme=wss
      tls_args=(--ca-file "$OUT/tls-cert.pem")
    fi
    env "${tls_env[@]}" taskset -c "${RC_CPUS:-0}" "$REDCAST" --config "$OUT/redcast.toml" --listen "127.0.0.1:$RC_PORT" \
      --admin-listen "127.0.0.1:$ADMIN_PORT" --redis-url "$redis_url" \
      >"$OUT/$name-redcast.server.log" 2>&1 &
    REDCAST_PID=$!
    for _ in $(seq 1 100); do
      curl -sf "http://127.0.0.1:$ADMIN_PORT/readyz" >/dev/null 2>&1 && break
      sleep 0.1
    done
    curl -sf "http://127.0.0.1:$ADMIN_PORT/readyz" >/dev/null
    # wss:// by name: the certificate is for localhost.
    local host=127.0.0.1
    if [ "$scheme" = wss ]; then host=localhost; fi
    SERVER_PIDS="$REDCAST_PID"
    SERVER_ARGS=(--server-pid "$REDCAST_PID" --url "$scheme://$host:$RC_PORT/ws"
      --redis-url "$redis_url" "${tls_args[@]}")
  else
    local nchan_tls=()
    if [ "${NCHAN_TLS:-0}" = 1 ]; then
      nchan_tls=(NCHAN_TLS_PORT="$NCHAN_TLS_PORT" NCHAN_TLS_CERT="$OUT/tls-cert.pem"
        NCHAN_TLS_KEY="$OUT/tls-key.pem")
    fi
    NCHAN_DIR=$(env "${nchan_tls[@]}" NCHAN_WORKERS="${NCHAN_WORKERS:-1}" NCHAN_TASKSET=0 SKIP_INSTALL=1 \
      REDIS_PORT=$REDIS_PORT NCHAN_PORT=$NCHAN_PORT bench/nchan/setup.sh 2>/dev/null)
    local master
    master=$(cat "$NCHAN_DIR/nginx.pid")
    SERVER_ARGS=(--server-pid "$master")
    SERVER_PIDS="$master"
    for w in $(pgrep -P "$master"); do
      SERVER_ARGS+=(--server-pid "$w")
      SERVER_PIDS="$SERVER_PIDS,$w"
    done
    if [ "${NCHAN_TLS:-0}" = 1 ]; then
      SERVER_ARGS+=(--url "wss://localhost:$NCHAN_TLS_PORT/sub/{channels}"
        --ca-file "$OUT/tls-cert.pem")
    else
      SERVER_ARGS+=(--url "ws://127.0.0.1:$NCHAN_PORT/sub/{channels}")
    fi
    SERVER_ARGS+=(--publish-url "http://127.0.0.1:$NCHAN_PORT/pub/{channel}")
  fi
}

stop_server() {
  if [ -n "$REDCAST_PID" ]; then
    kill -TERM "$REDCAST_PID" 2>/dev/null || true
    for _ in $(seq 1 150); do kill -0 "$REDCAST_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$REDCAST_PID" 2>/dev/null || true
    wait "$REDCAST_PID" 2>/dev/null || true
    REDCAST_PID=""
  fi
  if [ -n "$NCHAN_DIR" ]; then
    bench/nchan/teardown.sh "$NCHAN_DIR"
    NCHAN_DIR=""
  fi
  redis-cli -p "$REDIS_PORT" flushall >/dev/null
}

# Each run gets its own block of client source addresses (127.0.0.N..N+4)
# so that TIME_WAIT sockets of earlier runs do not slow its connects.
SOURCE_BASE=2
COMMANDS="$OUT/commands.txt"
# A partial re-run (ONLY=...) into an existing OUT keeps the earlier list.
if [ -z "$ONLY" ]; then : >"$COMMANDS"; fi

busy_cores() { # CPU (in cores) used by the whole machine over 1 s
  local a b
  a=$(awk '/^cpu /{print $2+$3+$4+$7+$8+$9}' /proc/stat)
  sleep 1
  b=$(awk '/^cpu /{print $2+$3+$4+$7+$8+$9}' /proc/stat)
  awk -v a="$a" -v b="$b" -v hz="$(getconf CLK_TCK)" 'BEGIN{printf "%.2f", (b-a)/hz}'
}

# This machine may be shared (builds, browsers): before each case, wait
# (at most QUIET_WAIT s) until less than 0.15 core is busy, and record
# what was seen. Each report also carries "other CPU" during its window.
QUIET_WAIT="${QUIET_WAIT:-90}"
wait_quiet() { # name
  local busy waited=0
  busy=$(busy_cores)
  while awk -v b="$busy" 'BEGIN{exit !(b > 0.15)}' && [ "$waited" -lt "$QUIET_WAIT" ]; do
    busy=$(busy_cores)
    waited=$((waited + 1))
  done
  echo "$1 busy_cores_before=$busy waited_s=$waited" >>"$OUT/quiet.txt"
}

run_case() { # name target bench-args...   (CASE_GROUP: ONLY may name it)
  local name=$1 target=$2
  shift 2
  case " $ONLY " in
    "  ") ;;
    *" $name "*) ;;
    *" ${CASE_GROUP:-.} "*) ;;
    *) return 0 ;;
  esac
  local try
  for try in 1 2 3; do
    wait_quiet "$name-$target"
    start_server "$target" "$name"
    local cmd=(taskset -c "${BENCH_CPUS:-1}" "$BENCH" --target "$target" --label "$name"
      "${AUX_ARGS[@]}" --source-base "$SOURCE_BASE" --max-run 240
      --json "$OUT/$name-$target.json" "${SERVER_ARGS[@]}" "$@")
    SOURCE_BASE=$((SOURCE_BASE + 4))
    if [ "$SOURCE_BASE" -gt 240 ]; then SOURCE_BASE=2; fi
    echo "== $name / $target (try $try)" >&2
    if [ "$target" = nchan ] && [ "$name" = a-fanout-40 ]; then
      # Evidence that Nchan really goes through Redis: its pub/sub channels.
      (sleep 6; redis-cli -p "$REDIS_PORT" PUBSUB CHANNELS '*' >"$OUT/nchan-pubsub-channels.txt" 2>&1) &
    fi
    # DURING: a function run 6 s into the case (e.g. cluster_pubsub).
    if [ -n "${DURING:-}" ]; then (sleep 6; "$DURING" "$name") & fi
    if ! "${cmd[@]}" >"$OUT/$name-$target.txt" 2>"$OUT/$name-$target.err"; then
      echo "   (failed: see $OUT/$name-$target.err)" >&2
      tail -3 "$OUT/$name-$target.err" >&2 || true
    fi
    grep -E "latency|µs/delivery|bytes/connection|connect wave  |reconnect wave|losses|other CPU|kernel:" \
      "$OUT/$name-$target.txt" >&2 || true
    stop_server
    # Another process took a good part of a core during the window: the
    # numbers are disturbed, so run the case again (at most 3 tries).
    local other
    other=$(python3 -c 'import json,sys
try: print(json.load(open(sys.argv[1]))["cpu"]["other_util_pct"] or 0)
except Exception: print(0)' "$OUT/$name-$target.json")
    if awk -v o="$other" 'BEGIN{exit !(o <= 30)}'; then break; fi
    echo "   other processes used $other % of a core during the window: again" >&2
  done
  echo "${cmd[*]}" | sed "s|$ROOT/||g" >>"$COMMANDS"
}

both() { # name bench-args...
  local name=$1
  shift
  run_case "$name" redcast "$@"
  run_case "$name" nchan "$@"
}

# The targets of the performance issue, then the other scenarios.
both a-fanout-40 --scenario broadcast --clients 5000 --channels 10 --rate 40 --duration 10
both b-fanout-400 --scenario broadcast --clients 5000 --channels 10 --rate 400 --duration 10
# 19,000 WebSockets: one nginx worker cannot hold them under the 20,000
# file limit (worker_connections 19,900 ran out and ~300 clients were
# reset), so these cases give nginx 2 workers, both still on core 0.
run_case c-idle-19k redcast --scenario idle --clients 19000 --channels 0 --settle 3
NCHAN_WORKERS=2 run_case c-idle-19k nchan --scenario idle --clients 19000 --channels 1 --settle 3
# The same over TLS (wss://), nginx terminating TLS in front of Nchan with
# the same P-256 certificate (TLS 1.3): state per connection.
RC_TLS=1 run_case c-idle-19k-tls redcast --scenario idle --clients 19000 --channels 0 --settle 3
NCHAN_TLS=1 NCHAN_WORKERS=2 run_case c-idle-19k-tls nchan --scenario idle --clients 19000 --channels 1 --settle 3
both d-latency --scenario broadcast --clients 200 --channels 20 --rate 500 --duration 10
run_case e-connect-storm redcast --scenario connect-storm --clients 19000 --channels 100
NCHAN_WORKERS=2 run_case e-connect-storm nchan --scenario connect-storm --clients 19000 --channels 100
both broadcast-1ch --scenario broadcast --clients 2000 --channels 1 --rate 50 --duration 10
both many-channels --scenario many-channels --clients 2000 --rate 2000 --duration 10
both mixed --scenario mixed --clients 2000 --channels 100 --subs-per-client 3 --rate 500 --duration 10
run_case reconnect-storm redcast --scenario reconnect-storm --clients 19000 --channels 100
NCHAN_WORKERS=2 run_case reconnect-storm nchan --scenario reconnect-storm --clients 19000 --channels 100

# TLS (wss://) against nginx terminating TLS in front of Nchan: fan-out at
# (a)'s rate (CPU per delivery), the connect storm (handshake CPU), and a
# reconnect storm with and without redcast's session tickets (resumed
# handshakes counted by the generator, each client with its own store).
RC_TLS=1 run_case a-fanout-40-tls redcast --scenario broadcast --clients 5000 --channels 10 --rate 40 --duration 10
NCHAN_TLS=1 run_case a-fanout-40-tls nchan --scenario broadcast --clients 5000 --channels 10 --rate 40 --duration 10
RC_TLS=1 RC_DIRECT=0 run_case a-fanout-40-tls-queued redcast --scenario broadcast --clients 5000 --channels 10 --rate 40 --duration 10
# Idle wss:// memory with rustls's whole connection kept (the queued path,
# direct writes off) against the record-layer hand-over (default).
RC_TLS=1 RC_DIRECT=0 run_case c-idle-19k-tls-queued redcast --scenario idle --clients 19000 --channels 0 --settle 3
RC_TLS=1 run_case e-connect-storm-tls redcast --scenario connect-storm --clients 19000 --channels 100
NCHAN_TLS=1 NCHAN_WORKERS=2 run_case e-connect-storm-tls nchan --scenario connect-storm --clients 19000 --channels 100
RC_TLS=1 run_case reconnect-storm-tls redcast --scenario reconnect-storm --clients 19000 --channels 100
RC_TLS=1 RC_TICKETS=0 run_case reconnect-storm-tls-notickets redcast --scenario reconnect-storm --clients 19000 --channels 100
NCHAN_TLS=1 NCHAN_WORKERS=2 run_case reconnect-storm-tls nchan --scenario reconnect-storm --clients 19000 --channels 100

# Fan-out on every core: redcast on both cores (the generator on both too),
# server.worker_threads 2 (one fan-out shard per core) against 1, at a rate
# that keeps it busy; the reports carry each redcast thread's CPU.
RC_CPUS=0,1 BENCH_CPUS=0,1 RC_WORKERS=2 run_case multicore-w2 redcast --scenario broadcast --clients 5000 --channels 10 --rate 600 --duration 10
RC_CPUS=0,1 BENCH_CPUS=0,1 RC_WORKERS=1 run_case multicore-w1 redcast --scenario broadcast --clients 5000 --channels 10 --rate 600 --duration 10

# Design gain: the same cases with server.direct_writes off, i.e. every
# delivery through the session's writer task, as before direct mode (and as
# over TLS). The rows next to the default ones show what direct mode buys.
RC_DIRECT=0 run_case a-fanout-40-queued redcast --scenario broadcast --clients 5000 --channels 10 --rate 40 --duration 10
RC_DIRECT=0 run_case b-fanout-400-queued redcast --scenario broadcast --clients 5000 --channels 10 --rate 400 --duration 10
RC_DIRECT=0 run_case mixed-queued redcast --scenario mixed --clients 2000 --channels 100 --subs-per-client 3 --rate 500 --duration 10

# Redis Cluster: sharded against classic pub/sub (bench/cluster.sh).
cluster_cases

# Durable channels: publish cost and recovery storm (bench/durable.sh).
durable_cases

# --- profiles: redcast at (a) and (b), Nchan at (a), both in a storm --------
delivered_total() { # redcast's frames delivered so far (Nchan: none)
  if [ -n "$REDCAST_PID" ]; then
    curl -sf "http://127.0.0.1:$ADMIN_PORT/metrics" | awk '/^redcast_frames_delivered_total /{print $2}'
  else
    echo 0
  fi
}
# target label seconds-before bench-args... -- tool... (@PID@: the server's
# processes, comma-separated)
profile_run() {
  local target=$1 label=$2 pause=$3
  shift 3
  local bargs=()
  while [ "$1" != -- ]; do bargs+=("$1"); shift; done
  shift
  wait_quiet "$label"
  start_server "$target" "$label"
  taskset -c 1 "$BENCH" --target "$target" --label "$label" --aux-pid "$REDIS_PID" \
    --source-base "$SOURCE_BASE" --max-run 120 --json "$OUT/$label.json" "${SERVER_ARGS[@]}" \
    "${bargs[@]}" >"$OUT/$label.txt" 2>"$OUT/$label.err" &
  local bench_pid=$!
  SOURCE_BASE=$((SOURCE_BASE + 4))
  if [ "$SOURCE_BASE" -gt 240 ]; then SOURCE_BASE=2; fi
  sleep "$pause"
  local d0 d1 args=()
  for a in "$@"; do args+=("${a//@PID@/$SERVER_PIDS}"); done
  d0=$(delivered_total)
  "${args[@]}" || true
  d1=$(delivered_total)
  echo "$((d1 - d0))" >"$OUT/$label.deliveries"
  wait "$bench_pid" || true
  stop_server
}
perf_reports() { # tag: summaries of $OUT/perf-<tag>.data
  local tag=$1 data="$OUT/perf-$1.data"
  [ -s "$data" ] || return 0
  perf report -i "$data" --no-children --sort sym -g none --percent-limit 0.7 \
    2>/dev/null | grep -v '^#' | grep '%' | head -40 >"$OUT/perf-top-$tag.txt" || true
  perf report -i "$data" --no-children --sort dso -g none 2>/dev/null \
    | grep -v '^#' | grep '%' | head -8 >"$OUT/perf-dso-$tag.txt" || true
  perf report -i "$data" --children --sort sym -g none 2>/dev/null \
    | grep -v '^#' | grep -E '\] (__x64_sys_(sendto|sendmsg|writev|write|recvfrom|epoll_wait|epoll_ctl|accept4|close|connect)|do_syscall_64|tcp_v4_rcv|__tcp_transmit_skb|sock_def_readable|__netif_receive_skb|process_backlog|asm_exc_page_fault) *$' \
    >"$OUT/perf-children-$tag.txt" || true
}
FANOUT=(--scenario broadcast --clients 5000 --channels 10 --duration 12)
if [ "$PROFILE" = 1 ] && { [ -z "$ONLY" ] || [[ " $ONLY " == *" profile "* ]]; }; then
  echo "== profiling (perf record, perf trace -s)" >&2
  # perf record: where the CPU goes (cpu-clock sampling: this machine has
  # no hardware counters), 5 s in the middle of the publishing window, at
  # the rates of targets (a) and (b); Nchan at (a) too, for the split of
  # its CPU between the kernel and nginx. "children" of the syscall entry
  # points: the share of CPU spent inside send calls, kernel path included.
  for r in 40 400; do
    profile_run redcast "profile-perf-$r" 5 "${FANOUT[@]}" --rate "$r" -- \
      perf record -e cpu-clock -F 999 -g -p @PID@ -o "$OUT/perf-$r.data" -- sleep 5 \
      >"$OUT/perf-record-$r.log" 2>&1
    perf_reports "$r"
  done
  profile_run nchan profile-perf-nchan-40 5 "${FANOUT[@]}" --rate 40 -- \
    perf record -e cpu-clock -F 999 -g -p @PID@ -o "$OUT/perf-nchan-40.data" -- sleep 5 \
    >"$OUT/perf-record-nchan-40.log" 2>&1
  perf_reports nchan-40
  # The connect wave of (e): 19,000 clients on 100 channels, held 3 s
  # (idle scenario), so the 2.5 s sample covers the wave and no teardown.
  for t in redcast nchan; do
    NCHAN_WORKERS=2 profile_run "$t" "profile-perf-storm-$t" 0 \
      --scenario idle --clients 19000 --channels 100 --settle 3 -- \
      perf record -e cpu-clock -F 999 -g -p @PID@ -o "$OUT/perf-storm-$t.data" -- sleep 2.5 \
      >"$OUT/perf-record-storm-$t.log" 2>&1
    perf_reports "storm-$t"
  done
  # Syscalls per delivery, at both rates (batching differs): perf trace -s
  # (like strace -c, but without stopping the process at each call).
  for r in 40 400; do
    profile_run redcast "profile-syscalls-$r" 5 "${FANOUT[@]}" --rate "$r" -- \
      timeout 20 perf trace -s -p @PID@ -o "$OUT/syscalls-$r.txt" -- sleep 4
  done
fi

finished=$(date +%s)
if [[ "$ONLY" =~ ^(\ *durable[a-z0-9-]*\ *)+$ ]]; then
  python3 bench/render_durable.py "$OUT" "$DOC"
else
  python3 bench/render.py "$OUT" "$DOC" "$((finished - started))"
fi
echo "== wrote $DOC ($((finished - started)) s); raw results in $OUT" >&2
