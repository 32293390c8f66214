"""The "Redis Cluster: sharded against classic pub/sub" section of
docs/benchmarks.md, from the cluster cases of bench/cluster.sh
(cluster-<mode>-<rate>-redcast.json, cluster-nodes.txt and
cluster-<mode>-<rate>-pubsub.txt in the run's output directory).

render.py calls section() with its own helpers, so that numbers read the
same way in every section.
"""
import re

MODES = ("sharded", "classic")


def nodes(text):
    """cluster-nodes.txt: [(name, pid, port, role, master port, slots)]."""
    rows = []
    for line in (text or "").splitlines():
        f = line.split()
        if len(f) >= 6:
            rows.append(tuple(f[:6]))
    return rows


def cases(files):
    """Rates and modes present, from the report names: {rate: {mode: name}}."""
    found = {}
    for name in files:
        m = re.fullmatch(r"cluster-(sharded|classic)-(\d+)-redcast\.json", name)
        if m:
            found.setdefault(int(m.group(2)), {})[m.group(1)] = name
    return dict(sorted(found.items()))


def node_cpu(report):
    """{node name: util %} of one report's --aux-pid NAME=PID processes."""
    return {a.get("name"): a.get("util_pct") for a in (report or {}).get("aux_cpu", [])
            if a.get("name")}


def redis_total(report):
    """CPU seconds of all the nodes over the window, and per published message (µs)."""
    aux = (report or {}).get("aux_cpu", [])
    if not aux:
        return None, None
    seconds = sum(a.get("seconds") or 0 for a in aux)
    published = (report or {}).get("published") or 0
    return seconds, (seconds * 1e6 / published if published else None)


def idle_cpu(text):
    """cluster-idle.txt: {node name: util %} with nothing connected."""
    out = {}
    for line in (text or "").splitlines():
        f = line.split()
        if len(f) == 2:
            try:
                out[f[0]] = float(f[1])
            except ValueError:
                pass
    return out


def placement(text):
    """Where redcast's subscriptions were: {(node, kind): count}."""
    out = {}
    for line in (text or "").splitlines():
        f = line.split()
        if len(f) == 5 and f[4].isdigit():
            out[(f[0], f[3])] = int(f[4])
    return out


def section(w, load, text, files, num, ms_or_us, get):
    found = cases(files)
    node_rows = nodes(text("cluster-nodes.txt"))
    names = [n[0] for n in sorted(node_rows, key=lambda n: (n[0][1:], n[0][0] == "r"))]
    w("## Redis Cluster: sharded against classic pub/sub")
    w("")
    if not found:
        w("(the cluster cases did not run: `ONLY=cluster bash bench/run-all.sh`)")
        w("")
        return
    w("A real Redis Cluster on loopback (`bench/cluster.sh`): 3 masters with 1 replica "
      "each, created with `redis-cli --cluster create --cluster-replicas 1`. redcast runs "
      "in cluster mode on it twice per rate, the same clients, channels and rate each "
      "time: **sharded** (`REDCAST_REDIS__SHARDED=true`, the default: one pub/sub "
      "connection per master, `SSUBSCRIBE` on the master of each channel's slot; the "
      "generator publishes with `SPUBLISH`) and **classic** (`REDCAST_REDIS__SHARDED=false`: "
      "one `SUBSCRIBE` connection on one node; the generator publishes with `PUBLISH`). "
      "The generator publishes through redis-rs's cluster client, which sends either "
      "command to the master of the channel's slot, so messages enter the cluster at the "
      "same node in both modes; Redis then copies a `PUBLISH` over the cluster bus to "
      "every other node, and a `SPUBLISH` only to the shard's replica. Pinning as above "
      "(redcast on core 0, generator on core 1); the six `redis-server` processes are "
      "not pinned, and each one's CPU (utime+stime over the window, in % of one core) "
      "is read apart (`--aux-pid NAME=PID`).")
    w("")
    legend = []
    for name, _pid, port, role, master, slots in node_rows:
        if role == "master":
            legend.append(f"{name}: master :{port}, slots {slots.replace(',', ', ')}")
        else:
            legend.append(f"{name}: replica :{port} of :{master}")
    if legend:
        w("Nodes: " + "; ".join(legend) + ".")
        w("")
    head = ["mode", "rate", "deliveries/s", "p50", "p99", "lost", "redcast CPU"]
    head += [f"{n} CPU" for n in names] + ["Redis total", "Redis µs/msg"]
    w("| " + " | ".join(head) + " |")
    w("| " + " | ".join("---" for _ in head) + " |")
    idle = idle_cpu(text("cluster-idle.txt"))
    if idle:
        total = sum(idle.values())
        cells = ["idle (nothing connected, 5 s)", "–", "–", "–", "–", "–", "–"]
        cells += [f"{num(idle.get(n), 1)} %" for n in names] + [f"{num(total, 1)} %", "–"]
        w("| " + " | ".join(cells) + " |")
    R = {}
    for rate, by_mode in found.items():
        for mode in MODES:
            r = load(by_mode[mode]) if mode in by_mode else None
            R[(rate, mode)] = r
            if r is None:
                continue
            cpu = node_cpu(r)
            seconds, per_msg = redis_total(r)
            window = get(r, "cpu", "window_seconds")
            total = seconds * 100 / window if seconds is not None and window else None
            cells = [f"{mode} ({get(r, 'publish', 'command') or '?'})",
                     f"{num(rate)} msg/s", num(r.get("deliveries_per_sec")),
                     ms_or_us(get(r, "latency", "p50_us")),
                     ms_or_us(get(r, "latency", "p99_us")), num(r.get("losses")),
                     f"{num(get(r, 'cpu', 'server_util_pct'))} %"]
            cells += [f"{num(cpu.get(n), 1)} %" for n in names]
            cells += [f"{num(total, 1)} %", num(per_msg, 1)]
            w("| " + " | ".join(cells) + " |")
    w("")
    clients = next((r.get("clients") for r in R.values() if r), None)
    channels = next((r.get("channels") for r in R.values() if r), None)
    w(f"{num(clients)} WebSocket clients on {num(channels)} channels (`bench0`…, spread "
      "over the slots by their names), 10 s of publishing at a fixed rate; \"Redis "
      "total\" sums the six nodes (% of one core), \"Redis µs/msg\" is that CPU divided "
      "by the messages published.")
    w("")
    where = []
    for rate, by_mode in found.items():
        for mode in MODES:
            p = placement(text(f"cluster-{mode}-{rate}-pubsub.txt"))
            kind = "SHARDCHANNELS" if mode == "sharded" else "CHANNELS"
            seen = [f"{n} {p[(n, kind)]}" for n in names if p.get((n, kind))]
            if seen:
                where.append(f"{mode} at {num(rate)} msg/s: " + ", ".join(seen))
    if where:
        w("Where redcast's subscriptions were, 6 s into each run (`PUBSUB SHARDCHANNELS` "
          "for sharded, `PUBSUB CHANNELS` for classic, per node; redcast's own probe "
          "channels included): " + "; ".join(where) + ".")
        w("")
    for line in findings(R, names, num, ms_or_us, get):
        w(line)
    nagle(w, R, num, ms_or_us, get)
    notes = []
    for (rate, mode), r in R.items():
        if r is None:
            notes.append(f"{mode} at {rate} msg/s: no report (run failed)")
            continue
        notes += [f"{mode} at {rate} msg/s: {n}" for n in r.get("notes", [])]
        notes += [f"{mode} at {rate} msg/s: error seen: {e}" for e in r.get("errors", [])]
        if r.get("publish_errors"):
            notes.append(f"{mode} at {rate} msg/s: {r['publish_errors']} publish errors "
                         f"({r.get('publish_error')})")
    for n in notes:
        w(f"- {n}")
    if notes:
        w("")
    w("Command (the cluster cases alone, into a directory of their own; `bash "
      "bench/run-all.sh` runs them too):")
    w("")
    w("```sh")
    w("ONLY=cluster OUT=/tmp/cluster-bench bash bench/run-all.sh")
    w("```")
    w("")
    w("redcast ran as `REDCAST_REDIS__MODE=cluster REDCAST_REDIS__SHARDED=true|false "
      "taskset -c 0 target/release/redcast --config redcast.toml --redis-url "
      "redis://127.0.0.1:<m1's port> ...`; the generator's command lines are in "
      "\"Exact commands\" below (labels `cluster-<mode>-<rate>`).")
    w("")


def nagle(w, R, num, ms_or_us, get):
    """Why classic pub/sub's latency is higher even at the lowest rate."""
    low = min((rate for rate, _ in R), default=None)
    s, c = R.get((low, "sharded")), R.get((low, "classic"))
    if s is None or c is None:
        return
    w(f"**Classic pub/sub's latency.** At {num(low)} msg/s, far from any CPU limit, "
      f"classic pub/sub's p50 / p99 / max were {ms_or_us(get(c, 'latency', 'p50_us'))} / "
      f"{ms_or_us(get(c, 'latency', 'p99_us'))} / {ms_or_us(get(c, 'latency', 'max_us'))} "
      f"against {ms_or_us(get(s, 'latency', 'p50_us'))} / "
      f"{ms_or_us(get(s, 'latency', 'p99_us'))} / {ms_or_us(get(s, 'latency', 'max_us'))} "
      "sharded. About two thirds of the channels are served by a master other than the "
      "node redcast's one classic connection is on, so their messages cross the cluster bus "
      "first, and a tail that stops near 40 ms is the mark of Nagle's algorithm meeting "
      "delayed ACKs: a node sends bus messages on the bus connections it opened, and "
      "Redis 7.0.15 sets `TCP_NODELAY` on the connections it accepts but not on those it "
      "opens (seen with `strace -f -e trace=setsockopt,connect redis-server ...` around a "
      "`CLUSTER MEET`), so a small message waits for the previous one's ACK, which the "
      "receiving node may hold back up to 40 ms. Sharded pub/sub never crosses the bus "
      "on the way to redcast: it subscribes on the master that receives the `SPUBLISH`.")
    w("")


def findings(R, names, num, ms_or_us, get):
    """One or two sentences per rate on what the numbers show."""
    out = []
    for rate in sorted({r for r, _ in R}):
        s, c = R.get((rate, "sharded")), R.get((rate, "classic"))
        if s is None or c is None:
            continue
        ss, sp = redis_total(s)
        cs, cp = redis_total(c)
        if ss is None or cs is None:
            continue
        cpu_s, cpu_c = node_cpu(s), node_cpu(c)
        replicas = [n for n in names if n.startswith("r")]
        rep_s = sum(cpu_s.get(n) or 0 for n in replicas)
        rep_c = sum(cpu_c.get(n) or 0 for n in replicas)
        line = (f"- **{num(rate)} msg/s**: the six nodes used {num(cs, 2)} s of CPU with "
                f"classic pub/sub against {num(ss, 2)} s sharded "
                f"({num(cp, 1)} against {num(sp, 1)} µs per message")
        if ss:
            line += f", {cs / ss:.1f}×"
        line += (f"); the three replicas alone {num(rep_c, 1)} % against {num(rep_s, 1)} % "
                 "of a core. ")
        line += (f"redcast delivered {num(c.get('deliveries_per_sec'))} against "
                 f"{num(s.get('deliveries_per_sec'))} deliveries/s with p99 "
                 f"{ms_or_us(get(c, 'latency', 'p99_us'))} against "
                 f"{ms_or_us(get(s, 'latency', 'p99_us'))} "
                 f"({num(c.get('losses'))} and {num(s.get('losses'))} lost), using "
                 f"{num(get(c, 'cpu', 'server_util_pct'))} % against "
                 f"{num(get(s, 'cpu', 'server_util_pct'))} % of its core.")
        out.append(line)
    if out:
        out.append("")
    return out
