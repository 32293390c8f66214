//! Sentinel mode: the sentinels name the master; redcast asks them before
//! every (re)connect and follows a switch as soon as one is announced.
//!
//! Asking: `SENTINEL get-master-addr-by-name <name>` on each sentinel in
//! turn, starting with the one that answered last; a sentinel that is
//! down or does not know the master is skipped. Following: a watcher task
//! holds a pub/sub link to one sentinel, subscribed to `+switch-master`,
//! and also asks again every `redis.ping_interval` (a switch announced
//! while it was reconnecting is not missed). The current master is
//! published on a watch channel: the feed reconnects when it changes, the
//! publisher re-dials. A feed checks `ROLE` on every node it is sent to,
//! since the sentinels may still name a node that is being demoted.

use super::link::Dialer;
use super::BrokerError;
use crate::config::{HostPort, RedisSettings, SentinelSettings};
use crate::metrics::Metrics;
use redis::Value;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

/// The sentinels of one master, and what they said last.
pub struct Sentinels {
    settings: SentinelSettings,
    redis: RedisSettings,
    dialer: Dialer,
    /// The sentinel that answered last (asked first next time).
    preferred: AtomicUsize,
    master: watch::Sender<Option<HostPort>>,
    metrics: Arc<Metrics>,
}

impl Sentinels {
    pub fn new(
        redis: &RedisSettings,
        settings: &SentinelSettings,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Sentinels>, BrokerError> {
        Ok(Arc::new(Sentinels {
            dialer: Dialer::sentinel(redis, settings)?,
            settings: settings.clone(),
            redis: redis.clone(),
            preferred: AtomicUsize::new(0),
            master: watch::Sender::new(None),
            metrics,
        }))
    }

    /// The current master, as last heard (for the publisher).
    pub fn master(&self) -> watch::Receiver<Option<HostPort>> {
        self.master.subscribe()
    }

    /// Asks the sentinels for the master now.
    pub async fn resolve(&self) -> Result<HostPort, BrokerError> {
        let n = self.settings.sentinels.len();
        let first = self.preferred.load(Ordering::Relaxed);
        let mut failures = Vec::new();
        for i in (0..n).map(|k| (first + k) % n) {
            let sentinel = &self.settings.sentinels[i];
            match self.ask(sentinel).await {
                Ok(master) => {
                    self.preferred.store(i, Ordering::Relaxed);
                    self.master.send_if_modified(|m| replace(m, &master));
                    return Ok(master);
                }
                Err(e) => failures.push(e),
            }
        }
        Err(BrokerError::Sentinel(format!(
            "no sentinel named the master `{}` ({})",
            self.settings.master,
            failures.join("; ")
        )))
    }

    async fn ask(&self, sentinel: &HostPort) -> Result<HostPort, String> {
        let mut link = self
            .dialer
            .open(sentinel)
            .await
            .map_err(|e| e.to_string())?;
        let mut cmd = redis::cmd("SENTINEL");
        cmd.arg("get-master-addr-by-name")
            .arg(&self.settings.master);
        match link.request(&cmd).await.map_err(|e| e.to_string())? {
            Value::Array(parts) => {
                master_addr(parts).ok_or_else(|| format!("{sentinel}: unreadable answer"))
            }
            _ => Err(format!("{sentinel} does not know this master")),
        }
    }

    /// Resolves once the sentinels name a master other than `current`.
    pub async fn switched_from(&self, current: &HostPort) {
        let mut rx = self.master.subscribe();
        // A missing value means "unknown", not a switch.
        let _ = rx
            .wait_for(|m| m.as_ref().is_some_and(|m| m != current))
            .await;
        self.metrics.redis_master_switches.inc();
        tracing::info!(from = %current, "sentinel switched the master; following it");
    }

    /// The watcher task: see the module docs. Runs until `stop`.
    pub async fn watch(self: Arc<Self>, stop: CancellationToken) {
        let mut attempt = 0u32;
        let mut index = 0usize;
        loop {
            let sentinel = self.settings.sentinels[index % self.settings.sentinels.len()].clone();
            let result = tokio::select! {
                _ = stop.cancelled() => return,
                r = self.follow(&sentinel, &mut attempt) => r,
            };
            if let Err(e) = result {
                tracing::debug!(%sentinel, error = %e, "sentinel watch connection lost; trying the next");
            }
            index += 1;
            let delay = super::backoff(attempt, self.redis.reconnect_min, self.redis.reconnect_max);
            attempt = attempt.saturating_add(1);
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// One watch connection: `+switch-master` pushes, a PING and a fresh
    /// question to the sentinels every `redis.ping_interval`.
    async fn follow(&self, sentinel: &HostPort, attempt: &mut u32) -> Result<(), BrokerError> {
        let mut link = self.dialer.open(sentinel).await?;
        let subscribe = redis::cmd("SUBSCRIBE")
            .arg("+switch-master")
            .get_packed_command();
        link.send(&subscribe).await?;
        *attempt = 0;
        let every = self.redis.ping_interval;
        let mut tick = tokio::time::interval_at(Instant::now() + every, every);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut last_answer = Instant::now();
        loop {
            tokio::select! {
                v = link.next() => {
                    last_answer = Instant::now();
                    self.on_push(v?);
                }
                _ = tick.tick() => {
                    if last_answer.elapsed() > every + self.redis.timeout {
                        return Err(BrokerError::Timeout(self.redis.timeout));
                    }
                    link.send(&redis::cmd("PING").get_packed_command()).await?;
                    // A switch missed while reconnecting shows here.
                    let _ = self.resolve().await;
                }
            }
        }
    }

    /// `+switch-master <name> <old ip> <old port> <new ip> <new port>`.
    fn on_push(&self, v: Value) {
        let Value::Array(items) = v else { return };
        let [Value::BulkString(kind), _, Value::BulkString(payload)] = items.as_slice() else {
            return;
        };
        if kind.as_slice() != b"message" {
            return;
        }
        let text = String::from_utf8_lossy(payload);
        let fields: Vec<&str> = text.split_whitespace().collect();
        let [name, _, _, host, port] = fields.as_slice() else {
            return;
        };
        let Ok(port) = port.parse::<u16>() else {
            return;
        };
        if *name == self.settings.master {
            let master = HostPort {
                host: host.to_string(),
                port,
            };
            tracing::info!(%master, "sentinel announced a new master");
            self.master.send_if_modified(|m| replace(m, &master));
        }
    }
}

fn replace(slot: &mut Option<HostPort>, new: &HostPort) -> bool {
    if slot.as_ref() == Some(new) {
        return false;
    }
    *slot = Some(new.clone());
    true
}

/// `[ip, port]` from `SENTINEL get-master-addr-by-name`.
fn master_addr(parts: Vec<Value>) -> Option<HostPort> {
    let text = |v: &Value| match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    };
    let [host, port] = parts.as_slice() else {
        return None;
    };
    Some(HostPort {
        host: text(host)?,
        port: text(port)?.parse().ok()?,
    })
}
