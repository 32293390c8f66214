# shellcheck shell=bash disable=SC2034  # sets run-all.sh's per-case variables
# Redis Cluster: sharded against classic pub/sub. Sourced by
# bench/run-all.sh (it uses its free_port, run_case, OUT ...), which runs
# it as the case group "cluster"; alone:
#
#   ONLY=cluster OUT=DIR bash bench/run-all.sh     # ~4 minutes
#
# Starts a real Redis Cluster on free loopback ports (3 masters with 1
# replica each, explicit bus ports: the default port+10000 breaks above
# 55535), then runs redcast in cluster mode on it twice per rate, with
# sharded pub/sub (redis.sharded = true; the generator SPUBLISHes) and
# with classic pub/sub (sharded = false; PUBLISH), same clients, channels
# and rate, and reports each node's CPU (--aux-pid NAME=PID). The cluster
# is torn down by cluster_stop (run-all's exit trap calls it too).
#
# Pinning as in run-all: redcast on core 0, the generator on core 1. The
# six redis-server processes are not pinned (with 2 cores, any pinning
# would put them behind redcast or the generator); their CPU is read per
# process, which is what the comparison needs, wherever they ran.
#
# Environment (besides run-all's):
#   CLUSTER_CLIENTS   WebSocket clients (default 1000: 5 per channel, so
#                     that 20,000 msg/s is 100,000 deliveries/s, which one
#                     redcast core sustains, while Redis handles 20,000
#                     messages a second)
#   CLUSTER_CHANNELS  channels, spread over all slots (default 200)
#   CLUSTER_RATES     publish rates in msg/s (default "2000 10000 20000")

CLUSTER_DIR=""
CLUSTER_PIDS=()
CLUSTER_AUX=() # --aux-pid NAME=PID for each node
CLUSTER_SEED=""

cluster_stop() {
  local pid
  for pid in "${CLUSTER_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${CLUSTER_PIDS[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  CLUSTER_PIDS=()
  if [ -n "$CLUSTER_DIR" ]; then rm -rf "$CLUSTER_DIR"; fi
  CLUSTER_DIR=""
}

# A free port not yet given to this cluster (bus ports included).
cluster_port() {
  local p
  for _ in $(seq 1 20); do
    p=$(free_port)
    if [[ " ${CLUSTER_USED:-} " != *" $p "* ]]; then break; fi
  done
  CLUSTER_USED="${CLUSTER_USED:-} $p"
  echo "$p"
}

# Waits (at most 60 s) until every node says cluster_state:ok, sees 3
# masters and 3 replicas (a replica may call itself master for a moment
# after the create), and every replica's link to its master is up.
cluster_wait_ok() {
  local ports=("$@") p ok view
  for _ in $(seq 1 120); do
    ok=1
    for p in "${ports[@]}"; do
      redis-cli -p "$p" cluster info 2>/dev/null | grep -q '^cluster_state:ok' || ok=0
      view=$(redis-cli -p "$p" cluster nodes 2>/dev/null)
      [ "$(awk '$3 ~ /master/' <<<"$view" | grep -c .)" = 3 ] || ok=0
      [ "$(awk '$3 ~ /slave/' <<<"$view" | grep -c .)" = 3 ] || ok=0
      if redis-cli -p "$p" role 2>/dev/null | head -1 | grep -q slave; then
        redis-cli -p "$p" info replication | grep -q '^master_link_status:up' || ok=0
      fi
    done
    if [ "$ok" = 1 ]; then return 0; fi
    sleep 0.5
  done
  echo "== the cluster did not become ok in 60 s" >&2
  return 1
}

cluster_start() {
  CLUSTER_DIR=$(mktemp -d /tmp/redcast-cluster.XXXXXX)
  local ports=() i port bus dir
  for i in 1 2 3 4 5 6; do
    port=$(cluster_port)
    bus=$(cluster_port)
    dir="$CLUSTER_DIR/$port"
    mkdir -p "$dir"
    redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" \
      --cluster-enabled yes --cluster-port "$bus" --cluster-config-file "$dir/nodes.conf" \
      --save '' --appendonly no --repl-diskless-sync-delay 0 --maxclients 10000 \
      --daemonize no >"$dir/redis.log" 2>&1 &
    CLUSTER_PIDS+=($!)
    ports+=("$port")
  done
  for port in "${ports[@]}"; do
    for _ in $(seq 1 50); do
      redis-cli -p "$port" ping >/dev/null 2>&1 && break
      sleep 0.1
    done
    redis-cli -p "$port" ping >/dev/null || return 1
  done
  local addrs=()
  for port in "${ports[@]}"; do addrs+=("127.0.0.1:$port"); done
  timeout 60 redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes \
    >"$OUT/cluster-create.log" 2>&1 || return 1
  grep -q 'All 16384 slots covered' "$OUT/cluster-create.log" || return 1
  cluster_wait_ok "${ports[@]}" || return 1

  # Names: masters m1..m3 by first slot, r<k> the replica of m<k>.
  # cluster-nodes.txt: name pid port role master-port slots.
  local nodes
  nodes=$(redis-cli -p "${ports[0]}" cluster nodes)
  : >"$OUT/cluster-nodes.txt"
  CLUSTER_AUX=()
  local k=0 id mport slots rport
  while read -r id mport slots; do
    k=$((k + 1))
    local mpid=""
    for i in "${!ports[@]}"; do [ "${ports[$i]}" = "$mport" ] && mpid=${CLUSTER_PIDS[$i]}; done
    echo "m$k $mpid $mport master - $slots" >>"$OUT/cluster-nodes.txt"
    CLUSTER_AUX+=(--aux-pid "m$k=$mpid")
    if [ "$k" = 1 ]; then CLUSTER_SEED=$mport; fi
    rport=$(awk -v id="$id" '$4 == id {split($2, a, "[:@]"); print a[2]}' <<<"$nodes")
    local rpid=""
    for i in "${!ports[@]}"; do [ "${ports[$i]}" = "$rport" ] && rpid=${CLUSTER_PIDS[$i]}; done
    echo "r$k $rpid $rport replica $mport -" >>"$OUT/cluster-nodes.txt"
    CLUSTER_AUX+=(--aux-pid "r$k=$rpid")
  done < <(awk '$3 ~ /master/ {split($2, a, "[:@]"); s = $9; for (i = 10; i <= NF; i++) s = s "," $i;
            split($9, f, "-"); print f[1], $1, a[2], s}' <<<"$nodes" | sort -n | cut -d' ' -f2-)
  # Every node named, with its process.
  [ "$(awk 'NF == 6' "$OUT/cluster-nodes.txt" | grep -c .)" = 6 ] || return 1
  echo "== Redis Cluster up: $(tr '\n' ';' <"$OUT/cluster-nodes.txt")" >&2
}

# Each node's CPU over 5 s with nothing connected (cron, cluster bus
# pings): the floor under the cases' figures. cluster-idle.txt: name util%.
cluster_idle() {
  local hz name pid rest a=() b=() i=0
  hz=$(getconf CLK_TCK)
  while read -r name pid rest; do a+=("$(awk '{print $14 + $15}' "/proc/$pid/stat")"); done <"$OUT/cluster-nodes.txt"
  sleep 5
  while read -r name pid rest; do b+=("$(awk '{print $14 + $15}' "/proc/$pid/stat")"); done <"$OUT/cluster-nodes.txt"
  : >"$OUT/cluster-idle.txt"
  while read -r name pid rest; do
    awk -v n="$name" -v a="${a[$i]}" -v b="${b[$i]}" -v hz="$hz" \
      'BEGIN{printf "%s %.2f\n", n, (b - a) * 100 / hz / 5}' >>"$OUT/cluster-idle.txt"
    i=$((i + 1))
  done <"$OUT/cluster-nodes.txt"
}

# Where redcast's subscriptions are, 6 s into a case (run_case's DURING
# hook): sharded channels per master, classic channels per node.
cluster_pubsub() { # name
  local out="$OUT/$1-pubsub.txt" name pid port role rest kind
  : >"$out"
  while read -r name pid port role rest; do
    for kind in SHARDCHANNELS CHANNELS; do
      echo "$name $port $role $kind $(redis-cli -p "$port" pubsub "$kind" | grep -c .)" >>"$out"
    done
  done <"$OUT/cluster-nodes.txt"
}

cluster_cases() {
  case " $ONLY " in
    "  " | *" cluster "*) ;;
    *) return 0 ;;
  esac
  local clients=${CLUSTER_CLIENTS:-1000} channels=${CLUSTER_CHANNELS:-200}
  local rate mode sharded cmd
  echo "== Redis Cluster: sharded against classic pub/sub" >&2
  if ! cluster_start; then
    echo "== the Redis Cluster did not start (see $OUT/cluster-create.log): no cluster case" >&2
    cluster_stop
    return 0
  fi
  cluster_idle
  for rate in ${CLUSTER_RATES:-2000 10000 20000}; do
    for mode in sharded classic; do
      if [ "$mode" = sharded ]; then sharded=true cmd=spublish; else sharded=false cmd=publish; fi
      RC_EXTRA_ENV=(REDCAST_REDIS__MODE=cluster "REDCAST_REDIS__SHARDED=$sharded")
      RC_REDIS_URL="redis://127.0.0.1:$CLUSTER_SEED"
      AUX_ARGS=("${CLUSTER_AUX[@]}")
      DURING=cluster_pubsub CASE_GROUP=cluster run_case "cluster-$mode-$rate" redcast \
        --scenario broadcast --clients "$clients" --channels "$channels" --rate "$rate" \
        --duration 10 --redis-cluster --publish-command "$cmd"
    done
  done
  RC_EXTRA_ENV=()
  RC_REDIS_URL=""
  AUX_ARGS=(--aux-pid "$REDIS_PID")
  cluster_stop
}
