//! `redcast-soak`: a long run of redcast under churn and failures.
//!
//! Starts a private redis-server and redcast (default settings, loopback,
//! free ports), then for `--duration`: `--clients` client slots connect,
//! subscribe, add and drop a channel and close, over and over; a publisher
//! sends `--rate` messages/s; Redis is restarted every
//! `--redis-restart-every` (alternately kill -9 and a clean shutdown) and
//! redcast gets a SIGHUP every `--sighup-every`. Then every client leaves.
//!
//! Pass: RSS after the warm-up stays within `--rss-tolerance` of its
//! value at the end of the warm-up; open fds and the listener's tasks
//! return to their baseline; connections, subscriptions, channels and
//! pending handshakes are back to zero; no message is lost within a phase without a Redis restart.
//! Writes a Markdown report (and the samples as JSON) to `--out`; exits
//! non-zero when a criterion fails. `bash bench/soak.sh` runs the
//! documented 30-minute soak (docs/soak.md).

mod load;
mod procs;
mod report;

use anyhow::Context;
use clap::Parser;
use load::{Slot, Tally};
use procs::{Redcast, Redis};
use report::{Outcome, Sample};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

#[derive(Parser, Debug)]
#[command(
    name = "redcast-soak",
    about = "Long churn and failure run against redcast (loopback only)"
)]
struct Cli {
    /// The redcast binary under test.
    #[arg(long, default_value = "target/release/redcast")]
    redcast: PathBuf,
    /// Length of the loaded run (e.g. 30m, 90s).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30m")]
    duration: Duration,
    /// First part of the run left out of the RSS criterion.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5m")]
    warmup: Duration,
    /// Client slots (each: connect, subscribe, change, close, again).
    #[arg(long, default_value_t = 5000)]
    clients: usize,
    /// Messages published per second.
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// Channels the messages and clients spread over.
    #[arg(long, default_value_t = 1000)]
    channels: usize,
    /// Shortest and longest life of one client connection.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5s")]
    hold_min: Duration,
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30s")]
    hold_max: Duration,
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5m")]
    redis_restart_every: Duration,
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1m")]
    sighup_every: Duration,
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    sample_every: Duration,
    /// Allowed RSS drift after the warm-up, in percent.
    #[arg(long, default_value_t = 5.0)]
    rss_tolerance: f64,
    /// Directory for the report (report.md, samples.json, redcast.log).
    #[arg(long, default_value = "target/soak")]
    out: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    std::fs::create_dir_all(&cli.out)?;
    let dir = tempfile_dir()?;
    let mut redis = Redis::start(&dir)?;
    let redcast = Redcast::start(&cli.redcast, &cli.out, &redis.url())?;
    redcast.wait_ready(Duration::from_secs(30)).await?;
    let base = report::Baseline {
        fds: redcast.fds()?,
        rss_kib: redcast.rss_kib()?,
        tasks: redcast.metric(report::TASKS).await?,
    };
    eprintln!(
        "redcast pid {} ready: {} fds, {} KiB",
        redcast.pid, base.fds, base.rss_kib
    );

    let tally = Arc::new(Tally::default());
    tally.phase.store(1, Ordering::SeqCst);
    let stop = CancellationToken::new();
    let publisher = tokio::spawn(load::publish(
        redis.url(),
        cli.rate,
        cli.channels,
        tally.clone(),
        stop.clone(),
    ));
    let slot = Slot {
        ws: redcast.ws,
        channels: cli.channels,
        hold_min: cli.hold_min,
        hold_max: cli.hold_max,
    };
    let clients_stop = CancellationToken::new();
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..cli.clients {
        clients.spawn(load::client(slot, tally.clone(), clients_stop.clone()));
    }

    let samples = run_schedule(&cli, &mut redis, &redcast, &tally).await?;

    clients_stop.cancel();
    while clients.join_next().await.is_some() {}
    let settled = settle(&redcast, &base).await;
    stop.cancel();
    let _ = publisher.await;
    let outcome = Outcome::judge(&cli_params(&cli), &base, &samples, &settled, &tally);
    let text = report::markdown(
        &cli_params(&cli),
        &base,
        &samples,
        &settled,
        &tally,
        &outcome,
    );
    std::fs::write(cli.out.join("report.md"), &text)?;
    std::fs::write(
        cli.out.join("samples.json"),
        serde_json::to_string_pretty(&samples)?,
    )?;
    println!("{text}");
    std::fs::remove_dir_all(&dir).ok();
    anyhow::ensure!(
        outcome.passed(),
        "soak failed: {}",
        outcome.failures.join("; ")
    );
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("redcast-soak-{}", std::process::id()));
    std::fs::create_dir_all(&dir).context("temp dir")?;
    Ok(dir)
}

fn cli_params(cli: &Cli) -> report::Params {
    report::Params {
        duration: cli.duration,
        warmup: cli.warmup,
        clients: cli.clients,
        rate: cli.rate,
        channels: cli.channels,
        redis_restart_every: cli.redis_restart_every,
        sighup_every: cli.sighup_every,
        rss_tolerance: cli.rss_tolerance,
    }
}

/// The loaded part of the run: samples, SIGHUPs and Redis restarts on
/// their schedules, until `--duration` is over.
async fn run_schedule(
    cli: &Cli,
    redis: &mut Redis,
    redcast: &Redcast,
    tally: &Tally,
) -> anyhow::Result<Vec<Sample>> {
    let start = Instant::now();
    let (mut next_sample, mut next_hup, mut next_restart) = (
        start + cli.sample_every,
        start + cli.sighup_every,
        start + cli.redis_restart_every,
    );
    let mut samples = Vec::new();
    let mut restarts = 0u32;
    let mut last_delivered = 0;
    while start.elapsed() < cli.duration {
        let now = Instant::now();
        if now >= next_restart {
            restarts += 1;
            restart_redis(redis, redcast, tally, restarts % 2 == 1).await?;
            next_restart += cli.redis_restart_every;
        }
        if now >= next_hup {
            redcast.sighup();
            next_hup += cli.sighup_every;
        }
        if now >= next_sample {
            let delivered = tally.delivered.load(Ordering::Relaxed);
            let s = Sample::take(
                redcast,
                start.elapsed(),
                delivered - last_delivered,
                cli.sample_every,
            )
            .await?;
            last_delivered = delivered;
            eprintln!("{}", s.line());
            samples.push(s);
            next_sample += cli.sample_every;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(samples)
}

/// A restart: the phase turns even (messages around it are not judged),
/// Redis stops (kill -9 or SIGTERM), comes back, redcast is ready again,
/// and a new odd phase starts.
async fn restart_redis(
    redis: &mut Redis,
    redcast: &Redcast,
    tally: &Tally,
    hard: bool,
) -> anyhow::Result<()> {
    tally.phase.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(500)).await;
    redis.stop(hard);
    tokio::time::sleep(Duration::from_secs(1)).await;
    tokio::task::block_in_place(|| redis.launch())?;
    let took = redcast.wait_ready(Duration::from_secs(60)).await?;
    eprintln!(
        "redis restarted ({}); redcast ready after {took:?}",
        if hard { "kill -9" } else { "clean" }
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    tally.phase.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

/// After every client left: waits (bounded) for the gauges to reach zero
/// and the fds their baseline, and reads them.
async fn settle(redcast: &Redcast, base: &report::Baseline) -> report::Settled {
    let start = Instant::now();
    loop {
        let s = report::Settled::read(redcast).await;
        let back = s.is_clean() && s.fds <= base.fds && s.tasks <= base.tasks;
        if back || start.elapsed() > Duration::from_secs(60) {
            return report::Settled {
                after: start.elapsed(),
                ..s
            };
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
