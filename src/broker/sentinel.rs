//! Sentinel mode: the sentinels name the master; redcast asks them before
//! every (re)connect and follows a switch as soon as one is announced.
//!
//! Asking: `SENTINEL MASTER <name>` on every sentinel at once, following
//! the answer with the highest config epoch; a sentinel that is down,
//! slow or does not know the master is left out. Following: a watcher task
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
use std::sync::Arc;
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

/// The sentinels of one master, and what they said last.
pub struct Sentinels {
    settings: SentinelSettings,
    redis: RedisSettings,
    dialer: Dialer,
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
            master: watch::Sender::new(None),
            metrics,
        }))
    }

    /// The current master, as last heard (for the publisher).
    pub fn master(&self) -> watch::Receiver<Option<HostPort>> {
        self.master.subscribe()
    }

    /// Asks every sentinel for the master now (at once, each within
    /// `redis.timeout`) and takes the answer with the highest config
    /// epoch, as Sentinel itself does: a sentinel that has not yet heard
    /// of a failover cannot send redcast back to the old master. Equal
    /// epochs go to the answer most sentinels give.
    pub async fn resolve(&self) -> Result<HostPort, BrokerError> {
        let asks = self.settings.sentinels.iter().map(|s| self.ask(s));
        let answers = futures_util::future::join_all(asks).await;
        let mut votes: Vec<((u64, HostPort), usize)> = Vec::new();
        let mut failures = Vec::new();
        for answer in answers {
            match answer {
                Ok(said) => match votes.iter_mut().find(|(a, _)| *a == said) {
                    Some((_, n)) => *n += 1,
                    None => votes.push((said, 1)),
                },
                Err(e) => failures.push(e),
            }
        }
        let best = votes
            .into_iter()
            .rev()
            .max_by_key(|((epoch, _), n)| (*epoch, *n));
        let Some(((_, master), _)) = best else {
            return Err(BrokerError::Sentinel(format!(
                "no sentinel named the master `{}` ({})",
                self.settings.master,
                failures.join("; ")
            )));
        };
        self.master.send_if_modified(|m| replace(m, &master));
        Ok(master)
    }

    /// `SENTINEL MASTER <name>` on one sentinel: its config epoch and the
    /// master's address.
    async fn ask(&self, sentinel: &HostPort) -> Result<(u64, HostPort), String> {
        let mut link = self
            .dialer
            .open(sentinel)
            .await
            .map_err(|e| e.to_string())?;
        let mut cmd = redis::cmd("SENTINEL");
        cmd.arg("MASTER").arg(&self.settings.master);
        let reply = link.request(&cmd).await.map_err(|e| e.to_string())?;
        master_fields(reply).ok_or_else(|| format!("{sentinel}: unreadable answer"))
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

    /// Resolves when the master heard of changes (for a reconnect that is
    /// waiting out its backoff: a switch is worth trying at once).
    pub async fn changed(&self) {
        let mut rx = self.master.subscribe();
        rx.mark_unchanged();
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
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

/// The config epoch and address from `SENTINEL MASTER`'s field list.
fn master_fields(reply: Value) -> Option<(u64, HostPort)> {
    let text = |v: Value| match v {
        Value::BulkString(b) => String::from_utf8(b).ok(),
        Value::SimpleString(s) => Some(s),
        Value::Int(n) => Some(n.to_string()),
        _ => None,
    };
    let fields: Vec<(String, String)> = match reply {
        Value::Array(items) => {
            let mut items = items.into_iter();
            std::iter::from_fn(|| Some((text(items.next()?)?, text(items.next()?)?))).collect()
        }
        Value::Map(pairs) => pairs
            .into_iter()
            .filter_map(|(k, v)| Some((text(k)?, text(v)?)))
            .collect(),
        _ => return None,
    };
    let get = |key: &str| {
        fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    let master = HostPort {
        host: get("ip")?.to_string(),
        port: get("port")?.parse().ok()?,
    };
    Some((get("config-epoch")?.parse().ok()?, master))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn sentinel_master_fields_give_epoch_and_address() {
        let words = [
            "name",
            "mymaster",
            "ip",
            "10.0.0.2",
            "port",
            "6380",
            "flags",
            "master",
            "config-epoch",
            "7",
        ];
        let reply = Value::Array(words.iter().map(|w| bulk(w)).collect());
        let (epoch, master) = master_fields(reply).unwrap();
        assert_eq!(
            (epoch, master.to_string()),
            (7, "10.0.0.2:6380".to_string())
        );
        let missing = Value::Array(words[..6].iter().map(|w| bulk(w)).collect());
        assert_eq!(master_fields(missing), None);
        assert_eq!(master_fields(Value::Nil), None);
    }
}
