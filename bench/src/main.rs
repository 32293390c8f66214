//! `redcast-bench`: a bounded, loopback-only load generator for redcast
//! (and, for comparison, Nchan).
//!
//! One run: open N WebSocket clients (bounded handshake concurrency),
//! wait until all are subscribed (redcast's ack) and verified (a probe
//! message seen on every channel of every client), then run the scenario:
//! publish at a fixed rate or as fast as possible for a bounded time and
//! count what arrives, or just hold the connections (memory), or time the
//! connection and reconnection storms. The report goes to stdout as a
//! table and optionally to a JSON file. Every wait is bounded, and the
//! whole run is bounded by `--max-run`.

mod client;
mod cluster;
mod durable;
mod payload;
mod procfs;
mod publish;
mod report;
mod tls;

use anyhow::{bail, Context};
use clap::{Parser, ValueEnum};
use client::{Connector, Ctl, Shared, Target};
use publish::Publisher;
use report::{Cpu, KernelDelta, Latency, Memory, Report, Storm};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::runtime::Handle;
use tokio::sync::{watch, Semaphore};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
enum Scenario {
    /// Clients spread over --channels (default 1): client i on channel i mod C.
    Broadcast,
    /// One channel per client.
    ManyChannels,
    /// Each client on --subs-per-client of --channels channels.
    Mixed,
    /// Connections only (no channel unless --channels): memory per connection.
    Idle,
    /// Connect all clients at once: connect rate, time until all subscribed.
    ConnectStorm,
    /// Connect all, then all drop and come back: time until all resubscribed.
    ReconnectStorm,
    /// Durable channels: PUBLISH against FCALL redcast_publish (durable/).
    DurablePublish,
    /// Durable channels: clients that missed messages all resume at once.
    DurableStorm,
}

#[derive(Parser, Debug)]
#[command(
    name = "redcast-bench",
    version,
    about = "Load generator for redcast and Nchan (loopback only)"
)]
struct Cli {
    #[arg(long, value_enum, default_value = "broadcast")]
    scenario: Scenario,
    #[arg(long, value_enum, default_value = "redcast")]
    target: Target,
    /// WebSocket URL (ws:// or wss://). redcast: the /ws endpoint. Nchan:
    /// the subscriber location, with `{channels}` where the comma-joined
    /// channels go.
    #[arg(long, default_value = "ws://127.0.0.1:8080/ws")]
    url: String,
    /// wss://: PEM file of the certificate(s) to trust (the server's
    /// self-signed one); its name must match the URL's host.
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// Redis to PUBLISH to (redcast target); with --redis-cluster, a seed.
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
    /// Publish through a Redis Cluster client (routed by channel slot).
    #[arg(long)]
    redis_cluster: bool,
    /// Redis command to publish with (spublish: sharded pub/sub).
    #[arg(long, value_enum, default_value = "publish")]
    publish_command: cluster::PublishCommand,
    /// Nchan publisher URL, with `{channel}` (Nchan target).
    #[arg(long, default_value = "http://127.0.0.1:8081/pub/{channel}")]
    publish_url: String,
    /// WebSocket clients.
    #[arg(long, default_value_t = 1000)]
    clients: usize,
    /// Channels (default: broadcast 1, many-channels = clients, mixed
    /// clients/10, idle 0, storms 100).
    #[arg(long)]
    channels: Option<usize>,
    /// Channels per client in the mixed scenario.
    #[arg(long, default_value_t = 3)]
    subs_per_client: usize,
    /// Channel names are this prefix plus the channel index.
    #[arg(long, default_value = "bench")]
    channel_prefix: String,
    /// Messages per second over all channels (0: as fast as possible).
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Seconds of publishing.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Stop publishing after this many messages.
    #[arg(long, default_value_t = 10_000_000)]
    max_messages: u64,
    /// Extra bytes of padding in each payload.
    #[arg(long, default_value_t = 0)]
    payload_pad: usize,
    /// redcast: subscribe with format=raw (payload only, no ack).
    #[arg(long)]
    raw: bool,
    /// Publishes in flight at most (redcast: on one pipelined Redis
    /// connection; Nchan: keep-alive HTTP connections).
    #[arg(long)]
    max_inflight: Option<u32>,
    /// WebSocket handshakes in flight at most.
    #[arg(long, default_value_t = 256)]
    connect_concurrency: usize,
    /// Retries of a failed connection attempt (with backoff).
    #[arg(long, default_value_t = 5)]
    connect_retries: u32,
    /// Connections per client source address (127.0.0.1, then .2, .3 ...
    /// by bind-before-connect), to stay clear of ephemeral port exhaustion.
    #[arg(long, default_value_t = 5_000)]
    conns_per_source: usize,
    /// Last octet of the first client source address (127.0.0.N). Give
    /// each run its own range so that TIME_WAIT sockets left by an
    /// earlier run do not slow down this one's connects. 1: kernel's choice.
    #[arg(long, default_value_t = 1)]
    source_base: u8,
    /// Server process to measure (CPU, RSS); repeat to sum several
    /// (nginx master and workers).
    #[arg(long)]
    server_pid: Vec<u32>,
    /// Other processes whose CPU is reported apart (e.g. redis-server),
    /// as PID or NAME=PID: summed, and each on its own.
    #[arg(long)]
    aux_pid: Vec<procfs::AuxPid>,
    /// Write the report as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// A label for the report.
    #[arg(long)]
    label: Option<String>,
    /// Seconds allowed for connecting and subscribing everyone.
    #[arg(long, default_value_t = 120.0)]
    ready_timeout: f64,
    /// Seconds to wait for outstanding deliveries after the last publish.
    #[arg(long, default_value_t = 5.0)]
    drain_timeout: f64,
    /// Seconds to hold idle connections before reading memory.
    #[arg(long, default_value_t = 3.0)]
    settle: f64,
    /// Milliseconds between readiness probe rounds.
    #[arg(long, default_value_t = 250)]
    probe_interval_ms: u64,
    /// Hard limit on the whole run, in seconds.
    #[arg(long, default_value_t = 600.0)]
    max_run: f64,
    /// Seconds between progress lines on stderr.
    #[arg(long, default_value_t = 2.0)]
    progress: f64,
    #[command(flatten)]
    durable: durable::Args,
}

/// Scheme, host and port of a ws://, wss://, http:// or redis:// URL.
fn url_parts(url: &str) -> anyhow::Result<(&str, &str, u16)> {
    let (scheme, rest) = url.split_once("://").context("URL without scheme")?;
    let default_port = match scheme {
        "ws" | "http" => 80,
        "wss" => 443,
        "redis" => 6379,
        _ => bail!("unsupported scheme in {url} (only ws://, wss://, http://, redis://)"),
    };
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().context("bad port")?),
        None => (authority, default_port),
    };
    Ok((scheme, host, port))
}

/// The address behind a URL; refuses anything that is not loopback.
fn loopback_addr(url: &str) -> anyhow::Result<SocketAddr> {
    let (_, host, port) = url_parts(url)?;
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .with_context(|| format!("resolving {host}"))?
        .filter(|a| a.is_ipv4())
        .collect();
    let Some(addr) = addrs.first().copied() else {
        bail!("{host} has no IPv4 address");
    };
    if !addrs.iter().all(|a| a.ip().is_loopback()) {
        bail!("{url}: only loopback targets (127.0.0.0/8) are allowed");
    }
    Ok(addr)
}

fn raise_nofile() -> (u64, u64) {
    match rlimit::Resource::NOFILE.get() {
        Ok((soft, hard)) => {
            if soft < hard && rlimit::Resource::NOFILE.set(hard, hard).is_ok() {
                return (hard, hard);
            }
            (soft, hard)
        }
        Err(_) => (0, 0),
    }
}

/// Which channels each client subscribes to.
fn assignment(scenario: Scenario, clients: usize, channels: usize, per: usize) -> Vec<Vec<u32>> {
    (0..clients)
        .map(|i| {
            if channels == 0 {
                return Vec::new();
            }
            match scenario {
                Scenario::Mixed => {
                    let per = per.clamp(1, channels);
                    (0..per)
                        .map(|j| ((i * per + j) % channels) as u32)
                        .collect()
                }
                _ => vec![(i % channels) as u32],
            }
        })
        .collect()
}

/// Waits until `done()` or the limit; returns the elapsed time if done.
async fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if done() {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    done().then(|| start.elapsed())
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let nofile = raise_nofile();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("redcast-bench: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    // The publisher gets its own thread (see publish.rs).
    let pub_rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("publisher")
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("redcast-bench: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let limit = Duration::from_secs_f64(cli.max_run.max(1.0));
    let handle = pub_rt.handle().clone();
    let result = rt.block_on(async {
        match tokio::time::timeout(limit, run(&cli, nofile, handle)).await {
            Ok(r) => r,
            Err(_) => Err(anyhow::anyhow!(
                "the run exceeded --max-run {}s",
                cli.max_run
            )),
        }
    });
    // Client tasks may still hold sockets; don't wait for them.
    rt.shutdown_timeout(Duration::from_secs(2));
    pub_rt.shutdown_timeout(Duration::from_secs(2));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("redcast-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: &Cli, nofile: (u64, u64), pub_rt: Handle) -> anyhow::Result<()> {
    let dest = loopback_addr(&cli.url)?;
    let tls = match url_parts(&cli.url)? {
        ("wss", host, _) => {
            let Some(ca) = &cli.ca_file else {
                bail!("wss:// needs --ca-file (the server's certificate)");
            };
            Some(tls::Tls::new(ca, host)?)
        }
        _ => None,
    };
    let scenario = cli.scenario;
    let channels = match scenario {
        Scenario::ManyChannels => cli.channels.unwrap_or(cli.clients),
        Scenario::Mixed => cli.channels.unwrap_or((cli.clients / 10).max(1)),
        Scenario::Broadcast => cli.channels.unwrap_or(1),
        Scenario::Idle => cli.channels.unwrap_or(0),
        Scenario::ConnectStorm | Scenario::ReconnectStorm => cli.channels.unwrap_or(100),
        Scenario::DurablePublish | Scenario::DurableStorm => {
            return durable::run(cli, pub_rt).await
        }
    };
    if channels == 0 && cli.target == Target::Nchan {
        bail!("Nchan subscribers need a channel: use --channels 1 or more");
    }
    let plan = assignment(scenario, cli.clients, channels, cli.subs_per_client);
    let mut subscribers = vec![0u64; channels];
    for c in plan.iter().flatten() {
        subscribers[*c as usize] += 1;
    }
    let names: Arc<Vec<String>> = Arc::new(
        (0..channels)
            .map(|c| format!("{}{c}", cli.channel_prefix))
            .collect(),
    );
    let pad = "x".repeat(cli.payload_pad);
    let publisher = match cli.target {
        Target::Redcast => {
            loopback_addr(&cli.redis_url)?;
            Publisher::redis(
                pub_rt.clone(),
                &cli.redis_url,
                (cli.redis_cluster, cli.publish_command),
                names.clone(),
                pad,
                cli.max_inflight.unwrap_or(256),
            )
            .await?
        }
        Target::Nchan => {
            let addr = loopback_addr(&cli.publish_url)?;
            Publisher::nchan(
                pub_rt.clone(),
                &cli.publish_url,
                addr,
                names.clone(),
                pad,
                cli.max_inflight.unwrap_or(8),
            )?
        }
    };

    let mut notes = Vec::new();
    if cli.target == Target::Nchan {
        notes.push(
            "Nchan: published by HTTP POST to its publisher location (Nchan then goes through Redis); \
             redcast: by Redis PUBLISH. The server CPU of Nchan therefore includes handling the POSTs."
                .to_string(),
        );
    }
    let server_pids = cli.server_pid.clone();
    let aux_pids: Vec<u32> = cli.aux_pid.iter().map(|a| a.pid).collect();
    let rss_before = procfs::total_rss(&server_pids)?;
    let kernel_before = procfs::kernel_mem();

    let conn = Arc::new(Connector {
        target: cli.target,
        url: cli.url.clone(),
        dest,
        raw: cli.raw,
        names: names.clone(),
        gate: Semaphore::new(cli.connect_concurrency.max(1)),
        attempts: AtomicUsize::new(0),
        per_source: cli.conns_per_source,
        source_base: cli.source_base,
        retries: cli.connect_retries,
        tls,
    });
    let shared = Arc::new(Shared::new()?);
    let (ctl_tx, ctl_rx) = watch::channel(Ctl::default());
    let phase = Arc::new(Mutex::new("connect"));

    // Progress on stderr.
    let progress = {
        let shared = shared.clone();
        let phase = phase.clone();
        let publisher = publisher.clone();
        let every = Duration::from_secs_f64(cli.progress.max(0.2));
        let label = format!("{:?}/{:?}", cli.target, scenario).to_lowercase();
        tokio::spawn(async move {
            let start = Instant::now();
            loop {
                tokio::time::sleep(every).await;
                let p = *phase.lock().unwrap_or_else(|e| e.into_inner());
                eprintln!(
                    "[{label} {:6.1}s] {p}: open {} acked {} verified {} failed {} published {} delivered {}",
                    start.elapsed().as_secs_f64(),
                    shared.open.load(Ordering::Relaxed),
                    shared.acked.load(Ordering::Relaxed),
                    shared.verified.load(Ordering::Relaxed),
                    shared.gave_up.load(Ordering::Relaxed),
                    publisher.published(),
                    shared.delivered.load(Ordering::Relaxed),
                );
            }
        })
    };
    let set_phase = |p: &'static str| {
        *phase.lock().unwrap_or_else(|e| e.into_inner()) = p;
    };

    // Connect everyone.
    let ready_limit = Duration::from_secs_f64(cli.ready_timeout);
    let n = cli.clients;
    // Every client connected and subscribed (first wave, and again after
    // a reconnect storm).
    let ready = || {
        wait_for_ready(
            &shared,
            &publisher,
            n,
            channels,
            cli,
            ready_limit,
            &set_phase,
        )
    };
    let connect_start = Instant::now();
    let cpu_connect0 = cpu_snapshot(&server_pids, &aux_pids)?;
    let mut tasks = Vec::with_capacity(n);
    for chans in plan {
        tasks.push(tokio::spawn(client::run(
            chans,
            conn.clone(),
            shared.clone(),
            ctl_rx.clone(),
        )));
    }
    let first = ready().await;
    let connected = shared.gen_connected.load(Ordering::Relaxed);
    eprintln!(
        "connected {connected}/{n} in {:.2}s, all ready: {}",
        first
            .connected
            .unwrap_or(connect_start.elapsed())
            .as_secs_f64(),
        first.verified.is_some()
    );
    let rss_connected = procfs::total_rss(&server_pids)?;
    let kernel_connected = procfs::kernel_mem();
    let cpu_connect1 = cpu_snapshot(&server_pids, &aux_pids)?;

    let mut report = Report::new(
        cli.label.clone(),
        format!("{:?}", cli.target).to_lowercase(),
        format!("{scenario:?}"),
        n,
        channels,
        nofile,
    );
    report.connect_cpu = Some(Cpu::between(
        &cpu_connect0,
        &cpu_connect1,
        0,
        connect_start.elapsed().as_secs_f64(),
    ));
    report.connect = first.clone().into_storm(n);
    if conn.tls.is_some() {
        let (full, resumed) = tls_handshakes(&shared);
        report.tls = Some(report::TlsHandshakes {
            full,
            resumed,
            ..Default::default()
        });
    }
    report.kernel = Some(KernelDelta::new(kernel_before, kernel_connected, connected));

    let measure = matches!(
        scenario,
        Scenario::Broadcast | Scenario::ManyChannels | Scenario::Mixed
    );
    if measure {
        set_phase("publish");
        let cpu0 = cpu_snapshot(&server_pids, &aux_pids)?;
        let threads0 = procfs::threads(&server_pids);
        let aux0 = procfs::each_cpu(&cli.aux_pid);
        let pub_start = Instant::now();
        let pub_start_unix = payload::unix_nanos();
        let duration = Duration::from_secs_f64(cli.duration);
        let total = if cli.rate > 0.0 {
            ((cli.rate * cli.duration).round() as u64).min(cli.max_messages)
        } else {
            cli.max_messages
        };
        let (submitted, lag) = publisher
            .run_schedule(total, channels as u64, cli.rate, duration)
            .await?;
        notes.extend(lag);
        let publish_secs = pub_start.elapsed().as_secs_f64();
        if !publisher.quiesce(Duration::from_secs(15)).await {
            notes.push("some publishes were still outstanding after 15s".into());
        }
        let expected: u64 = publisher
            .stats
            .per_channel
            .iter()
            .zip(&subscribers)
            .map(|(p, s)| p.load(Ordering::Relaxed) * s)
            .sum();
        set_phase("drain");
        let drain = Duration::from_secs_f64(cli.drain_timeout);
        let drained = wait_until(drain, || {
            shared.delivered.load(Ordering::Relaxed) >= expected
        })
        .await;
        if drained.is_none() {
            notes.push(format!(
                "not all deliveries arrived within the {}s drain timeout",
                cli.drain_timeout
            ));
        }
        let window = pub_start.elapsed().as_secs_f64();
        let cpu1 = cpu_snapshot(&server_pids, &aux_pids)?;
        report.threads = procfs::threads_between(&threads0, &procfs::threads(&server_pids));
        let aux1 = procfs::each_cpu(&cli.aux_pid);
        report.aux_cpu = procfs::ProcessCpu::between(&cli.aux_pid, &aux0, &aux1, window);
        let delivered = shared.delivered.load(Ordering::Relaxed);
        let last = shared.last_delivery.load(Ordering::Relaxed);
        let delivery_secs = if last > pub_start_unix {
            (last - pub_start_unix) as f64 / 1e9
        } else {
            window
        };
        report.messages_submitted = submitted;
        report.published = publisher.published();
        report.publish_errors = publisher.stats.errors.load(Ordering::Relaxed);
        report.publish_error = publisher
            .stats
            .first_error
            .lock()
            .ok()
            .and_then(|e| e.clone());
        report.rate = cli.rate;
        report.publish = Some(publisher.setup.clone());
        report.publish_seconds = publish_secs;
        report.publish_rate = report.published as f64 / publish_secs.max(1e-9);
        report.expected = expected;
        report.delivered = delivered;
        report.losses = expected.saturating_sub(delivered);
        report.duplicates = shared.duplicates.load(Ordering::Relaxed);
        report.deliveries_per_sec = delivered as f64 / delivery_secs.max(1e-9);
        report.offered_deliveries_per_sec = expected as f64 / publish_secs.max(1e-9);
        report.window_seconds = window;
        report.latency = shared.latency.lock().ok().map(|h| Latency::from(&*h));
        report.cpu = Some(Cpu::between(&cpu0, &cpu1, delivered, window));
    } else if scenario == Scenario::Idle {
        set_phase("idle");
        tokio::time::sleep(Duration::from_secs_f64(cli.settle)).await;
    } else if scenario == Scenario::ReconnectStorm {
        set_phase("reconnect");
        shared.gen_connected.store(0, Ordering::Relaxed);
        shared.acked.store(0, Ordering::Relaxed);
        shared.verified.store(0, Ordering::Relaxed);
        let cpu0 = cpu_snapshot(&server_pids, &aux_pids)?;
        let threads0 = procfs::threads(&server_pids);
        let handshakes0 = tls_handshakes(&shared);
        ctl_tx.send_modify(|c| c.generation += 1);
        let again = ready().await;
        let cpu1 = cpu_snapshot(&server_pids, &aux_pids)?;
        report.threads = procfs::threads_between(&threads0, &procfs::threads(&server_pids));
        let handshakes1 = tls_handshakes(&shared);
        report.tls = report.tls.take().map(|t| report::TlsHandshakes {
            reconnect_full: handshakes1.0 - handshakes0.0,
            reconnect_resumed: handshakes1.1 - handshakes0.1,
            ..t
        });
        let window = again
            .verified
            .or(again.connected)
            .unwrap_or(ready_limit)
            .as_secs_f64();
        report.reconnect = Some(again.into_storm(n));
        report.cpu = Some(Cpu::between(&cpu0, &cpu1, 0, window));
    }

    report.memory = Memory::new(
        rss_before,
        rss_connected,
        procfs::total_rss(&server_pids)?,
        shared.gen_connected.load(Ordering::Relaxed),
    );
    report.connections_ok = shared.connects_ok.load(Ordering::Relaxed);
    report.connections_failed = shared.gave_up.load(Ordering::Relaxed) as u64;
    report.connect_attempt_errors = shared.attempt_errors.load(Ordering::Relaxed);
    report.connections_lost = shared.lost.load(Ordering::Relaxed);
    report.unparsed_frames = shared.unparsed.load(Ordering::Relaxed);
    report.unexpected_channel = shared.unexpected.load(Ordering::Relaxed);
    report.errors = shared.errors.lock().map(|e| e.clone()).unwrap_or_default();
    report.notes = notes;

    set_phase("stop");
    ctl_tx.send_modify(|c| c.stop = true);
    let stop_by = Instant::now() + Duration::from_secs(10);
    for t in tasks {
        let left = stop_by.saturating_duration_since(Instant::now());
        if tokio::time::timeout(left, t).await.is_err() {
            break;
        }
    }
    progress.abort();

    print!("{}", report.table());
    if let Some(path) = &cli.json {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, json + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Times of one connection wave, from its start.
#[derive(Clone, Default)]
struct Wave {
    connected: Option<Duration>,
    acked: Option<Duration>,
    verified: Option<Duration>,
    failed: usize,
}

impl Wave {
    fn into_storm(self, n: usize) -> Storm {
        Storm {
            clients: n,
            failed: self.failed,
            seconds_to_connect: self.connected.map(|d| d.as_secs_f64()),
            seconds_to_ack: self.acked.map(|d| d.as_secs_f64()),
            seconds_to_verified: self.verified.map(|d| d.as_secs_f64()),
            connects_per_sec: self.connected.map(|d| n as f64 / d.as_secs_f64().max(1e-9)),
        }
    }
}

/// Waits for every client to connect, be acked, and see a probe on each
/// of its channels (probes are published in rounds meanwhile).
async fn wait_for_ready(
    shared: &Arc<Shared>,
    publisher: &Arc<Publisher>,
    n: usize,
    channels: usize,
    cli: &Cli,
    limit: Duration,
    set_phase: &impl Fn(&'static str),
) -> Wave {
    let start = Instant::now();
    let mut wave = Wave::default();
    let gave_up_before = shared.gave_up.load(Ordering::Relaxed);
    let failed = || shared.gave_up.load(Ordering::Relaxed) - gave_up_before;
    set_phase("connect");
    wave.connected = wait_until(limit, || {
        shared.gen_connected.load(Ordering::Relaxed) + failed() >= n
    })
    .await
    .filter(|_| failed() == 0);
    let ok = n - failed().min(n);
    set_phase("subscribe");
    let left = limit.saturating_sub(start.elapsed());
    wave.acked = wait_until(left, || shared.acked.load(Ordering::Relaxed) >= ok)
        .await
        .map(|_| start.elapsed());
    set_phase("probe");
    let interval = Duration::from_millis(cli.probe_interval_ms.max(10));
    while start.elapsed() < limit {
        if shared.verified.load(Ordering::Relaxed) >= ok {
            wave.verified = Some(start.elapsed());
            break;
        }
        if channels > 0 {
            publisher
                .probe_round(channels, Duration::from_secs(10))
                .await;
        }
        let _ = wait_until(interval, || shared.verified.load(Ordering::Relaxed) >= ok).await;
    }
    wave.failed = failed();
    wave
}

/// Full and resumed TLS handshakes so far.
fn tls_handshakes(shared: &Shared) -> (u64, u64) {
    (
        shared.tls_full.load(Ordering::Relaxed),
        shared.tls_resumed.load(Ordering::Relaxed),
    )
}

fn cpu_snapshot(server: &[u32], aux: &[u32]) -> anyhow::Result<[Option<f64>; 4]> {
    Ok([
        procfs::total_cpu(server)?,
        Some(procfs::self_cpu()),
        procfs::total_cpu(aux)?,
        Some(procfs::machine_busy()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback() {
        assert!(loopback_addr("ws://127.0.0.1:8080/ws").is_ok());
        assert!(loopback_addr("ws://127.0.0.5:8080/ws?x=1").is_ok());
        assert!(loopback_addr("redis://127.0.0.1:6380").is_ok());
        assert!(loopback_addr("http://localhost:8081/pub/{channel}").is_ok());
        assert!(loopback_addr("ws://10.0.0.1:8080/ws").is_err());
        assert!(loopback_addr("ws://192.168.1.1/ws").is_err());
        assert!(loopback_addr("ftp://127.0.0.1/").is_err());
        assert!(loopback_addr("wss://localhost:8443/ws").is_ok());
        assert!(loopback_addr("wss://example.com/ws").is_err());
        assert_eq!(
            url_parts("wss://localhost/ws").unwrap(),
            ("wss", "localhost", 443)
        );
    }

    #[test]
    fn assignments() {
        let b = assignment(Scenario::Broadcast, 5, 2, 3);
        assert_eq!(b, vec![vec![0], vec![1], vec![0], vec![1], vec![0]]);
        let m = assignment(Scenario::Mixed, 2, 4, 3);
        assert_eq!(m, vec![vec![0, 1, 2], vec![3, 0, 1]]);
        let i = assignment(Scenario::Idle, 2, 0, 3);
        assert_eq!(i, vec![Vec::<u32>::new(), Vec::new()]);
    }
}
