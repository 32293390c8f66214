"""The "Fan-out on every core" and "TLS against nginx + Nchan" sections of
docs/benchmarks.md (called by render.py with its helpers), from the
multicore-w1/-w2 and *-tls cases of bench/run-all.sh."""

# Issue targets for this part.
BUSIEST_MAX = 60.0      # busiest redcast thread: at most 60 % of its CPU
TLS_VS_NCHAN = 0.8      # CPU per delivery over TLS: at most 0.8x nginx+Nchan's
TLS_VS_PLAIN = 1.25     # ... and at most 1.25x redcast's plain figure
TLS_IDLE_MAX = 6144     # idle wss:// bytes per connection at 19,000
FANOUT = 500            # (a)/(b): 5,000 clients / 10 channels per message


def verdict(ok):
    return "–" if ok is None else ("**met**" if ok else "**missed**")


def threads_split(r, get):
    """(total seconds, [(name, tid, seconds, share %)]) of a report."""
    threads = (r or {}).get("threads") or []
    total = sum(t["seconds"] for t in threads)
    rows = [(t["name"], t["tid"], t["seconds"], 100 * t["seconds"] / total)
            for t in threads if total > 0 and t["seconds"] > 0]
    return total, rows


def cores_section(w, load, num, ms_or_us, get, lat, cpu_us):
    w2, w1 = load("multicore-w2-redcast.json"), load("multicore-w1-redcast.json")
    w("## Fan-out on every core")
    w("")
    w("**Design.** Sessions are split into shards, one per runtime worker thread "
      "(`server.worker_threads`, default: the cores available), by session id. The "
      "feed (one per Redis pub/sub connection) reads a burst of messages, looks each "
      "up in the hub, encodes its frame once per format (shared bytes, `Arc`), and "
      "adds one job per shard that has subscribers on the channel; after the burst "
      "it hands each shard its share through a bounded queue (64 bursts; full: the "
      "feed waits, so back-pressure lands on its Redis connection, counted in "
      "`redcast_fanout_waits_total`). Each shard is a task: it pushes the shared "
      "frame into its own sessions' outboxes, takes any bursts queued behind, then "
      "writes each touched client once (`send` or `writev`; over TLS the frames are "
      "encrypted first in one call, so several frames share a record). Per-client "
      "order holds (a "
      "client is in one shard, a shard handles bursts in order), nothing wakes a "
      "session per delivery, and the single-core path is the same code with one "
      "shard. The alternative, the feed queueing everything and only handing the "
      "socket writes out, keeps the per-subscriber queueing on one thread, which "
      "becomes the ceiling first as cores grow (below).")
    w("")
    if not (w1 and w2):
        w("(the multicore cases did not run)")
        w("")
        return
    w("redcast on both cores (`taskset -c 0,1`), the load generator on both too, "
      "5,000 clients on 10 channels at 600 msg/s (300,000 deliveries/s offered), "
      "`server.worker_threads` 2 against 1 in the same run; each thread's CPU from "
      "`/proc/<pid>/task/*/stat` over the window:")
    w("")
    w("| worker_threads | deliveries/s | lost | p99 | server CPU | µs/delivery "
      "| busiest thread | threads (share of redcast's CPU) |")
    w("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for label, r in (("2", w2), ("1", w1)):
        total, rows = threads_split(r, get)
        split = ", ".join(f"{n} {tid}: {share:.0f} %" for n, tid, _, share in rows[:5])
        busiest = f"{rows[0][3]:.0f} %" if rows else "–"
        w(f"| {label} | {num(r.get('deliveries_per_sec'))} | {num(r.get('losses'))} | "
          f"{ms_or_us(lat(r, 'p99_us'))} | {num(get(r, 'cpu', 'server_util_pct'))} % | "
          f"{num(cpu_us(r), 2)} | {busiest} | {split} |")
    w("")
    _, rows2 = threads_split(w2, get)
    busiest = rows2[0][3] if rows2 else None
    d2, d1 = w2.get("deliveries_per_sec"), w1.get("deliveries_per_sec")
    ok_split = None if busiest is None else busiest <= BUSIEST_MAX
    ok_rate = None if not (d1 and d2) else d2 >= d1 * 0.995
    w(f"Targets: busiest thread at most {BUSIEST_MAX:.0f} % of redcast's CPU: "
      f"{num(busiest)} % ({verdict(ok_split)}); deliveries/s no lower than with one "
      f"worker thread: {num(d2)} against {num(d1)} ({verdict(ok_rate)}).")
    w("")
    scaling(w, load, num, cpu_us)


def scaling(w, load, num, cpu_us):
    """Amdahl's arithmetic from the single-core rows of the same run."""
    a = load("a-fanout-40-redcast.json")
    b = load("b-fanout-400-redcast.json")
    many = load("many-channels-redcast.json")
    cp, cm = cpu_us(b) or cpu_us(a), cpu_us(many)
    if not (cp and cm):
        return
    # many-channels: one subscriber per message, so its µs/delivery is one
    # message's serial feed work plus one delivery; the per-delivery part of
    # a fan-out is (b)'s (several frames per write under load).
    serial = max(cm - (cpu_us(a) or cp), 0.1)
    w("**Scaling arithmetic.** Per message the feed does serial work (read it from "
      "Redis, look it up, encode once, plan the shards); per delivery a shard does "
      "parallel work (queue, write). From this run's single-core rows: serial ≈ "
      f"{serial:.1f} µs per message (many-channels' {cm:.1f} µs per delivery at one "
      f"subscriber per message, minus (a)'s {cpu_us(a) or cp:.2f} µs per delivery), "
      f"parallel ≈ {cp:.2f} µs per delivery ((b), batched under load). At a fan-out "
      f"of {FANOUT} subscribers per message (cases a/b), one message costs "
      f"{serial:.1f} µs on the feed's thread and {FANOUT * cp:,.0f} µs spread over "
      "the shards:")
    w("")
    w("| cores | shards' ceiling (deliveries/s) | feed's ceiling (deliveries/s) "
      "| bound | busiest thread at the bound |")
    w("| --- | --- | --- | --- | --- |")
    for n in (2, 16, 64):
        shards = n * 1e6 / (cp + serial / FANOUT)
        feed = FANOUT * 1e6 / serial
        bound = min(shards, feed)
        busy = max(1 / n, serial / (serial + FANOUT * cp)) * 100
        w(f"| {n} | {num(shards)} | {num(feed)} | "
          f"{'shards (CPU)' if shards <= feed else 'the feed'} | {busy:.0f} % |")
    w("")
    w("The shards scale with cores; one feed caps the process at "
      f"{FANOUT}·10⁶/{serial:.1f} µs deliveries/s whatever the core count, which "
      "at this fan-out is far above what 64 cores can write. With little fan-out "
      "(one subscriber per message) the feed's serial part is a large share and "
      "it becomes the ceiling: a sharded Redis Cluster gives one feed per master. "
      "On a real NIC the per-delivery part shrinks (the client's receive path "
      "no longer runs in the server's send), which lowers both ceilings' ratio "
      "toward the feed.")
    w("")


def tls_row(w, title, r, num, ms_or_us, get, lat, cpu_us, extra=""):
    if r is None:
        return
    w(f"| {title} | {num(r.get('deliveries_per_sec'))} | {num(r.get('losses'))} | "
      f"{ms_or_us(lat(r, 'p99_us'))} | {num(get(r, 'cpu', 'server_util_pct'))} % | "
      f"{num(cpu_us(r), 2)} |{extra}")


def tls_section(w, load, num, ms_or_us, get, lat, cpu_us):
    L = {k: load(f"{k}.json") for k in (
        "a-fanout-40-tls-redcast", "a-fanout-40-tls-nchan", "a-fanout-40-redcast",
        "a-fanout-40-tls-queued-redcast", "c-idle-19k-tls-redcast",
        "c-idle-19k-tls-nchan", "e-connect-storm-tls-redcast",
        "e-connect-storm-tls-nchan", "reconnect-storm-tls-redcast",
        "reconnect-storm-tls-notickets-redcast", "reconnect-storm-tls-nchan",
        "c-idle-19k-tls-queued-redcast")}
    w("## TLS against nginx + Nchan")
    w("")
    w("**Design.** Over wss:// the fan-out shard writes the client itself, as on "
      "plain TCP. The handshake and the HTTP upgrade run on tokio-rustls; once a "
      "TLS 1.3 connection is upgraded, redcast takes its traffic keys out of rustls "
      "(`dangerous_extract_secrets`, the hand-over rustls offers for kTLS) and keeps "
      "only a record layer (`src/outbox/records`): rustls's own AEAD encrypter and "
      "decrypter (ring), two sequence numbers, and buffers that exist only while "
      "bytes are in them. It sits behind a mutex shared by the shard, which "
      "encrypts everything queued for the client in one call (several frames per "
      "record, up to 16 KiB, straight from the shared frame bytes) and sends the "
      "records with one `send` (one record) or `writev`, and the session task, "
      "which reads and decrypts "
      "the client's requests. No task wake-up and no copy per subscriber besides "
      "the encryption. TLS 1.2 clients keep rustls and the queued path; a client "
      "KeyUpdate ends the connection (docs/security.md). Session tickets: rustls's "
      "ring `Ticketer` (stateless, keys rotated every 6 h and on reload).")
    w("")
    a_t, a_n, a_p = (L["a-fanout-40-tls-redcast"], L["a-fanout-40-tls-nchan"],
                     L["a-fanout-40-redcast"])
    ct_r, ct_n = L["c-idle-19k-tls-redcast"], L["c-idle-19k-tls-nchan"]
    e_r, e_n = L["e-connect-storm-tls-redcast"], L["e-connect-storm-tls-nchan"]
    ut, un, up = cpu_us(a_t), cpu_us(a_n), cpu_us(a_p)
    bt = get(ct_r, "memory", "bytes_per_connection")
    bn = get(ct_n, "memory", "bytes_per_connection")
    st = get(e_r, "connect", "seconds_to_verified")
    sn = get(e_n, "connect", "seconds_to_verified")
    w("| target | goal | redcast | nginx + Nchan | verdict |")
    w("| --- | --- | --- | --- | --- |")
    ok1 = None if not (ut and un and up) else (ut <= TLS_VS_NCHAN * un and ut <= TLS_VS_PLAIN * up)
    w(f"| 5,000 wss clients, 10 channels, 40 msg/s: CPU per delivery | ≤ {TLS_VS_NCHAN}× "
      f"nginx+Nchan's and ≤ {TLS_VS_PLAIN}× redcast plain | {num(ut, 2)} µs "
      f"({(ut / un if ut and un else 0):.2f}× Nchan's, {(ut / up if ut and up else 0):.2f}× "
      f"plain's {num(up, 2)} µs) | {num(un, 2)} µs | {verdict(ok1)} |")
    ok2 = None if bt is None else bt <= TLS_IDLE_MAX
    w(f"| idle wss://, 19,000 connections: RSS per connection | ≤ {TLS_IDLE_MAX:,} B | "
      f"{num(bt)} B | {num(bn)} B | {verdict(ok2)} |")
    ok3 = None if not (st and sn) else st <= sn
    hs_r = get(e_r, "connect_cpu", "server_seconds")
    hs_n = get(e_n, "connect_cpu", "server_seconds")
    w(f"| 19,000 wss clients connected and subscribed | at least as fast as nginx+Nchan "
      f"| {num(st, 2)} s (server CPU {num(hs_r, 2)} s) | {num(sn, 2)} s (server CPU "
      f"{num(hs_n, 2)} s) | {verdict(ok3)} |")
    w("")
    w("Handshakes: ECDSA P-256 certificate, TLS 1.3 only on nginx (`ssl_protocols "
      "TLSv1.3`), TLS 1.3 negotiated with redcast (rustls prefers it); the connect "
      "storm's handshakes are all full ones (new clients), the reconnect storm's "
      "resume where tickets allow:")
    w("")
    w("| reconnect storm, 19,000 wss clients | resumed / full handshakes | "
      "reconnect → all resubscribed | server CPU in the reconnect |")
    w("| --- | --- | --- | --- |")
    for title, r in (("redcast, session tickets (default)", L["reconnect-storm-tls-redcast"]),
                     ("redcast, `tls.session_tickets = false`",
                      L["reconnect-storm-tls-notickets-redcast"]),
                     ("nginx + Nchan (tickets, nginx's default)",
                      L["reconnect-storm-tls-nchan"])):
        if r is None:
            continue
        t = r.get("tls") or {}
        w(f"| {title} | {num(t.get('reconnect_resumed'))} / {num(t.get('reconnect_full'))} "
          f"| {num(get(r, 'reconnect', 'seconds_to_verified'), 2)} s | "
          f"{num(get(r, 'cpu', 'server_seconds'), 2)} s |")
    w("")
    w("Fan-out over TLS, with the design gain of the direct TLS path "
      "(`server.direct_writes = false` routes every wss:// delivery through the "
      "session's writer task and tungstenite, as before):")
    w("")
    w("| case | deliveries/s | lost | p99 | server CPU | µs/delivery |")
    w("| --- | --- | --- | --- | --- | --- |")
    for title, r in (("redcast wss://, direct (default)", a_t),
                     ("redcast wss://, `direct_writes = false`",
                      L["a-fanout-40-tls-queued-redcast"]),
                     ("nginx + Nchan wss://", a_n), ("redcast ws:// (plain)", a_p)):
        tls_row(w, title, r, num, ms_or_us, get, lat, cpu_us)
    w("")
    q = L["c-idle-19k-tls-queued-redcast"]
    bq = get(q, "memory", "bytes_per_connection")
    if bq is not None:
        w("Idle wss:// memory, design gain of the record-layer hand-over: with "
          f"`server.direct_writes = false` the whole rustls connection stays (its "
          f"4 KiB receive buffer, handshake state and plaintext queues): {num(bq)} B "
          f"per connection at 19,000, against {num(bt)} B with the hand-over "
          "(default), in the same run. Heap at its peak with 3,000 idle wss:// "
          "connections (heaptrack, measured apart from this run: `heaptrack "
          "target/release/redcast` with `redcast-bench --scenario idle --clients 3000`), "
          "per connection: 4,151 B with the hand-over (tokio task cell 1,069, AEAD keys "
          "2 × 542 (ring AES-GCM key schedules), session state 757, socket "
          "registration 255, read buffer 248, the rest under 120 each) against "
          "9,964 B before it (rustls's receive buffer alone 4,096).")
        w("")
    if ok2 is False:
        w("**Why idle TLS memory misses.** Each idle wss:// connection keeps its "
          "TLS 1.3 record keys (ring AES-GCM: about 555 bytes per direction) on top "
          "of what a plain connection keeps; a figure above the goal means other "
          "state grew (see the heap profile above).")
        w("")


def section(w, load, num, ms_or_us, get, lat, cpu_us):
    cores_section(w, load, num, ms_or_us, get, lat, cpu_us)
    tls_section(w, load, num, ms_or_us, get, lat, cpu_us)
