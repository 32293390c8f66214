//! `--scenario durable-publish`: what a publish costs Redis, by command.
//!
//! Modes, each on its own `--channels` channels (default 10) with one
//! WebSocket subscriber each, so that Redis really sends every message to
//! redcast and redcast to a client:
//! - `publish`: a plain `PUBLISH` to channels without history (`plain.pub.N`);
//! - `fcall-plain`: `FCALL redcast_publish` on channels without history
//!   (`plain.fcall.N`): the Function's own overhead (rule match, PUBLISH);
//! - `fcall-h<size>`: `FCALL redcast_publish` on durable channels
//!   (`h<size>.N`): next offset, XADD with trimming, PEXPIRE, PUBLISH.
//!
//! Each mode is first warmed up (twice its history per channel, so that the
//! streams are full and trimming runs as in steady state), then published
//! for `--cell-seconds` at each depth (requests in flight on one
//! connection) or `--cell-max` messages, whichever first (a backlog
//! beyond Redis's 32 MB output buffer limit for pub/sub clients would cut
//! redcast off), in `--repeats` rounds over all rows; a row reports the
//! medians. Redis CPU comes from `INFO CPU` before each cell and after its
//! subscribers received everything (Redis's writes to redcast may lag).

use super::cell::{Cell, Done, Limit};
use super::peer::{self, Frame, Track};
use super::{CpuAt, CpuWindow};
use crate::client::{Connector, Target};
use anyhow::{bail, Context};
use redis::aio::MultiplexedConnection;
use serde_json::json;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::runtime::Handle;
use tokio::sync::{watch, Semaphore};

pub struct Mode {
    pub name: String,
    pub command: &'static str,
    pub prefix: String,
    pub history: Option<usize>,
}

fn modes(sizes: &[usize]) -> Vec<Mode> {
    let mut m = vec![
        Mode {
            name: "publish".into(),
            command: "PUBLISH",
            prefix: "plain.pub.".into(),
            history: None,
        },
        Mode {
            name: "fcall-plain".into(),
            command: "FCALL",
            prefix: "plain.fcall.".into(),
            history: None,
        },
    ];
    for &s in sizes {
        m.push(Mode {
            name: format!("fcall-h{s}"),
            command: "FCALL",
            prefix: format!("h{s}."),
            history: Some(s),
        });
    }
    m
}

/// Deliveries and faults seen by the subscribers of each mode.
struct Seen {
    acked: AtomicUsize,
    delivered: Vec<AtomicU64>,
    faults: AtomicU64,
    first_fault: Mutex<Option<String>>,
}

pub async fn run(cli: &crate::Cli, pub_rt: Handle) -> anyhow::Result<serde_json::Value> {
    let args = &cli.durable;
    let per_mode = cli.channels.unwrap_or(10).max(1);
    let modes = modes(&args.history_sizes);
    let names: Vec<String> = modes
        .iter()
        .flat_map(|m| (0..per_mode).map(move |i| format!("{}{i}", m.prefix)))
        .collect();
    let names = Arc::new(names);
    let conn = Arc::new(connector(cli, names.clone())?);
    let seen = Arc::new(Seen {
        acked: AtomicUsize::new(0),
        delivered: modes.iter().map(|_| AtomicU64::new(0)).collect(),
        faults: AtomicU64::new(0),
        first_fault: Mutex::new(None),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let (conn, seen, stop) = (conn.clone(), seen.clone(), stop_rx.clone());
        let (name, mode) = (name.clone(), i / per_mode);
        tasks.push(tokio::spawn(async move {
            if let Err(e) = subscriber(&conn, &name, i as u32, mode, &seen, stop).await {
                seen.faults.fetch_add(1, Ordering::Relaxed);
                note(&seen, format!("{name}: {e:#}"));
            }
        }));
    }
    let ready = Duration::from_secs_f64(cli.ready_timeout);
    if crate::wait_until(ready, || seen.acked.load(Ordering::Relaxed) >= names.len())
        .await
        .is_none()
    {
        bail!("subscribers not all acked within {ready:?}");
    }
    let redis = super::redis_conn(&pub_rt, &cli.redis_url).await?;
    let mut info = super::redis_conn(&pub_rt, &cli.redis_url).await?;
    let mut published = vec![0u64; modes.len()];
    let mut rows = Vec::new();
    let whole0 = CpuAt::read(&cli.server_pid, &mut info).await?;
    let whole_start = Instant::now();
    for (m, mode) in modes.iter().enumerate() {
        let channels = ((m * per_mode) as u32, per_mode as u32);
        let warm = (mode.history.unwrap_or(0) * 2).max(100) as u64 * per_mode as u64;
        eprintln!("[durable-publish] {}: warm-up, {warm} messages", mode.name);
        let limit = Limit {
            count: warm,
            seconds: None,
        };
        let w = Cell::new(mode, channels, 64, limit);
        published[m] += w.publish(&pub_rt, &redis, &names).await?.ok;
        drain(&seen, m, published[m]).await?;
    }
    // Rounds over every (depth, mode), so that a disturbance of the
    // machine hits one round of each rather than all rounds of one row.
    let mut samples = vec![Vec::new(); modes.len() * args.depths.len()];
    for round in 0..args.repeats.max(1) {
        for (d, &depth) in args.depths.iter().enumerate() {
            for (m, mode) in modes.iter().enumerate() {
                let channels = ((m * per_mode) as u32, per_mode as u32);
                let limit = Limit {
                    count: args.cell_max,
                    seconds: Some(args.cell_seconds),
                };
                let cell = Cell::new(mode, channels, depth, limit);
                let start = Instant::now();
                let a = CpuAt::read(&cli.server_pid, &mut info).await?;
                let done = cell.publish(&pub_rt, &redis, &names).await?;
                published[m] += done.ok;
                // CPU until the subscribers have it all: Redis writes to
                // redcast, and redcast to its clients, may lag the replies.
                let drained = drain(&seen, m, published[m]).await.is_ok();
                let b = CpuAt::read(&cli.server_pid, &mut info).await?;
                let window = start.elapsed().as_secs_f64();
                let mut sample = Sample::new(&done, CpuWindow::between(&a, &b, window));
                sample.drained = drained;
                eprintln!(
                    "[durable-publish] round {round} {} depth {depth}: {:.0}/s, Redis {:.2} µs/publish",
                    mode.name,
                    sample.per_sec,
                    sample.redis_us.unwrap_or(0.0)
                );
                samples[m * args.depths.len() + d].push(sample);
            }
        }
    }
    for (m, mode) in modes.iter().enumerate() {
        for (d, &depth) in args.depths.iter().enumerate() {
            let s = &samples[m * args.depths.len() + d];
            let med = |f: fn(&Sample) -> Option<f64>| median(s.iter().filter_map(f).collect());
            rows.push(json!({
                "mode": mode.name, "command": mode.command, "history_size": mode.history,
                "depth": depth, "rounds": s.len(),
                "published": s.iter().map(|x| x.ok).sum::<u64>(),
                "errors": s.iter().map(|x| x.errors).sum::<u64>(),
                "first_error": s.iter().find_map(|x| x.first_error.clone()),
                "per_sec": med(|x| Some(x.per_sec)),
                "redis_us_per_publish": med(|x| x.redis_us),
                "server_us_per_publish": med(|x| x.server_us),
                "all_delivered": s.iter().all(|x| x.drained),
                "cpu": {
                    "redis_util_pct": med(|x| Some(x.cpu.redis_util_pct)),
                    "other_util_pct": med(|x| Some(x.cpu.other_util_pct)),
                },
                "samples": s,
            }));
        }
    }
    let whole = CpuWindow::between(
        &whole0,
        &CpuAt::read(&cli.server_pid, &mut info).await?,
        whole_start.elapsed().as_secs_f64(),
    );
    let streams = stream_sizes(&mut info, &modes).await;
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
    let delivered: Vec<u64> = seen
        .delivered
        .iter()
        .map(|d| d.load(Ordering::Relaxed))
        .collect();
    let report = json!({
        "label": cli.label, "scenario": "durable-publish", "channels_per_mode": per_mode,
        "subscribers": names.len(), "cell_seconds": args.cell_seconds, "rounds": args.repeats,
        "rows": &rows, "cpu": whole, "streams": streams,
        "published": published, "delivered": delivered,
        "subscriber_faults": seen.faults.load(Ordering::Relaxed),
        "first_fault": seen.first_fault.lock().ok().and_then(|f| f.clone()),
    });
    println!("mode          depth  publishes/s  Redis µs/publish  redcast µs/publish  delivered");
    for row in &rows {
        let f = |k: &str| row[k].as_f64().unwrap_or(f64::NAN);
        println!(
            "{:<13} {:>5} {:>12.0} {:>17.2} {:>19.2}  {}",
            row["mode"].as_str().unwrap_or(""),
            row["depth"],
            f("per_sec"),
            f("redis_us_per_publish"),
            f("server_us_per_publish"),
            row["all_delivered"]
        );
    }
    Ok(report)
}

pub fn connector(cli: &crate::Cli, names: Arc<Vec<String>>) -> anyhow::Result<Connector> {
    Ok(Connector {
        target: Target::Redcast,
        url: cli.url.clone(),
        dest: crate::loopback_addr(&cli.url)?,
        raw: false,
        names,
        gate: Semaphore::new(cli.connect_concurrency.max(1)),
        attempts: AtomicUsize::new(0),
        per_source: cli.conns_per_source,
        source_base: cli.source_base,
        retries: cli.connect_retries,
        tls: None,
    })
}

fn note(seen: &Seen, e: String) {
    if let Ok(mut f) = seen.first_fault.lock() {
        f.get_or_insert(e);
    }
}

/// One subscriber of one channel: counts deliveries, checks positions.
async fn subscriber(
    conn: &Connector,
    name: &str,
    index: u32,
    mode: usize,
    seen: &Seen,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    use futures_util::{SinkExt, StreamExt};
    let mut ws = peer::connect(conn, &conn.url).await?;
    ws.send(peer::subscribe(&[name], &[])).await?;
    let mut track: Option<Track> = None;
    let mut acked = false;
    loop {
        let msg = tokio::select! {
            _ = stop.changed() => return Ok(()),
            msg = ws.next() => msg,
        };
        let Some(bytes) = peer::data(&msg).context("connection lost")? else {
            continue;
        };
        match peer::parse(bytes) {
            Frame::Ack { positions, .. } if !acked => {
                acked = true;
                track = positions.get(name).map(|p| Track::new(p, index, false));
                seen.acked.fetch_add(1, Ordering::Relaxed);
            }
            Frame::Message {
                position, payload, ..
            } => {
                if let Some(t) = &mut track {
                    if let Err(f) = t.on_message(position, payload.as_ref()) {
                        seen.faults.fetch_add(1, Ordering::Relaxed);
                        note(seen, format!("{name}: {f:?}"));
                    }
                }
                seen.delivered[mode].fetch_add(1, Ordering::Relaxed);
            }
            Frame::Error(e) => bail!("error frame {e}"),
            _ => {}
        }
    }
}

/// Waits (at most 30 s) until mode `m`'s subscribers got `expected`.
async fn drain(seen: &Seen, m: usize, expected: u64) -> anyhow::Result<()> {
    let limit = Duration::from_secs(30);
    crate::wait_until(limit, || {
        seen.delivered[m].load(Ordering::Relaxed) >= expected
    })
    .await
    .map(|_| ())
    .with_context(|| format!("mode {m}: not all {expected} messages delivered in 30 s"))
}

/// One round of one row.
#[derive(Clone, serde::Serialize)]
struct Sample {
    ok: u64,
    errors: u64,
    first_error: Option<String>,
    per_sec: f64,
    redis_us: Option<f64>,
    server_us: Option<f64>,
    drained: bool,
    cpu: CpuWindow,
}

impl Sample {
    fn new(done: &Done, cpu: CpuWindow) -> Self {
        let per = |s: f64| (done.ok > 0).then(|| s * 1e6 / done.ok as f64);
        Sample {
            ok: done.ok,
            errors: done.errors,
            first_error: done.first_error.clone(),
            per_sec: done.ok as f64 / done.seconds.max(1e-9),
            redis_us: per(cpu.redis_seconds),
            server_us: cpu.server_seconds.and_then(per),
            drained: false,
            cpu,
        }
    }
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

/// Entries kept and memory of the first stream of each durable mode.
async fn stream_sizes(conn: &mut MultiplexedConnection, modes: &[Mode]) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for m in modes.iter().filter(|m| m.history.is_some()) {
        let key = format!("rc:{{{}0}}:s", m.prefix);
        let len: Option<u64> = redis::cmd("XLEN").arg(&key).query_async(conn).await.ok();
        let bytes: Option<u64> = redis::cmd("MEMORY")
            .arg("USAGE")
            .arg(&key)
            .arg("SAMPLES")
            .arg(0)
            .query_async(conn)
            .await
            .ok();
        out.insert(
            m.name.clone(),
            json!({"key": key, "entries": len, "bytes": bytes}),
        );
    }
    out.into()
}
