//! Publishing: a Redis PUBLISH (or SPUBLISH) on one multiplexed
//! (pipelined) connection for redcast, to a node or through the cluster
//! client (cluster.rs), or an HTTP POST to Nchan's publisher location over a pool
//! of keep-alive connections (a raw Redis PUBLISH does not reach Nchan's
//! subscribers: Nchan has its own message format and keys in Redis).
//!
//! Each publish takes a permit (bounding the requests in flight), stamps
//! the payload with the current time, and runs in its own task, so that a
//! fixed publish schedule is kept while earlier replies are outstanding.

use crate::cluster::{PublishCommand, PublishSetup, RedisConn};
use crate::payload;
use anyhow::{bail, Context};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tokio::sync::Semaphore;

/// Where publishes go.
enum Sink {
    Redis {
        conn: RedisConn,
        command: PublishCommand,
    },
    Nchan {
        addr: SocketAddr,
        host: String,
        /// Path with `{channel}` in it.
        path: String,
        pool: Mutex<Vec<HttpConn>>,
    },
}

/// Successes and failures, per channel for measured messages.
pub struct PubStats {
    pub per_channel: Vec<AtomicU64>,
    pub probes: AtomicU64,
    pub errors: AtomicU64,
    pub first_error: Mutex<Option<String>>,
}

pub struct Publisher {
    sink: Sink,
    names: Arc<Vec<String>>,
    pad: Arc<str>,
    permits: Arc<Semaphore>,
    max_inflight: u32,
    /// The publisher's own runtime (its own thread), so that stamping and
    /// sending a message does not wait behind thousands of client tasks.
    handle: Handle,
    pub stats: PubStats,
    /// How messages are published (for the report).
    pub setup: PublishSetup,
}

impl Publisher {
    /// `cluster`: `url` is a seed of a Redis Cluster (see cluster.rs).
    pub async fn redis(
        handle: Handle,
        url: &str,
        (cluster, command): (bool, PublishCommand),
        names: Arc<Vec<String>>,
        pad: String,
        max_inflight: u32,
    ) -> anyhow::Result<Arc<Self>> {
        let (url, seed_host) = (url.to_string(), crate::url_parts(url)?.1.to_string());
        // Connect inside the publisher runtime: the connection's driver
        // task lives there.
        let (conn, setup) = handle
            .spawn(async move { RedisConn::connect(&url, &seed_host, cluster, command).await })
            .await??;
        let sink = Sink::Redis { conn, command };
        Ok(Self::build(handle, sink, setup, names, pad, max_inflight))
    }

    /// `url` is `http://127.0.0.1:PORT/path/{channel}`.
    pub fn nchan(
        handle: Handle,
        url: &str,
        addr: SocketAddr,
        names: Arc<Vec<String>>,
        pad: String,
        connections: u32,
    ) -> anyhow::Result<Arc<Self>> {
        let rest = url
            .strip_prefix("http://")
            .context("the publish URL must start with http://")?;
        let (host, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let path = if path.contains("{channel}") {
            path.to_string()
        } else {
            format!("{}/{{channel}}", path.trim_end_matches('/'))
        };
        let sink = Sink::Nchan {
            addr,
            host: host.to_string(),
            path,
            pool: Mutex::new(Vec::new()),
        };
        let setup = PublishSetup {
            command: "HTTP POST".into(),
            cluster: false,
            masters: None,
            replicas: None,
        };
        Ok(Self::build(handle, sink, setup, names, pad, connections))
    }

    fn build(
        handle: Handle,
        sink: Sink,
        setup: PublishSetup,
        names: Arc<Vec<String>>,
        pad: String,
        max_inflight: u32,
    ) -> Arc<Self> {
        let max_inflight = max_inflight.max(1);
        let per_channel = names.iter().map(|_| AtomicU64::new(0)).collect();
        Arc::new(Self {
            sink,
            names,
            pad: pad.into(),
            permits: Arc::new(Semaphore::new(max_inflight as usize)),
            max_inflight,
            handle,
            setup,
            stats: PubStats {
                per_channel,
                probes: AtomicU64::new(0),
                errors: AtomicU64::new(0),
                first_error: Mutex::new(None),
            },
        })
    }

    /// Starts one publish; waits only for a free slot.
    pub async fn submit(self: &Arc<Self>, channel: u32, seq: u64, probe: bool) {
        let Ok(permit) = self.permits.clone().acquire_owned().await else {
            return;
        };
        let this = self.clone();
        self.handle.spawn(async move {
            let result = this.publish(channel, seq, probe).await;
            // Count first, then free the slot: quiesce() relies on it.
            match result {
                Ok(()) if probe => {
                    this.stats.probes.fetch_add(1, Ordering::Relaxed);
                }
                Ok(()) => {
                    this.stats.per_channel[channel as usize].fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    this.stats.errors.fetch_add(1, Ordering::Relaxed);
                    if let Ok(mut first) = this.stats.first_error.lock() {
                        first.get_or_insert_with(|| format!("{e:#}"));
                    }
                }
            }
            drop(permit);
        });
    }

    /// Waits until every submitted publish has finished (bounded).
    pub async fn quiesce(&self, limit: Duration) -> bool {
        let all = self.permits.acquire_many(self.max_inflight);
        match tokio::time::timeout(limit, all).await {
            Ok(Ok(permits)) => {
                drop(permits);
                true
            }
            _ => false,
        }
    }

    /// One probe on each channel, waiting for all to be done.
    pub async fn probe_round(self: &Arc<Self>, channels: usize, limit: Duration) {
        for c in 0..channels {
            self.submit(c as u32, 0, true).await;
        }
        self.quiesce(limit).await;
    }

    /// Publishes `total` messages round-robin over `channels`, at `rate`
    /// per second (0: as fast as the in-flight bound allows) for at most
    /// `duration`; runs on the publisher runtime. Returns how many were
    /// submitted, and a note when the schedule could not be kept.
    pub async fn run_schedule(
        self: &Arc<Self>,
        total: u64,
        channels: u64,
        rate: f64,
        duration: Duration,
    ) -> anyhow::Result<(u64, Option<String>)> {
        let this = self.clone();
        let task = self.handle.spawn(async move {
            let start = tokio::time::Instant::now();
            let mut submitted = 0u64;
            for k in 0..total {
                if rate > 0.0 {
                    let due = start + Duration::from_secs_f64(k as f64 / rate);
                    tokio::time::sleep_until(due).await;
                    // Far behind the schedule: stop rather than overrun.
                    if start.elapsed() > duration + Duration::from_secs(2) {
                        let note = format!("publisher fell behind schedule; stopped after {k}");
                        return (submitted, Some(note));
                    }
                } else if start.elapsed() >= duration {
                    break;
                }
                let c = (k % channels) as u32;
                this.submit(c, k / channels + 1, false).await;
                submitted += 1;
            }
            (submitted, None)
        });
        Ok(task.await?)
    }

    pub fn published(&self) -> u64 {
        self.stats
            .per_channel
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    async fn publish(&self, channel: u32, seq: u64, probe: bool) -> anyhow::Result<()> {
        let name = &self.names[channel as usize];
        let body = payload::make(channel, seq, probe, &self.pad);
        let limit = Duration::from_secs(10);
        match &self.sink {
            Sink::Redis { conn, command } => {
                let cmd = redis::cmd(command.name()).arg(name).arg(body).to_owned();
                let _receivers = tokio::time::timeout(limit, conn.query(&cmd))
                    .await
                    .with_context(|| format!("{} timed out", command.name()))??;
                Ok(())
            }
            Sink::Nchan {
                addr,
                host,
                path,
                pool,
            } => {
                let taken = pool.lock().ok().and_then(|mut p| p.pop());
                let mut conn = match taken {
                    Some(c) => c,
                    None => HttpConn::connect(*addr).await?,
                };
                let path = path.replace("{channel}", name);
                let (status, keep) =
                    tokio::time::timeout(limit, conn.post(host, &path, body.as_bytes()))
                        .await
                        .context("POST timed out")??;
                if keep {
                    if let Ok(mut p) = pool.lock() {
                        p.push(conn);
                    }
                }
                if !(200..300).contains(&status) {
                    bail!("Nchan publisher answered HTTP {status}");
                }
                Ok(())
            }
        }
    }
}

/// A minimal HTTP/1.1 keep-alive client connection (POST only).
struct HttpConn {
    io: BufReader<TcpStream>,
}

impl HttpConn {
    async fn connect(addr: SocketAddr) -> anyhow::Result<Self> {
        let stream = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
            .await
            .context("publisher connect timed out")??;
        stream.set_nodelay(true)?;
        Ok(Self {
            io: BufReader::new(stream),
        })
    }

    /// Sends one POST and reads the whole response: (status, keep-alive).
    async fn post(&mut self, host: &str, path: &str, body: &[u8]) -> anyhow::Result<(u16, bool)> {
        let mut req = format!(
            "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nAccept: text/plain\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(body);
        self.io.get_mut().write_all(&req).await?;

        let mut line = String::new();
        if self.io.read_line(&mut line).await? == 0 {
            bail!("publisher closed the connection");
        }
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("bad status line {line:?}"))?;
        let mut length = 0usize;
        let mut chunked = false;
        let mut keep = true;
        for _ in 0..100 {
            line.clear();
            if self.io.read_line(&mut line).await? == 0 {
                bail!("publisher closed the connection in the headers");
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let Some((k, v)) = l.split_once(':') else {
                continue;
            };
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_ascii_lowercase());
            match k.as_str() {
                "content-length" => length = v.parse()?,
                "transfer-encoding" => chunked = v.contains("chunked"),
                "connection" => keep = !v.contains("close"),
                _ => {}
            }
        }
        if chunked {
            for _ in 0..10_000 {
                line.clear();
                self.io.read_line(&mut line).await?;
                let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)?;
                let mut chunk = vec![0; size + 2];
                self.io.read_exact(&mut chunk).await?;
                if size == 0 {
                    break;
                }
            }
        } else {
            let mut rest = vec![0; length];
            self.io.read_exact(&mut rest).await?;
        }
        Ok((status, keep))
    }
}
