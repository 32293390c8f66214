//! The broker: redcast's Redis pub/sub side.
//!
//! Messages arrive on *feeds*, one pub/sub link each ([`feed`]): one feed
//! in standalone mode (`redis.url`), one on the master the sentinels name
//! in sentinel mode ([`sentinel`]: followed across failovers), one on any
//! node for classic pub/sub on a cluster, and one per master for sharded
//! pub/sub on a cluster ([`cluster`]: channels routed by slot, followed
//! across slot moves and failovers). Each feed hands messages to the hub,
//! subscribes on a first local subscriber and unsubscribes after the last
//! (batched, pipelined), PINGs, and checks delivery with its own probe
//! ([`probe`]). On any failure a feed drops its link, marks its channels
//! unconfirmed (readiness fails and names the node), reconnects with
//! exponential backoff jittered at every step, and resubscribes.
//!
//! Client publishes and probes go out on one command connection
//! ([`publisher`]), routed the same way.

pub mod cluster;
pub mod commands;
pub mod feed;
pub mod inflight;
pub mod link;
pub mod probe;
pub mod publisher;
pub mod sentinel;
pub mod slots;
pub mod state;
pub mod target;

use crate::config::{HostPort, RedisSettings, Topology};
use crate::hub::Hub;
use crate::metrics::Metrics;
use feed::{Feed, Scope};
use link::{Dialer, LinkError};
use publisher::Publisher;
use rand::Rng;
pub use state::BrokerState;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use target::Target;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Channels per (S)SUBSCRIBE/(S)UNSUBSCRIBE command, so that
/// resubscribing many channels after a reconnect never builds one
/// enormous command.
pub const SUBSCRIBE_BATCH: usize = 500;

/// Messages delivered before the touched clients are written: bounds the
/// delay a burst adds to its first message.
pub const MAX_BATCH: usize = 256;

/// Why a feed gave up its link (or could not make one).
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("{0}; re-making the pub/sub connection")]
    ProbeLost(String),
    #[error("{node} is not the master (its role is {role})")]
    NotMaster { node: HostPort, role: String },
    #[error("redis refused: {0}")]
    Refused(String),
    #[error("redis answered out of step with what was sent")]
    OutOfStep,
    #[error("{0}")]
    Sentinel(String),
    #[error("{0}")]
    Topology(String),
}

/// What every feed shares.
pub struct Core {
    pub hub: Arc<Hub>,
    pub metrics: Arc<Metrics>,
    pub publisher: Publisher,
    pub settings: RedisSettings,
    /// How to reach data nodes (credentials, TLS).
    pub dialer: Dialer,
    /// Tells this process's probes from other instances'.
    pub instance: String,
    pub state: Arc<BrokerState>,
}

impl Core {
    /// Records that a batch of messages arrived (the delivery latency is
    /// observed by the fan-out shards, once written).
    fn delivered(&self) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        self.metrics
            .redis_last_message_unix
            .set(now.as_secs() as i64);
    }
}

/// The running broker's handles.
pub struct Started {
    pub state: Arc<BrokerState>,
    pub publisher: Publisher,
    /// The command connection (durable history reads go over it too).
    pub commands: Arc<commands::Commands>,
}

/// Starts the feeds (and the sentinel watcher or cluster router) and the
/// publisher, as tasks of `tracker` that end when `stop` is cancelled.
pub fn start(
    settings: &RedisSettings,
    hub: Arc<Hub>,
    metrics: Arc<Metrics>,
    tracker: &TaskTracker,
    stop: &CancellationToken,
) -> Result<Started, BrokerError> {
    let state = BrokerState::new(metrics.clone());
    let dialer = Dialer::data(settings)?;
    let (target, route) = match &settings.topology {
        Topology::Standalone => (Some(Target::node(settings)?), commands::Route::Url),
        Topology::Sentinel(s) => {
            let sentinels = sentinel::Sentinels::new(settings, s, metrics.clone())?;
            tracker.spawn(sentinels.clone().watch(stop.clone()));
            let route = commands::Route::Master(sentinels.master());
            (Some(Target::Sentinel(sentinels)), route)
        }
        Topology::Cluster(c) if !c.sharded => {
            let nodes = cluster::Nodes::new(c, dialer.clone());
            (
                Some(Target::AnyNode(Box::new(nodes))),
                commands::Route::Cluster,
            )
        }
        Topology::Cluster(_) => (None, commands::Route::Cluster),
    };
    let commands = commands::Commands::new(settings.clone(), route);
    let (publisher, task) = Publisher::start(commands.clone(), stop.clone());
    tracker.spawn(task);
    let core = Arc::new(Core {
        hub: hub.clone(),
        metrics,
        publisher: publisher.clone(),
        settings: settings.clone(),
        dialer,
        instance: format!("{:016x}", rand::random::<u64>()),
        state: state.clone(),
    });
    match (target, &settings.topology) {
        (Some(target), _) => {
            state.set_waiting(None);
            let feed = Feed::new(core, Scope::All, hub.changes().clone(), None);
            tracker.spawn(feed.run(target, stop.clone()));
        }
        (None, Topology::Cluster(c)) => {
            let router = cluster::Router::new(core, c.clone(), tracker.clone());
            tracker.spawn(router.run(stop.clone()));
        }
        (None, _) => {}
    }
    Ok(Started {
        state,
        publisher,
        commands,
    })
}

/// Exponential backoff, jittered at every step: uniform in
/// `[min, min * 2^(attempt + 1)]`, capped at `max`. The first retry after
/// a lost connection is already spread over `[min, 2 * min]`, so instances
/// that lost the same Redis do not come back in step; the cap bounds how
/// long a restored Redis waits for its subscribers.
pub fn backoff(attempt: u32, min: Duration, max: Duration) -> Duration {
    let ceiling = min
        .saturating_mul(1u32 << attempt.saturating_add(1).min(16))
        .min(max);
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
        // The first retry is jittered too, within twice the minimum.
        let first: Vec<Duration> = (0..200).map(|_| backoff(0, min, max)).collect();
        assert!(first.iter().all(|d| *d >= min && *d <= 2 * min));
        assert!(first.iter().any(|d| *d != first[0]), "jittered");
        // Equal bounds leave nothing to draw.
        assert_eq!(backoff(3, max, max), max);
    }
}
