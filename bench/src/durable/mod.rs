//! Durable channels (issue 11): what a durable publish costs Redis, and a
//! recovery storm. Two scenarios of `redcast-bench`, run by bench/durable.sh:
//!
//! - `--scenario durable-publish` (cost.rs): a plain `PUBLISH` against
//!   `FCALL redcast_publish` on a channel without history and on durable
//!   channels, one Redis connection, with 1 or 64 requests in flight:
//!   publishes per second and Redis CPU per publish (`INFO CPU`), while
//!   redcast fans every message out to one WebSocket subscriber per channel.
//! - `--scenario durable-storm` (storm.rs): thousands of clients on durable
//!   channels drop, miss messages, and all resume at once with `since`;
//!   every stream is checked for exactly once, in order, while other
//!   clients measure their live latency.
//!
//! Channel names must match the rules redcast runs with (durable.sh sets
//! them): `plain.N` without history, `h<size>.N` with `history_size` size.

pub mod board;
pub mod cell;
pub mod cost;
pub mod peer;
pub mod resume;
pub mod storm;

use anyhow::{bail, Context};
use redis::aio::MultiplexedConnection;
use redis::Value;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::runtime::Handle;

/// Options of the durable scenarios (flattened into the main CLI; the
/// common ones, such as --clients, --channels, --rate, are shared).
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// durable-publish: history sizes of the durable channels measured
    /// (each needs a rule `h<size>.*` with that history_size).
    #[arg(long, value_delimiter = ',', default_value = "100,1000")]
    pub history_sizes: Vec<usize>,
    /// durable-publish: requests in flight on the one Redis connection.
    #[arg(long, value_delimiter = ',', default_value = "1,64")]
    pub depths: Vec<usize>,
    /// durable-publish: seconds of publishing per (command, depth, round).
    #[arg(long, default_value_t = 2.0)]
    pub cell_seconds: f64,
    /// durable-publish: most publishes per (command, depth, round).
    #[arg(long, default_value_t = 100_000)]
    pub cell_max: u64,
    /// durable-publish: rounds over every (command, depth); rows are medians.
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// durable-storm: messages each client misses while away.
    #[arg(long, default_value_t = 100)]
    pub missed: u64,
    /// durable-storm: messages per channel received live before the drop.
    #[arg(long, default_value_t = 5)]
    pub live_before: u64,
    /// durable-storm: clients that stay connected and measure live latency.
    #[arg(long, default_value_t = 200)]
    pub others: usize,
    /// durable-storm: channels of those clients.
    #[arg(long, default_value_t = 20)]
    pub other_channels: usize,
    /// durable-storm: messages/s published to the resuming clients' own
    /// channels during the storm (live messages racing the replay).
    #[arg(long, default_value_t = 50.0)]
    pub storm_rate: f64,
    /// durable-storm: seconds of the baseline window before the drop.
    #[arg(long, default_value_t = 5.0)]
    pub baseline_seconds: f64,
    /// durable-storm: seconds allowed for every client to recover.
    #[arg(long, default_value_t = 60.0)]
    pub recover_timeout: f64,
    /// redcast's admin address (http://127.0.0.1:PORT) for its history
    /// metrics after the run.
    #[arg(long)]
    pub admin_url: Option<String>,
    /// The `history.max_reads` redcast runs with (recorded in the report).
    #[arg(long)]
    pub server_max_reads: Option<usize>,
}

/// Runs a durable scenario.
pub async fn run(cli: &crate::Cli, pub_rt: Handle) -> anyhow::Result<()> {
    if !cli.url.starts_with("ws://") {
        bail!("the durable scenarios use ws:// only");
    }
    crate::loopback_addr(&cli.redis_url)?;
    let json = match cli.scenario {
        crate::Scenario::DurablePublish => cost::run(cli, pub_rt).await?,
        _ => storm::run(cli, pub_rt).await?,
    };
    if let Some(path) = &cli.json {
        let text = serde_json::to_string_pretty(&json)?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// A Redis connection whose driver runs on `handle` (the publisher thread).
pub async fn redis_conn(handle: &Handle, url: &str) -> anyhow::Result<MultiplexedConnection> {
    let client = redis::Client::open(url)?;
    let conn = handle
        .spawn(async move {
            tokio::time::timeout(
                Duration::from_secs(5),
                client.get_multiplexed_async_connection(),
            )
            .await
        })
        .await?
        .context("Redis connect timed out")??;
    Ok(conn)
}

/// `FCALL redcast_publish 1 <channel> <payload>`: `Some(offset)` on a
/// durable channel, `None` on one without history.
pub fn fcall(channel: &str, payload: &str) -> redis::Cmd {
    redis::cmd("FCALL")
        .arg("redcast_publish")
        .arg(1)
        .arg(channel)
        .arg(payload)
        .to_owned()
}

/// The offset in a `redcast_publish` reply (`None`: not durable).
pub fn offset_of(reply: &Value) -> anyhow::Result<Option<u64>> {
    match reply {
        Value::Nil => Ok(None),
        Value::Array(v) => match v.as_slice() {
            [Value::Int(o), _] => Ok(Some(u64::try_from(*o)?)),
            _ => bail!("unexpected redcast_publish reply {reply:?}"),
        },
        _ => bail!("unexpected redcast_publish reply {reply:?}"),
    }
}

/// Redis's own CPU seconds (`INFO CPU`: used_cpu_sys + used_cpu_user,
/// all its threads), microsecond precision.
pub async fn redis_cpu(conn: &mut MultiplexedConnection) -> anyhow::Result<f64> {
    let info: String = redis::cmd("INFO").arg("CPU").query_async(conn).await?;
    parse_cpu(&info).context("no used_cpu_sys/used_cpu_user in INFO CPU")
}

fn parse_cpu(info: &str) -> Option<f64> {
    let mut sum = 0.0;
    let mut found = 0;
    for line in info.lines() {
        let Some((k, v)) = line.trim().split_once(':') else {
            continue;
        };
        if k == "used_cpu_sys" || k == "used_cpu_user" {
            sum += v.parse::<f64>().ok()?;
            found += 1;
        }
    }
    (found == 2).then_some(sum)
}

/// CPU readings at one instant: redcast (the --server-pid processes), this
/// process, Redis (INFO), and the whole machine.
#[derive(Debug, Clone, Copy)]
pub struct CpuAt {
    pub server: Option<f64>,
    pub bench: f64,
    pub redis: f64,
    pub machine: f64,
}

impl CpuAt {
    pub async fn read(server: &[u32], redis: &mut MultiplexedConnection) -> anyhow::Result<Self> {
        Ok(CpuAt {
            server: crate::procfs::total_cpu(server)?,
            bench: crate::procfs::self_cpu(),
            redis: redis_cpu(redis).await?,
            machine: crate::procfs::machine_busy(),
        })
    }
}

/// CPU over a window, in seconds and % of one core.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CpuWindow {
    pub window_seconds: f64,
    pub server_seconds: Option<f64>,
    pub server_util_pct: Option<f64>,
    pub redis_seconds: f64,
    pub redis_util_pct: f64,
    pub bench_util_pct: f64,
    /// Everything else on the machine: other processes, interrupts.
    pub other_util_pct: f64,
}

impl CpuWindow {
    pub fn between(a: &CpuAt, b: &CpuAt, window: f64) -> Self {
        let w = window.max(1e-9);
        let server = a.server.zip(b.server).map(|(a, b)| (b - a).max(0.0));
        let redis = (b.redis - a.redis).max(0.0);
        let bench = (b.bench - a.bench).max(0.0);
        let other = (b.machine - a.machine - server.unwrap_or(0.0) - redis - bench).max(0.0);
        CpuWindow {
            window_seconds: window,
            server_seconds: server,
            server_util_pct: server.map(|s| 100.0 * s / w),
            redis_seconds: redis,
            redis_util_pct: 100.0 * redis / w,
            bench_util_pct: 100.0 * bench / w,
            other_util_pct: 100.0 * other / w,
        }
    }
}

/// redcast's `redcast_history_*` metrics (name with labels -> value), by
/// a plain HTTP GET of /metrics on the admin address.
pub async fn history_metrics(admin: &str) -> anyhow::Result<Vec<(String, f64)>> {
    let addr = crate::loopback_addr(admin)?;
    let get = async {
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .await?;
        let mut body = String::new();
        s.read_to_string(&mut body).await?;
        anyhow::Ok(body)
    };
    let body = tokio::time::timeout(Duration::from_secs(5), get)
        .await
        .context("admin /metrics timed out")??;
    Ok(body
        .lines()
        .filter(|l| l.starts_with("redcast_history_"))
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_cpu() {
        let info = "# CPU\r\nused_cpu_sys:1.500000\r\nused_cpu_user:2.250000\r\n\
                    used_cpu_sys_children:9.0\r\nused_cpu_sys_main_thread:1.4\r\n";
        assert_eq!(parse_cpu(info), Some(3.75));
        assert_eq!(parse_cpu("used_cpu_sys:1\r\n"), None);
    }

    #[test]
    fn publish_replies() {
        assert_eq!(offset_of(&Value::Nil).unwrap(), None);
        let r = Value::Array(vec![Value::Int(7), Value::BulkString(b"e".to_vec())]);
        assert_eq!(offset_of(&r).unwrap(), Some(7));
        assert!(offset_of(&Value::Int(1)).is_err());
    }

    #[test]
    fn cpu_window() {
        let a = CpuAt {
            server: Some(1.0),
            bench: 1.0,
            redis: 1.0,
            machine: 10.0,
        };
        let b = CpuAt {
            server: Some(1.5),
            bench: 1.25,
            redis: 1.25,
            machine: 11.5,
        };
        let w = CpuWindow::between(&a, &b, 2.0);
        assert_eq!(w.server_util_pct, Some(25.0));
        assert_eq!(w.redis_util_pct, 12.5);
        assert_eq!(w.other_util_pct, 25.0);
    }
}
