//! `--scenario durable-storm`: `--clients` clients on `--channels` durable
//! channels (`h1000.sN`) drop at once, `--missed` messages per channel are
//! published with `FCALL` while they are away, and all of them come back
//! at once with `since`. Meanwhile `--others` clients on their own durable
//! channels (`h1000.oN`) stay connected and measure the latency of live
//! messages published at `--rate` msg/s, and `--storm-rate` msg/s go to
//! the resuming clients' channels, racing the replay.
//!
//! Measured: time until every client recovered (ack with recovered:true,
//! then every missed offset), each stream checked for exactly once and in
//! order up to the last message published; redcast's and Redis's CPU
//! during the storm; the others' live latency before, during and after.

use super::board::{Board, Cmd, AFTER, BASELINE, BROKEN, STORM};
use super::resume::Client;
use super::{CpuAt, CpuWindow};
use crate::payload;
use crate::report::Latency;
use anyhow::{bail, Context};
use redis::aio::MultiplexedConnection;
use redis::Value;
use serde_json::json;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::runtime::Handle;
use tokio::sync::watch;

pub const STORM_PREFIX: &str = "h1000.s";
pub const OTHER_PREFIX: &str = "h1000.o";

/// Per channel: the last sequence number published, and the top offset.
struct Feed {
    seqs: Vec<AtomicU64>,
    tops: Vec<AtomicU64>,
}

impl Feed {
    fn top(&self, c: u32) -> u64 {
        self.tops[c as usize].load(Ordering::Relaxed)
    }
}

pub async fn run(cli: &crate::Cli, pub_rt: Handle) -> anyhow::Result<serde_json::Value> {
    // The others get a thread of their own, so that their reads do not
    // queue behind the 5,000 resuming clients' (both share the core).
    let others_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("others")
        .enable_all()
        .build()?;
    let result = storm(cli, pub_rt, others_rt.handle()).await;
    // Not dropped here: dropping a runtime inside another one panics.
    others_rt.shutdown_background();
    result
}

async fn storm(
    cli: &crate::Cli,
    pub_rt: Handle,
    others_rt: &Handle,
) -> anyhow::Result<serde_json::Value> {
    let a = &cli.durable;
    let (n, channels) = (cli.clients, cli.channels.unwrap_or(50).max(1));
    let (others, other_channels) = (a.others, a.other_channels.max(1));
    if a.missed == 0 {
        bail!("--missed must be at least 1");
    }
    let mut names: Vec<String> = (0..channels)
        .map(|c| format!("{STORM_PREFIX}{c}"))
        .collect();
    names.extend((0..other_channels).map(|c| format!("{OTHER_PREFIX}{c}")));
    let names = Arc::new(names);
    let storm_chans = 0..channels as u32;
    let other_chans = channels as u32..(channels + other_channels) as u32;
    let conn = Arc::new(super::cost::connector(cli, names.clone())?);
    let board = Arc::new(Board::new(n + others)?);
    let feed = Arc::new(Feed {
        seqs: names.iter().map(|_| AtomicU64::new(0)).collect(),
        tops: names.iter().map(|_| AtomicU64::new(0)).collect(),
    });
    let channel_of = |i: usize| match i < n {
        true => (i % channels) as u32,
        false => other_chans.start + ((i - n) % other_channels) as u32,
    };
    let (cmd_tx, cmd_rx) = watch::channel(Cmd::Hold);
    let mut tasks = Vec::new();
    let connect_start = Instant::now();
    for i in 0..n + others {
        let client = Client::new(i, channel_of(i), i >= n, &conn, &board, &cmd_rx);
        tasks.push(match i < n {
            true => tokio::spawn(client.run()),
            false => others_rt.spawn(client.run()),
        });
    }
    let all = n + others;
    let ready = Duration::from_secs_f64(cli.ready_timeout);
    at_least(&board.acked, all, ready, "acked").await?;
    let connect_seconds = connect_start.elapsed().as_secs_f64();
    eprintln!("[durable-storm] {all} clients subscribed in {connect_seconds:.2}s");
    let redis = super::redis_conn(&pub_rt, &cli.redis_url).await?;
    let mut info = super::redis_conn(&pub_rt, &cli.redis_url).await?;
    let storm_done = |feed: &Feed| {
        (0..n).all(|i| board.last[i].load(Ordering::Relaxed) >= feed.top(channel_of(i)))
    };

    // Live messages before the drop: the position each client resumes from.
    if a.live_before > 0 {
        rounds(&redis, &names, storm_chans.clone(), a.live_before, &feed).await?;
        let t = Duration::from_secs(30);
        if crate::wait_until(t, || storm_done(&feed)).await.is_none() {
            board.note("not every client got the live messages before the drop".into());
        }
    }
    let stop_others = Arc::new(AtomicBool::new(false));
    let others_feed = pub_rt.spawn(live(
        redis.clone(),
        names.clone(),
        other_chans.clone(),
        cli.rate,
        stop_others.clone(),
        feed.clone(),
    ));

    eprintln!("[durable-storm] baseline {}s", a.baseline_seconds);
    board.phase.store(BASELINE, Ordering::Relaxed);
    let c0 = CpuAt::read(&cli.server_pid, &mut info).await?;
    tokio::time::sleep(Duration::from_secs_f64(a.baseline_seconds)).await;
    let c1 = CpuAt::read(&cli.server_pid, &mut info).await?;
    board.phase.store(0, Ordering::Relaxed);
    let baseline_cpu = CpuWindow::between(&c0, &c1, a.baseline_seconds);

    let _ = cmd_tx.send(Cmd::Drop);
    at_least(&board.away, n, Duration::from_secs(30), "dropped").await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let m0 = (Instant::now(), super::redis_cpu(&mut info).await?);
    rounds(&redis, &names, storm_chans.clone(), a.missed, &feed).await?;
    let missed_seconds = m0.0.elapsed().as_secs_f64();
    let missed_redis = super::redis_cpu(&mut info).await? - m0.1;
    let missed_total = a.missed * channels as u64;
    eprintln!("[durable-storm] {missed_total} missed messages published in {missed_seconds:.2}s; resuming");

    let c0 = CpuAt::read(&cli.server_pid, &mut info).await?;
    board.phase.store(STORM, Ordering::Relaxed);
    let t0 = Instant::now();
    *board.start.lock().unwrap_or_else(|e| e.into_inner()) = Some(t0);
    let _ = cmd_tx.send(Cmd::Resume);
    let stop_storm = Arc::new(AtomicBool::new(false));
    let storm_feed = pub_rt.spawn(live(
        redis.clone(),
        names.clone(),
        storm_chans.clone(),
        a.storm_rate,
        stop_storm.clone(),
        feed.clone(),
    ));
    let limit = Duration::from_secs_f64(a.recover_timeout);
    let progress = async {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let c = |x| board.count(x);
            eprintln!(
                "[durable-storm {:5.1}s] recovered {} refused {} faulted {} failed {}",
                t0.elapsed().as_secs_f64(),
                c(&board.recovered),
                c(&board.refused),
                c(&board.faulted),
                c(&board.failed)
            );
        }
    };
    let settled = tokio::select! {
        s = crate::wait_until(limit, || board.count(&board.settled) >= n) => s,
        _ = progress => None,
    };
    let storm_seconds = t0.elapsed().as_secs_f64();
    let c1 = CpuAt::read(&cli.server_pid, &mut info).await?;
    board.phase.store(AFTER, Ordering::Relaxed);
    let storm_cpu = CpuWindow::between(&c0, &c1, storm_seconds);
    let recovered = board.count(&board.recovered);
    eprintln!("[durable-storm] {recovered}/{n} recovered in {storm_seconds:.2}s");

    // Live messages after the storm for a moment, then every stream must
    // reach the last offset published, exactly.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop_storm.store(true, Ordering::Relaxed);
    let storm_live = storm_feed.await?;
    let t = Duration::from_secs(10);
    let _ = crate::wait_until(t, || storm_done(&feed)).await;
    let complete = (0..n)
        .filter(|&i| reached(&board, i, feed.top(channel_of(i))))
        .count();
    board.phase.store(0, Ordering::Relaxed);
    stop_others.store(true, Ordering::Relaxed);
    let others_live = others_feed.await?;
    let _ = crate::wait_until(t, || {
        (n..all).all(|i| reached(&board, i, feed.top(channel_of(i))))
    })
    .await;
    // A late duplicate would still show within this pause.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let others_complete = (n..all)
        .filter(|&i| reached(&board, i, feed.top(channel_of(i))))
        .count();
    let expected_after_resume = (0..n).map(|i| feed.top(channel_of(i))).sum::<u64>()
        - board.since_sum.load(Ordering::Relaxed);
    let metrics = match &a.admin_url {
        Some(url) => super::history_metrics(url)
            .await
            .unwrap_or_else(|e| vec![(format!("error: {e:#}"), 0.0)]),
        None => Vec::new(),
    };
    let _ = cmd_tx.send(Cmd::Stop);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }

    let lat = |h: &std::sync::Mutex<hdrhistogram::Histogram<u64>>| {
        h.lock()
            .ok()
            .filter(|h| !h.is_empty())
            .map(|h| Latency::from(&*h))
    };
    let c = |x| board.count(x);
    let report = json!({
        "label": cli.label, "scenario": "durable-storm", "clients": n, "channels": channels,
        "missed": a.missed, "live_before": a.live_before, "others": others,
        "other_channels": other_channels, "rate": cli.rate, "storm_rate": a.storm_rate,
        "server_max_reads": a.server_max_reads, "connect_concurrency": cli.connect_concurrency,
        "connect_seconds": connect_seconds,
        "missed_publish": {
            "messages": missed_total, "seconds": missed_seconds, "redis_seconds": missed_redis,
            "redis_us_per_publish": missed_redis * 1e6 / missed_total as f64,
        },
        "storm": {
            "recovered": recovered, "refused": c(&board.refused), "faulted": c(&board.faulted),
            "failed": c(&board.failed), "settled": c(&board.settled),
            "all_settled": settled.is_some(), "seconds": storm_seconds,
            "seconds_to_all_recovered": (recovered == n).then_some(storm_seconds),
            "ack": lat(&board.acks), "recovery": lat(&board.recoveries),
            "messages_after_resume": board.resumed_messages.load(Ordering::Relaxed),
            "expected_after_resume": expected_after_resume,
            "exact_to_last_offset": complete,
            "live_published": storm_live.0, "live_errors": storm_live.1,
        },
        "cpu": storm_cpu, "baseline_cpu": baseline_cpu,
        "others_latency": {"baseline": lat(&board.latency[0]), "storm": lat(&board.latency[1]), "after": lat(&board.latency[2])},
        "others_live": {"published": others_live.0, "errors": others_live.1, "first_error": others_live.2, "exact_to_last_offset": others_complete},
        "acks_without_position": c(&board.no_position),
        "streams_broken": c(&board.broken), "connections_lost": c(&board.lost),
        "samples": board.samples.lock().map(|s| s.clone()).unwrap_or_default(),
        "server_metrics": metrics.into_iter().map(|(k, v)| (k, json!(v))).collect::<serde_json::Map<String, serde_json::Value>>(),
    });
    print!("{}", summary(&report));
    Ok(report)
}

/// A few readable lines (the JSON report has everything).
fn summary(r: &serde_json::Value) -> String {
    let f = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN);
    let ms = |phase: &str, q: &str| f(&r["others_latency"][phase][q]) / 1000.0;
    let (s, c) = (&r["storm"], &r["cpu"]);
    format!(
        "durable-storm: {} clients x {} missed, history.max_reads {}\n\
         recovered {}/{} in {:.2} s (refused {}, faults {}, failed {}); exact to the last offset: {} + {} others\n\
         storm CPU: redcast {:.2} s ({:.0} %), Redis {:.2} s ({:.0} %), other {:.0} %\n\
         others' latency p50/p99: before {:.1}/{:.1} ms, during {:.1}/{:.1} ms, after {:.1}/{:.1} ms\n",
        r["clients"], r["missed"], r["server_max_reads"],
        s["recovered"], r["clients"], f(&s["seconds"]), s["refused"], s["faulted"], s["failed"],
        s["exact_to_last_offset"], r["others_live"]["exact_to_last_offset"],
        f(&c["server_seconds"]), f(&c["server_util_pct"]), f(&c["redis_seconds"]),
        f(&c["redis_util_pct"]), f(&c["other_util_pct"]),
        ms("baseline", "p50_us"), ms("baseline", "p99_us"), ms("storm", "p50_us"),
        ms("storm", "p99_us"), ms("after", "p50_us"), ms("after", "p99_us"),
    )
}

/// Waits until `counter` reaches `target` clients.
async fn at_least(
    counter: &AtomicUsize,
    target: usize,
    limit: Duration,
    what: &str,
) -> anyhow::Result<()> {
    let count = || counter.load(Ordering::Relaxed);
    if crate::wait_until(limit, || count() >= target)
        .await
        .is_none()
    {
        bail!("only {} of {target} clients {what} in {limit:?}", count());
    }
    Ok(())
}

fn reached(board: &Board, i: usize, top: u64) -> bool {
    let last = board.last[i].load(Ordering::Relaxed);
    last != BROKEN && last >= top
}

/// `count` messages on each channel of `chans`, round-robin, by FCALL in
/// pipelines of 64 (one connection, in order: offsets follow sequence
/// numbers, which the clients check).
async fn rounds(
    conn: &MultiplexedConnection,
    names: &[String],
    chans: Range<u32>,
    count: u64,
    feed: &Feed,
) -> anyhow::Result<()> {
    let all: Vec<u32> = (0..count).flat_map(|_| chans.clone()).collect();
    for batch in all.chunks(64) {
        let mut pipe = redis::pipe();
        for &c in batch {
            let seq = feed.seqs[c as usize].fetch_add(1, Ordering::Relaxed) + 1;
            pipe.add_command(super::fcall(
                &names[c as usize],
                &payload::make(c, seq, false, ""),
            ));
        }
        let replies: Vec<Value> =
            tokio::time::timeout(Duration::from_secs(10), pipe.query_async(&mut conn.clone()))
                .await
                .context("FCALL pipeline timed out")??;
        for (&c, r) in batch.iter().zip(&replies) {
            let offset = super::offset_of(r)?
                .with_context(|| format!("{} is not durable (rules?)", names[c as usize]))?;
            feed.tops[c as usize].fetch_max(offset, Ordering::Relaxed);
        }
    }
    Ok(())
}

/// Publishes at `rate` msg/s round-robin over `chans`, one FCALL at a time
/// (in order), until `stop`: (published, errors, first error).
async fn live(
    mut conn: MultiplexedConnection,
    names: Arc<Vec<String>>,
    chans: Range<u32>,
    rate: f64,
    stop: Arc<AtomicBool>,
    feed: Arc<Feed>,
) -> (u64, u64, Option<String>) {
    let (mut ok, mut errors, mut first) = (0, 0, None);
    if rate <= 0.0 || chans.is_empty() {
        return (ok, errors, first);
    }
    let start = tokio::time::Instant::now();
    let span = chans.end - chans.start;
    for k in 0u64.. {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        tokio::time::sleep_until(start + Duration::from_secs_f64(k as f64 / rate)).await;
        let c = chans.start + (k % u64::from(span)) as u32;
        let seq = feed.seqs[c as usize].fetch_add(1, Ordering::Relaxed) + 1;
        let cmd = super::fcall(&names[c as usize], &payload::make(c, seq, false, ""));
        let reply =
            tokio::time::timeout(Duration::from_secs(10), cmd.query_async::<Value>(&mut conn))
                .await;
        match reply
            .map_err(|_| anyhow::anyhow!("timed out"))
            .and_then(|r| super::offset_of(&r?))
        {
            Ok(Some(o)) => {
                feed.tops[c as usize].fetch_max(o, Ordering::Relaxed);
                ok += 1;
            }
            Ok(None) => {
                errors += 1;
                first.get_or_insert(format!("{} is not durable", names[c as usize]));
            }
            Err(e) => {
                errors += 1;
                first.get_or_insert(format!("{e:#}"));
                // The sequence number was not used: a gap the clients
                // would take for a lost message is avoided by giving up.
                break;
            }
        }
    }
    (ok, errors, first)
}
