#!/usr/bin/env python3
"""The "Durable channels" section of docs/benchmarks.md, from the cases of
bench/durable.sh (durable-publish-redcast.json, durable-storm-<reads>-redcast.json,
commands.txt and quiet.txt in the run's output directory).

render.py calls section() with its own helpers during a full run. Alone,
it rewrites only that section of an existing document (what
`ONLY=durable bash bench/run-all.sh` does):

    python3 bench/render_durable.py OUT_DIR DOC
"""
import datetime
import json
import os
import re
import sys

TITLE = "## Durable channels: publish cost and recovery storm"
BEFORE = "## Nchan really goes through Redis"  # where a new section goes


def storms(files):
    """{max_reads: report name}, from durable-storm-<reads>-redcast.json."""
    found = {}
    for name in files:
        m = re.fullmatch(r"durable-storm-(\d+)-redcast\.json", name)
        if m:
            found[int(m.group(1))] = name
    return dict(sorted(found.items()))


def busy(text):
    """quiet.txt: {case: busy cores in the second before its last try}, {case: tries}."""
    out, tries = {}, {}
    for line in (text or "").splitlines():
        m = re.match(r"(\S+) busy_cores_before=([\d.]+)", line)
        if m:
            out[m.group(1)] = float(m.group(2))
            tries[m.group(1)] = tries.get(m.group(1), 0) + 1
    return out, tries


def commands(text):
    """The durable cases' generator command lines, with portable paths."""
    out = []
    for line in (text or "").splitlines():
        if "--label durable-" in line:
            line = re.sub(r"\S*/release/redcast-bench", "target/release/redcast-bench", line)
            out.append(re.sub(r"--json \S*/(durable-\S+\.json)", r"--json $OUT/\1", line))
    return out


def section(w, load, text, files, num, ms_or_us, get, standalone=False):
    pub = load("durable-publish-redcast.json")
    runs = {k: load(v) for k, v in storms(files).items()}
    if pub is None and not runs:
        return
    quiet, tries = busy(text("quiet.txt"))
    w(TITLE)
    w("")
    w("Durable channels (issue 11) keep each channel's history in a Redis stream, written by "
      "the Redis Function `redcast_publish`. `bench/durable.sh` measures what that costs Redis "
      "per publish, and what a recovery storm costs redcast and Redis. redcast runs as above "
      "(release build, `taskset -c 0`, generator on core 1, `redis-server` 7.0 unpinned and "
      "without persistence), with these rules (`REDCAST_CHANNELS__RULES`): `h100.*` with "
      "`history_size = 100`, `h1000.*` with `history_size = 1000` (both `history_ttl = \"10m\"`), "
      "and `*` without history.")
    if standalone:
        commit = (text("redcast-commit.txt") or "?").strip()
        w("")
        w(f"This section alone was written by `ONLY=durable bash bench/run-all.sh` on "
          f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC (redcast commit "
          f"{commit}), not by the run the rest of this file comes from.")
    w("")
    if pub is not None:
        publish_table(w, pub, num, get)
    runs = {k: r for k, r in runs.items() if r is not None}
    if runs:
        causes = {k: read_errors(text(f"durable-storm-{k}-redcast.server.log")) for k in runs}
        storm_table(w, runs, causes, num, ms_or_us, get)
    w("**Machine.** " + machine_note(pub, runs, quiet, tries, num, get))
    w("")
    w("Command (the durable cases alone, rewriting only this section; `bash bench/run-all.sh` "
      "runs them too):")
    w("")
    w("```sh")
    w("ONLY=durable bash bench/run-all.sh")
    w("```")
    w("")
    lines = commands(text("commands.txt"))
    if lines:
        w("which ran (redcast as `REDCAST_CHANNELS__RULES='[...]' [REDCAST_HISTORY__MAX_READS=N] "
          "taskset -c 0 target/release/redcast --config redcast.toml ...`):")
        w("")
        w("```sh")
        for line in lines:
            w(line)
        w("```")
        w("")


def publish_table(w, r, num, get):
    rows = r.get("rows") or []
    base = {row["depth"]: row for row in rows if row.get("mode") == "publish"}
    w("### Publish cost: `PUBLISH` against `FCALL redcast_publish`")
    w("")
    w(f"One Redis connection, 1 or 64 requests in flight (each slot sends its next request "
      f"when its previous one is answered); each row is the median of {num(r.get('rounds'))} "
      f"rounds of {num(r.get('cell_seconds'), 0)} s (a round goes over every row in turn, so "
      f"that a disturbance hits one round of each row), round-robin over "
      f"{num(r.get('channels_per_mode'))} channels per row group with one WebSocket subscriber "
      f"each (so Redis sends every message to redcast, and redcast to a client). Durable "
      f"channels were first filled with twice their history, so trimming runs as in steady "
      f"state. Redis CPU is `used_cpu_sys + used_cpu_user` of `INFO CPU` over the row; "
      f"redcast's is utime+stime from /proc.")
    w("")
    w("| command | channel | in flight | publishes/s | Redis µs/publish | × PUBLISH | Redis CPU "
      "| redcast µs/publish | delivered | other CPU |")
    w("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        kind = {None: "no history"}.get(row.get("history_size"),
                                         f"history_size {row.get('history_size')}")
        cmd = "`PUBLISH`" if row["command"] == "PUBLISH" else "`FCALL redcast_publish`"
        us = row.get("redis_us_per_publish")
        b = (base.get(row["depth"]) or {}).get("redis_us_per_publish")
        ratio = f"{us / b:.1f}×" if us and b else "–"
        delivered = "all" if row.get("all_delivered") else "**not all**"
        if row.get("errors"):
            delivered += f" ({num(row['errors'])} errors)"
        w(f"| {cmd} | {kind} | {row['depth']} | {num(row.get('per_sec'))} | {num(us, 2)} | "
          f"{ratio} | {num(get(row, 'cpu', 'redis_util_pct'))} % | "
          f"{num(row.get('server_us_per_publish'), 2)} | {delivered} | "
          f"{num(get(row, 'cpu', 'other_util_pct'))} % |")
    w("")
    sizes = [f"`{k}`: {num(v.get('entries'))} entries, {num(v.get('bytes'))} bytes "
             f"(`MEMORY USAGE`)" for k, v in (r.get("streams") or {}).items()]
    if sizes:
        w("Kept per channel after the run (`MAXLEN ~` trims whole stream nodes, so a stream "
          "holds a little more than its history_size): " + "; ".join(sizes) + ".")
        w("")
    faults = r.get("subscriber_faults")
    w(f"Subscribers' streams: {num(faults)} faults (offsets out of sequence or lost)"
      + (f", first: `{r.get('first_fault')}`" if faults else "") + ".")
    w("")
    w(publish_reading(rows, base, num))
    w("")


def publish_reading(rows, base, num):
    parts = []
    for depth in sorted(base):
        b = base[depth]
        durable = [x for x in rows if x["depth"] == depth and x.get("history_size")]
        plain = [x for x in rows if x["depth"] == depth and x["mode"] == "fcall-plain"]
        if not durable or not b.get("redis_us_per_publish"):
            continue
        s = (f"with {depth} in flight, a durable publish cost Redis "
             + " and ".join(f"{num(x.get('redis_us_per_publish'), 1)} µs (history_size "
                            f"{x['history_size']})" for x in durable)
             + f" against {num(b.get('redis_us_per_publish'), 1)} µs for `PUBLISH`")
        if plain:
            s += f" and {num(plain[0].get('redis_us_per_publish'), 1)} µs for the Function alone"
        s += (", and one connection carried "
              + " and ".join(f"{num(x.get('per_sec'))}" for x in durable)
              + f" against {num(b.get('per_sec'))} publishes/s")
        parts.append(s)
    if not parts:
        return ""
    return ("**Reading.** " + "; ".join(parts)[:1].upper() + "; ".join(parts)[1:]
            + ". The difference is the Function call "
            "(Lua) plus `HMGET`, `HSET`, `XADD` with trimming and two `PEXPIRE`s per message. "
            "With 1 in flight Redis also pays a read and a write system call per publish, "
            "whatever the command, so the ratio is smaller; with 64 in flight those are shared "
            "by many requests and the Function's own work shows. Redis being single-threaded, its µs/publish bounds what one Redis can take: "
            "1,000,000 / µs-per-publish publishes/s at 100 % of its core.")


def span(us, ms_or_us):
    """A duration given in µs: seconds from 1 s up."""
    return f"{us / 1e6:,.2f} s" if us is not None and us >= 1e6 else ms_or_us(us)


def read_errors(log):
    """{error: count} of redcast's "cannot read a durable channel's position" lines."""
    out = {}
    for line in (log or "").splitlines():
        if "cannot read a durable channel" in line:
            m = re.search(r"error=(.*)$", line)
            key = m.group(1).strip() if m else "?"
            out[key] = out.get(key, 0) + 1
    return out


def storm_table(w, runs, causes, num, ms_or_us, get):
    first = next(iter(runs.values()))
    w("### Recovery storm")
    w("")
    w(f"{num(first.get('clients'))} WebSocket clients on {num(first.get('channels'))} durable "
      f"channels (`h1000.sN`, history_size 1000) receive {num(first.get('live_before'))} live "
      f"messages each, then all drop; {num(first.get('missed'))} messages per channel are "
      f"published with `FCALL` (pipelines of 64) while they are away; then all "
      f"{num(first.get('clients'))} reconnect at once (at most "
      f"{num(first.get('connect_concurrency'))} handshakes in flight on the generator's side) "
      f"and subscribe with `since` = the last position each saw. Meanwhile "
      f"{num(first.get('storm_rate'))} msg/s more go to their channels (live messages racing "
      f"the replay), and {num(first.get('others'))} other clients on "
      f"{num(first.get('other_channels'))} other durable channels stay connected while "
      f"{num(first.get('rate'))} msg/s are published to them with a timestamp: their "
      f"publish-to-receive latency is the live delivery of everyone else during the storm. "
      f"A client has **recovered** when its ack says `recovered: true` and it has received "
      f"every offset up to the ack's position; every stream (storm and others) is checked "
      f"message by message until the last offset published: offsets one after the other, in "
      f"one epoch, each payload the one published at that offset, nothing twice.")
    w("")
    w("| `history.max_reads` | recovered | refused / faults / failed | all recovered in "
      "| recovery p50 / p99 | ack p99 | redcast CPU | Redis CPU | others' p50 / p99 before "
      "| others' p50 / p99 during | others' max during | exact to the last offset | other CPU |")
    w("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for reads, r in runs.items():
        s = r.get("storm") or {}
        n = r.get("clients") or 0
        cpu = r.get("cpu") or {}
        before = get(r, "others_latency", "baseline")
        during = get(r, "others_latency", "storm")
        exact = (s.get("exact_to_last_offset") or 0) + get(r, "others_live", "exact_to_last_offset")
        done = s.get("seconds_to_all_recovered")
        w(f"| {reads} | {num(s.get('recovered'))} / {num(n)} | {num(s.get('refused'))} / "
          f"{num(s.get('faulted'))} / {num(s.get('failed'))} | "
          f"{num(done, 2) + ' s' if done else '**not all** (' + num(s.get('seconds'), 2) + ' s)'} | "
          f"{span(get(s, 'recovery', 'p50_us'), ms_or_us)} / "
          f"{span(get(s, 'recovery', 'p99_us'), ms_or_us)} | "
          f"{span(get(s, 'ack', 'p99_us'), ms_or_us)} | "
          f"{num(cpu.get('server_seconds'), 2)} s ({num(cpu.get('server_util_pct'))} %) | "
          f"{num(cpu.get('redis_seconds'), 2)} s ({num(cpu.get('redis_util_pct'))} %) | "
          f"{ms_or_us(get(before, 'p50_us'))} / {ms_or_us(get(before, 'p99_us'))} | "
          f"{ms_or_us(get(during, 'p50_us'))} / {ms_or_us(get(during, 'p99_us'))} | "
          f"{ms_or_us(get(during, 'max_us'))} | "
          f"{num(exact)} / {num(n + (r.get('others') or 0))} | "
          f"{num(cpu.get('other_util_pct'))} % |")
    w("")
    w("CPU is over the storm (from the reconnect order until every client had recovered), in "
      "seconds and in % of one core. Recovery and ack times are per client, from the reconnect "
      "order. \"Refused\": an ack with `recovered: false`; \"faults\": a stream not exact; "
      "\"failed\": no connection.")
    w("")
    for reads, r in runs.items():
        w(f"- **max_reads {reads}**: " + storm_detail(r, causes.get(reads), num, get))
    w("")
    w(storm_reading(runs, causes, num, ms_or_us, get))
    w("")


def storm_reading(runs, causes, num, ms_or_us, get):
    out = []
    for reads, r in runs.items():
        s, cpu = r.get("storm") or {}, r.get("cpu") or {}
        n = r.get("clients") or 0
        replayed = (r.get("server_metrics") or {}).get("redcast_history_replayed_messages_total")
        line = (f"with `max_reads` {reads}"
                + (" (the default)" if reads == 64 else "")
                + f", {num(s.get('recovered'))} of {num(n)} recovered in "
                f"{num(s.get('seconds'), 2)} s, redcast spent {num(cpu.get('server_seconds'), 2)} s "
                f"of CPU on the storm")
        if cpu.get("server_seconds") and n:
            line += f" ({num(cpu['server_seconds'] * 1e6 / n)} µs per resuming client"
            if replayed:
                line += f", {num(cpu['server_seconds'] * 1e6 / replayed, 1)} µs per replayed message"
            line += ")"
        line += (f" and Redis {num(cpu.get('redis_seconds'), 2)} s, while the others' live p99 "
                 f"went from {ms_or_us(get(r, 'others_latency', 'baseline', 'p99_us'))} to "
                 f"{ms_or_us(get(r, 'others_latency', 'storm', 'p99_us'))}")
        out.append(line)
    text = ("**Reading.** " + "; ".join(out)[:1].upper() + "; ".join(out)[1:] + ". "
            "`history.max_reads` bounds the recovery reads in flight on redcast's one command "
            "connection; the others wait their turn, and `history.read_timeout` (5 s) counts "
            "that wait too. redcast runs on one core here, so the storm's handshakes, reads "
            "and replayed frames share it with everyone's live delivery: the others' latency "
            "during the storm is that queue.")
    kinds = set()
    for c in causes.values():
        kinds.update(c)
    if any("did not answer within" in k for k in kinds):
        text += (" A read that waited for its permit and Redis's answer longer than "
                 "`history.read_timeout` failed (`redis did not answer within 5s`): that client "
                 "got `recovered: false` although its history was there, i.e. it is told to "
                 "reload its state, not to retry.")
    if any("unavailable" in k for k in kinds):
        text += (" `redis is unavailable` is a read slower than 500 ms: redcast's command "
                 "connection is a redis-rs multiplexed connection made with the default "
                 "configuration, whose response timeout (500 ms) cuts in before "
                 "`history.read_timeout`, and a timeout counts as a lost connection (it is "
                 "dropped and re-made); such an ack carries `recovered: false` and no position.")
    return text


def storm_detail(r, causes, num, get):
    s = r.get("storm") or {}
    m = r.get("server_metrics") or {}
    rec = {k: v for k, v in m.items() if k.startswith("redcast_history_recoveries_total")}
    got, want = s.get("messages_after_resume"), s.get("expected_after_resume")
    parts = [f"{num(got)} messages received after resuming against {num(want)} published "
             f"after the resumed positions"
             + (" (equal, and every stream exact: nothing lost, nothing twice)"
                if got == want and not r.get("streams_broken") else ""),
             f"{num(get(r, 'missed_publish', 'messages'))} missed messages published in "
             f"{num(get(r, 'missed_publish', 'seconds'), 2)} s "
             f"({num(get(r, 'missed_publish', 'redis_us_per_publish'), 1)} µs of Redis CPU each)",
             f"{num(s.get('live_published'))} live messages on the storm channels and "
             f"{num(get(r, 'others_live', 'published'))} on the others'"]
    if rec:
        reasons = {re.sub(r'.*reason="([^"]*)".*', r"\1", k): v for k, v in rec.items()}
        parts.append("redcast's metrics: recoveries " + ", ".join(
            f"{k} {num(int(v))}" for k, v in reasons.items())
            + f", {num(int(m.get('redcast_history_read_errors_total', 0)))} read errors, "
            f"{num(int(m.get('redcast_history_replayed_messages_total', 0)))} messages replayed")
    if causes:
        parts.append("redcast logged `cannot read a durable channel's position` with " + ", ".join(
            f"`error={k}` {num(v)} times" for k, v in causes.items()))
    if r.get("acks_without_position"):
        parts.append(f"{num(r['acks_without_position'])} first acks (plain subscribe, before the "
                     "drop) came without `positions`; those clients took their position from "
                     "their first message")
    samples = r.get("samples") or []
    if samples:
        parts.append("first problems seen: " + "; ".join(f"`{x}`" for x in samples[:2]))
    base = r.get("baseline_cpu") or {}
    parts.append(f"before the drop, with {num(r.get('others'))} clients live, redcast used "
                 f"{num(base.get('server_util_pct'))} % and Redis {num(base.get('redis_util_pct'))} %")
    return "; ".join(parts) + "."


def machine_note(pub, runs, quiet, tries, num, get):
    others = [("durable-publish", get(pub, "cpu", "other_util_pct"))]
    others += [(f"durable-storm-{k}", get(r, "cpu", "other_util_pct")) for k, r in runs.items()]
    seen = ", ".join(f"{name} {num(v)} %" for name, v in others if v is not None)
    before = ", ".join(f"{k.rsplit('-redcast', 1)[0]} {v:.2f}" for k, v in quiet.items()
                       if k.startswith("durable-"))
    note = (f"2 cores. \"Other CPU\" (everything but redcast, Redis and the generator, in % of "
            f"one core over the measured window) was: {seen}.")
    if before:
        note += f" Cores busy in the second before the (last) try of each case: {before}."
    retried = {k.rsplit("-redcast", 1)[0]: v for k, v in tries.items()
               if k.startswith("durable-") and v > 1}
    if retried:
        note += (" run-all tries a case again (3 tries at most) when other CPU exceeds 30 % "
                 "of a core, and keeps the last try: " + ", ".join(
                     f"{k} {v} tries" for k, v in retried.items()) + ".")
    return note + (" Above ~30 % the machine was shared (other builds ran during this run): "
                   "redcast's core too, so its % of a core in the storms is what it got rather "
                   "than what it needed, and times, latencies and CPU per message are noisy "
                   "upper bounds. The correctness figures (recovered, exact) do not depend on it; "
                   "whether a read exceeds a timeout does.")


def splice(doc, body):
    """Replaces (or adds, before BEFORE) the section in the document."""
    with open(doc) as f:
        old = f.read()
    start = old.find(TITLE)
    if start < 0:
        at = old.find(BEFORE)
        at = len(old) if at < 0 else at
        return old[:at] + body + old[at:]
    end = old.find("\n## ", start + len(TITLE))
    end = len(old) if end < 0 else end + 1
    return old[:start] + body + old[end:]


def main():
    out_dir, doc = sys.argv[1], sys.argv[2]

    def load(name):
        path = os.path.join(out_dir, name)
        return json.load(open(path)) if os.path.exists(path) else None

    def text(name):
        path = os.path.join(out_dir, name)
        return open(path, errors="replace").read() if os.path.exists(path) else None

    def get(r, *path):
        for p in path:
            r = r.get(p) if isinstance(r, dict) else None
        return r

    def num(v, digits=0):
        if v is None:
            return "–"
        if isinstance(v, int):
            return f"{v:,}"
        return f"{v:,.{digits}f}"

    def ms_or_us(v):
        if v is None:
            return "–"
        return f"{v / 1000:,.1f} ms" if v >= 10_000 else f"{v:,.0f} µs"

    lines = []
    section(lines.append, load, text, sorted(os.listdir(out_dir)), num, ms_or_us, get,
            standalone=True)
    if not lines:
        sys.exit(f"no durable reports in {out_dir}")
    body = "\n".join(lines) + "\n"
    updated = splice(doc, body)
    with open(doc, "w") as f:
        f.write(updated)


if __name__ == "__main__":
    main()
