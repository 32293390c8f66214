//! Plumbing shared by the Cluster and Sentinel harnesses: cached per-node
//! command connections, bounded polling that says what it last saw, and
//! INFO-field parsing.

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, ErrorKind, FromRedisValue, RedisResult};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

/// Fast redcast timings for topology tests, so that they see failures
/// (and recoveries) quickly.
pub const FAST_REDIS: [(&str, &str); 6] = [
    ("REDCAST_REDIS__TIMEOUT", "1s"),
    ("REDCAST_REDIS__PING_INTERVAL", "1s"),
    ("REDCAST_REDIS__PROBE_INTERVAL", "200ms"),
    ("REDCAST_REDIS__PROBE_TIMEOUT", "1s"),
    ("REDCAST_REDIS__RECONNECT_MIN", "50ms"),
    ("REDCAST_REDIS__RECONNECT_MAX", "500ms"),
];

/// Bound on a failover (detection + election + promotion + agreement);
/// they take 2-4 s with the timeouts these harnesses set.
pub const FAILOVER_DEADLINE: Duration = Duration::from_secs(30);

/// Command connections to loopback nodes by port, reused across polls. One
/// that fails below the protocol level (refused, reset, timed out) is
/// dropped, so the next call reconnects (e.g. to a restarted node).
#[derive(Default)]
pub struct Conns(Mutex<HashMap<u16, MultiplexedConnection>>);

impl Conns {
    /// Runs `cmd` on the node at `port`.
    pub async fn query<T: FromRedisValue>(&self, port: u16, cmd: &redis::Cmd) -> RedisResult<T> {
        let cached = self.0.lock().unwrap().get(&port).cloned();
        let mut conn = match cached {
            Some(c) => c,
            None => {
                let client = redis::Client::open(format!("redis://127.0.0.1:{port}"))?;
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(Duration::from_secs(2)))
                    .set_response_timeout(Some(Duration::from_secs(5)));
                let c = client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?;
                self.0.lock().unwrap().insert(port, c.clone());
                c
            }
        };
        let result = cmd.query_async(&mut conn).await;
        if let Err(e) = &result {
            if !matches!(e.kind(), ErrorKind::Server(_) | ErrorKind::Extension) {
                self.0.lock().unwrap().remove(&port);
            }
        }
        result
    }
}

/// Builds a command from its words, e.g. `cmd(&["CLUSTER", "INFO"])`.
pub fn cmd(words: &[&str]) -> redis::Cmd {
    let mut c = redis::cmd(words[0]);
    for w in &words[1..] {
        c.arg(*w);
    }
    c
}

/// A `field:value` line of an INFO reply.
pub fn info_field<'a>(info: &'a str, field: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .map(str::trim)
}

/// Polls `check` every 50 ms until it returns `Ok`; after `bound`, fails
/// the test with `what` and the last reason `check` gave.
pub async fn wait_for<F, Fut>(what: &str, bound: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let start = tokio::time::Instant::now();
    loop {
        let reason = match check().await {
            Ok(()) => return,
            Err(reason) => reason,
        };
        assert!(
            start.elapsed() < bound,
            "timed out after {bound:?} waiting for {what}; last seen: {reason}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
