//! What readiness reads of the broker: every feed's link and probe, and
//! why there is no feed when there is none (no sentinel answered, the
//! cluster's topology is unknown).

use super::probe::Probe;
use crate::config::HostPort;
use crate::metrics::Metrics;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// One feed's state: its node, whether its link is up, its probe.
pub struct FeedState {
    node: Mutex<Option<HostPort>>,
    connected: AtomicBool,
    /// Why the link is down (the last error), for readiness.
    failure: Mutex<Option<String>>,
    pub probe: Probe,
}

impl FeedState {
    pub fn new(probe: Probe) -> Arc<FeedState> {
        Arc::new(FeedState {
            node: Mutex::default(),
            connected: AtomicBool::new(false),
            failure: Mutex::default(),
            probe,
        })
    }

    /// The link is up on `node`.
    pub fn up(&self, node: &HostPort) {
        *lock(&self.node) = Some(node.clone());
        *lock(&self.failure) = None;
        self.connected.store(true, Ordering::Release);
    }

    /// The link is down, for this reason.
    pub fn down(&self, why: String) {
        self.connected.store(false, Ordering::Release);
        *lock(&self.failure) = Some(why);
    }

    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    /// `Ok` when this feed delivers; else a reason that names the node.
    pub fn check(&self) -> Result<(), String> {
        let node = lock(&self.node)
            .as_ref()
            .map(|n| format!(" to {n}"))
            .unwrap_or_default();
        if !self.is_connected() {
            let why = lock(&self.failure)
                .as_ref()
                .map(|w| format!(": {w}"))
                .unwrap_or_default();
            return Err(format!("redis pub/sub connection{node} is down{why}"));
        }
        self.probe
            .check()
            .map_err(|e| format!("redis pub/sub connection{node}: {e}"))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Every feed of the broker, for readiness and metrics.
pub struct BrokerState {
    feeds: Mutex<Vec<Arc<FeedState>>>,
    /// Why no feed can run yet, when that is the case.
    waiting: Mutex<Option<String>>,
    /// Why the Function library for durable channels is not in place.
    library: Mutex<Option<String>>,
    /// Told whenever a feed makes a link (a Redis that may have
    /// restarted empty: the library is checked at once).
    pub linked: tokio::sync::Notify,
    metrics: Arc<Metrics>,
}

impl BrokerState {
    pub fn new(metrics: Arc<Metrics>) -> Arc<BrokerState> {
        Arc::new(BrokerState {
            feeds: Mutex::default(),
            waiting: Mutex::new(Some("connecting to redis".into())),
            library: Mutex::default(),
            linked: tokio::sync::Notify::new(),
            metrics,
        })
    }

    /// Adds a feed (a new link to watch).
    pub fn add(&self, feed: Arc<FeedState>) {
        lock(&self.feeds).push(feed);
        self.update_metrics();
    }

    /// Removes a feed (its node left the topology).
    pub fn remove(&self, feed: &Arc<FeedState>) {
        lock(&self.feeds).retain(|f| !Arc::ptr_eq(f, feed));
        self.update_metrics();
    }

    /// Why no feed runs (`None` once the topology is known).
    pub fn set_waiting(&self, why: Option<String>) {
        *lock(&self.waiting) = why;
    }

    /// Why the durable channels' Function library is missing (`None`:
    /// in place, or not needed).
    pub fn set_library(&self, why: Option<String>) {
        *lock(&self.library) = why;
    }

    /// `Ok` when every feed delivers; else the first reason.
    pub fn check(&self) -> Result<(), String> {
        let feeds = lock(&self.feeds);
        if let Some(why) = lock(&self.waiting).as_ref() {
            return Err(format!("redis: {why}"));
        }
        if feeds.is_empty() {
            return Err("redis: no pub/sub connection yet".into());
        }
        feeds.iter().try_for_each(|f| f.check())?;
        match lock(&self.library).as_ref() {
            Some(why) => Err(format!(
                "redis: function library for durable channels: {why}"
            )),
            None => Ok(()),
        }
    }

    /// Whether every feed's link is up.
    pub fn is_connected(&self) -> bool {
        let feeds = lock(&self.feeds);
        !feeds.is_empty() && feeds.iter().all(|f| f.is_connected())
    }

    /// Sets the link and probe gauges from the feeds' states.
    pub fn update_metrics(&self) {
        let feeds = lock(&self.feeds);
        let up = feeds.iter().filter(|f| f.is_connected()).count();
        let probes_ok = !feeds.is_empty() && feeds.iter().all(|f| f.probe.check().is_ok());
        self.metrics.redis_links_up.set(up as i64);
        self.metrics.redis_links.set(feeds.len() as i64);
        let all_up = !feeds.is_empty() && up == feeds.len();
        self.metrics.redis_connected.set(i64::from(all_up));
        self.metrics.probe_ok.set(i64::from(probes_ok));
    }
}
