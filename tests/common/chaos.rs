//! Chaos harness: a publisher that keeps publishing through Redis
//! failures, a subscriber that notes when each failure round's first
//! message arrives, and the summary of resume times.

use super::{ready, recv_json, Gateway, Ws, DEADLINE};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Pause between publishes: the resolution of a measured resume time.
pub const PUBLISH_EVERY: Duration = Duration::from_millis(5);

/// Publishes `<round>:<seq>` on `channel` every [`PUBLISH_EVERY`] to the
/// Redis at `url`, reconnecting (at once, then every publish) whenever it
/// is down. The round is read at each publish, so the subscriber can tell
/// a message published after a restart from one published before.
pub struct Publisher {
    pub round: Arc<AtomicU64>,
    stop: CancellationToken,
}

impl Publisher {
    pub fn start(url: String, channel: &'static str) -> Publisher {
        let round = Arc::new(AtomicU64::new(0));
        let stop = CancellationToken::new();
        let (r, s) = (round.clone(), stop.clone());
        tokio::spawn(async move {
            let client = redis::Client::open(url).expect("redis url");
            let mut conn = None;
            let mut seq = 0u64;
            while !s.is_cancelled() {
                tokio::time::sleep(PUBLISH_EVERY).await;
                if conn.is_none() {
                    conn = client.get_multiplexed_async_connection().await.ok();
                }
                let Some(c) = conn.as_mut() else { continue };
                seq += 1;
                let payload = format!("{}:{seq}", r.load(Ordering::SeqCst));
                let sent: redis::RedisResult<i64> = redis::cmd("PUBLISH")
                    .arg(channel)
                    .arg(payload)
                    .query_async(c)
                    .await;
                if sent.is_err() {
                    conn = None;
                }
            }
        });
        Publisher { round, stop }
    }

    /// From now on, payloads carry `round`.
    pub fn next_round(&self, round: u64) {
        self.round.store(round, Ordering::SeqCst);
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Reads `ws` until a message of `round` arrives; returns when it did.
pub async fn first_of_round(ws: &mut Ws, round: u64) -> Instant {
    tokio::time::timeout(DEADLINE, async {
        loop {
            let msg = recv_json(ws).await;
            let data = msg["data"].as_str().unwrap_or_default().to_string();
            let got: u64 = data
                .split(':')
                .next()
                .and_then(|r| r.parse().ok())
                .unwrap_or_default();
            if got >= round {
                return Instant::now();
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("delivery did not resume in round {round}"))
}

/// Waits until `/readyz` says `want` (200 or not); returns when it did.
pub async fn readiness(gw: &Gateway, want: bool) -> Instant {
    let start = Instant::now();
    while ready(gw).await != want {
        assert!(
            start.elapsed() < DEADLINE,
            "/readyz never became ready={want}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Instant::now()
}

/// Resume times of the rounds of one kind.
#[derive(Default)]
pub struct Times {
    pub label: String,
    pub secs: Vec<f64>,
}

impl Times {
    pub fn new(label: &str) -> Times {
        Times {
            label: label.into(),
            secs: Vec::new(),
        }
    }

    pub fn add(&mut self, d: Duration) {
        self.secs.push(d.as_secs_f64());
    }

    /// The nearest-rank percentile `p` (0-100).
    pub fn percentile(&self, p: f64) -> f64 {
        let mut v = self.secs.clone();
        v.sort_by(f64::total_cmp);
        if v.is_empty() {
            return 0.0;
        }
        let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
        v[rank.clamp(1, v.len()) - 1]
    }

    /// One Markdown table row: label, rounds, p50, p90, p99, max (seconds).
    pub fn row(&self) -> String {
        format!(
            "| {} | {} | {:.3} | {:.3} | {:.3} | {:.3} |",
            self.label,
            self.secs.len(),
            self.percentile(50.0),
            self.percentile(90.0),
            self.percentile(99.0),
            self.percentile(100.0)
        )
    }
}

/// Prints the table, and appends it to `$REDCAST_CHAOS_REPORT` when set.
pub fn report(title: &str, rows: &[&Times]) {
    let mut out = format!(
        "\n{title}\n\n| what | rounds | p50 s | p90 s | p99 s | max s |\n|---|---|---|---|---|---|\n"
    );
    for t in rows {
        out.push_str(&t.row());
        out.push('\n');
    }
    println!("{out}");
    if let Ok(path) = std::env::var("REDCAST_CHAOS_REPORT") {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .expect("chaos report file");
        f.write_all(out.as_bytes()).expect("chaos report written");
    }
}

/// Rounds to run: `$<var>` when set (the documented long runs), else
/// `short` (CI).
pub fn rounds(var: &str, short: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(short)
}
