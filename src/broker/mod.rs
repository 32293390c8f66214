//! The broker: redcast's one Redis pub/sub connection.
//!
//! A single task owns the connection. It receives messages and hands them
//! to the hub, reconciles Redis subscriptions with the hub's channels
//! (SUBSCRIBE on first subscriber, UNSUBSCRIBE after the last, in
//! batches), and PINGs on an interval so that a connection that is open but
//! dead is noticed. On any failure it drops the connection, marks every
//! channel unconfirmed (readiness fails), reconnects with exponential
//! backoff and full jitter, and resubscribes everything the hub holds.

pub mod probe;
pub mod publisher;

use crate::config::RedisSettings;
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::outbox::Outbox;
use futures_util::{FutureExt, StreamExt};
use probe::Probe;
use rand::Rng;
use redis::aio::{PubSubSink, PubSubStream};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::{timeout, Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

/// Channels per SUBSCRIBE/UNSUBSCRIBE command, so that resubscribing many
/// channels after a reconnect never builds one enormous command.
pub const SUBSCRIBE_BATCH: usize = 500;

/// Messages delivered before the touched clients are written: bounds the
/// delay a burst adds to its first message.
pub const MAX_BATCH: usize = 256;

/// Why a connection was given up.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("redis closed the pub/sub connection")]
    Closed,
    #[error("{0}; re-making the pub/sub connection")]
    ProbeLost(String),
}

/// Shared view of the broker's state, for readiness.
#[derive(Default)]
pub struct BrokerState {
    connected: AtomicBool,
}

impl BrokerState {
    /// Whether the pub/sub connection is up and resubscribed.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }
}

/// Owns the Redis pub/sub connection; see the module docs.
pub struct Broker {
    settings: RedisSettings,
    hub: Arc<Hub>,
    metrics: Arc<Metrics>,
    state: Arc<BrokerState>,
    probe: Arc<Probe>,
    /// Channels (client names) Redis has confirmed on this connection.
    subscribed: HashSet<String>,
    /// Outboxes touched by the current batch (kept to reuse its memory).
    dirty: Vec<Arc<Outbox>>,
}

impl Broker {
    /// A broker for these settings; call [`Broker::run`] to start it.
    pub fn new(
        settings: RedisSettings,
        hub: Arc<Hub>,
        metrics: Arc<Metrics>,
        probe: Arc<Probe>,
    ) -> Self {
        Self {
            settings,
            hub,
            metrics,
            state: Arc::default(),
            probe,
            subscribed: HashSet::new(),
            dirty: Vec::new(),
        }
    }

    /// The state readiness reads.
    pub fn state(&self) -> Arc<BrokerState> {
        self.state.clone()
    }

    /// Runs until `shutdown` is cancelled; never returns early on errors.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut attempt: u32 = 0;
        loop {
            let result = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = self.session(&mut attempt) => r,
            };
            self.set_connected(false);
            self.subscribed.clear();
            self.hub.unconfirm_all();
            if let Err(e) = result {
                tracing::warn!(error = %e, attempt, "redis pub/sub connection lost; reconnecting");
            }
            let delay = backoff(
                attempt,
                self.settings.reconnect_min,
                self.settings.reconnect_max,
            );
            attempt = attempt.saturating_add(1);
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// One connection's life: connect, resubscribe, serve until it fails.
    async fn session(&mut self, attempt: &mut u32) -> Result<(), BrokerError> {
        let (mut sink, mut stream) = self.connect().await?;
        self.bounded(sink.subscribe(&self.probe.channel)).await?;
        // Take the dirty set first: a channel created after this point is
        // either in the snapshot below or marked dirty again.
        self.hub.take_dirty();
        let all: HashSet<String> = self.hub.channel_names().into_iter().collect();
        self.reconcile(&mut sink, all).await?;
        if *attempt > 0 {
            self.metrics.redis_reconnects.inc();
        }
        *attempt = 0;
        self.set_connected(true);
        // After set_connected: the probe sender only sends while connected.
        self.probe.reset();
        tracing::info!(channels = self.subscribed.len(), "redis pub/sub connected");
        let mut ping = tokio::time::interval_at(
            Instant::now() + self.settings.ping_interval,
            self.settings.ping_interval,
        );
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut probe_check = tokio::time::interval(self.settings.probe_interval);
        loop {
            tokio::select! {
                msg = stream.next() => self.deliver_batch(msg.ok_or(BrokerError::Closed)?, &mut stream)?,
                _ = probe_check.tick() => {
                    if self.probe.overdue() {
                        self.metrics.probe_failures.inc();
                        let why = self.probe.check().err().unwrap_or_default();
                        return Err(BrokerError::ProbeLost(why));
                    }
                }
                _ = self.hub.dirty_changed() => {
                    let dirty = self.hub.take_dirty();
                    self.reconcile(&mut sink, dirty).await?;
                }
                _ = ping.tick() => {
                    self.bounded(sink.ping::<redis::Value>()).await?;
                }
            }
        }
    }

    async fn connect(&self) -> Result<(PubSubSink, PubSubStream), BrokerError> {
        let client = client(&self.settings)?;
        let pubsub = self.bounded(client.get_async_pubsub()).await?;
        Ok(pubsub.split())
    }

    /// Delivers `first` and every message already waiting behind it (up
    /// to [`MAX_BATCH`]), then writes each touched client once: under load
    /// a client gets several frames per write, at low rates nothing waits.
    fn deliver_batch(
        &mut self,
        first: redis::Msg,
        stream: &mut PubSubStream,
    ) -> Result<(), BrokerError> {
        let received = Instant::now();
        let mut dirty = std::mem::take(&mut self.dirty);
        self.deliver(first, received, &mut dirty);
        let mut closed = false;
        for _ in 1..MAX_BATCH {
            match stream.next().now_or_never() {
                Some(Some(msg)) => self.deliver(msg, Instant::now(), &mut dirty),
                Some(None) => {
                    closed = true;
                    break;
                }
                None => break,
            }
        }
        self.hub.flush(&mut dirty);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        self.metrics
            .redis_last_message_unix
            .set(now.as_secs() as i64);
        self.dirty = dirty;
        // One observation per batch: until its oldest message was written
        // (direct) or queued for the client's writer.
        self.metrics
            .delivery_latency
            .0
            .observe(received.elapsed().as_secs_f64());
        if closed {
            return Err(BrokerError::Closed);
        }
        Ok(())
    }

    fn deliver(&self, msg: redis::Msg, received: Instant, dirty: &mut Vec<Arc<Outbox>>) {
        self.metrics.redis_messages.inc();
        let channel = msg.get_channel_name();
        if channel == self.probe.channel {
            return self.probe.received(msg.get_payload_bytes());
        }
        // Messages for channels outside our prefix cannot be ours.
        if let Some(name) = channel.strip_prefix(self.settings.channel_prefix.as_str()) {
            self.hub
                .publish(name, msg.get_payload_bytes(), received, dirty);
        }
    }

    /// Brings Redis in line with the hub for the given channels.
    async fn reconcile(
        &mut self,
        sink: &mut PubSubSink,
        channels: HashSet<String>,
    ) -> Result<(), BrokerError> {
        let (mut add, mut remove) = (Vec::new(), Vec::new());
        for name in channels {
            match (self.hub.wants(&name), self.subscribed.contains(&name)) {
                (true, false) => add.push(name),
                (false, true) => remove.push(name),
                // Already in Redis: a quick leave and rejoin still needs
                // the hub to see it confirmed.
                (true, true) => self.hub.confirm(std::slice::from_ref(&name)),
                (false, false) => {}
            }
        }
        for batch in remove.chunks(SUBSCRIBE_BATCH) {
            self.bounded(sink.unsubscribe(self.redis_names(batch)))
                .await?;
            batch.iter().for_each(|c| {
                self.subscribed.remove(c);
            });
        }
        for batch in add.chunks(SUBSCRIBE_BATCH) {
            self.bounded(sink.subscribe(self.redis_names(batch)))
                .await?;
            self.subscribed.extend(batch.iter().cloned());
            self.hub.confirm(batch);
        }
        Ok(())
    }

    fn redis_names(&self, channels: &[String]) -> Vec<String> {
        let prefix = &self.settings.channel_prefix;
        channels.iter().map(|c| format!("{prefix}{c}")).collect()
    }

    async fn bounded<T>(
        &self,
        fut: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, BrokerError> {
        let limit = self.settings.timeout;
        Ok(timeout(limit, fut)
            .await
            .map_err(|_| BrokerError::Timeout(limit))??)
    }

    fn set_connected(&self, up: bool) {
        self.state.connected.store(up, Ordering::Release);
        self.metrics.redis_connected.set(up as i64);
    }
}

/// A Redis client for these settings: URL, then ACL user and password
/// from the config (which win over the URL's), TLS roots from `ca_file`.
pub fn client(s: &RedisSettings) -> redis::RedisResult<redis::Client> {
    use redis::IntoConnectionInfo;
    let info = s.url.as_str().into_connection_info()?;
    let mut redis_info = info.redis_settings().clone();
    if let Some(user) = &s.username {
        redis_info = redis_info.set_username(user);
    }
    if let Some(password) = &s.password {
        redis_info = redis_info.set_password(&password.0);
    }
    let info = info.set_redis_settings(redis_info);
    match &s.ca_file {
        None => redis::Client::open(info),
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| {
                redis::RedisError::from((
                    redis::ErrorKind::InvalidClientConfig,
                    "cannot read redis.ca_file",
                    e.to_string(),
                ))
            })?;
            let certs = redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem),
            };
            redis::Client::build_with_tls(info, certs)
        }
    }
}

/// Exponential backoff with full jitter: uniform in `[min, min * 2^attempt]`,
/// capped at `max`.
pub fn backoff(attempt: u32, min: Duration, max: Duration) -> Duration {
    let ceiling = min.saturating_mul(1u32 << attempt.min(16)).min(max);
    if ceiling <= min {
        return ceiling;
    }
    rand::rng().random_range(min..=ceiling)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_stays_in_bounds() {
        let (min, max) = (Duration::from_millis(100), Duration::from_secs(5));
        for attempt in 0..40 {
            let d = backoff(attempt, min, max);
            assert!(d >= min && d <= max, "{attempt}: {d:?}");
        }
        assert_eq!(backoff(0, min, max), min);
    }
}
