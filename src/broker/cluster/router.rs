//! Sharded pub/sub's router: one feed per master, every channel routed to
//! the feed whose node serves its slot, the topology followed (see the
//! module docs of `cluster`). Topology reads run beside the routing, so
//! that a slow node never holds up a new subscription.

use super::{
    candidates, Signal, TopologyReader, DEGRADED_REFRESH, DEGRADED_REFRESH_MAX, REFRESH_COALESCE,
    UNSETTLED_READS, UNSETTLED_REFRESH,
};
use crate::broker::feed::{Feed, Scope};
use crate::broker::slots::{key_slot, SlotMap};
use crate::broker::target::Target;
use crate::broker::{BrokerError, Core};
use crate::config::{ClusterSettings, HostPort};
use crate::hub::Inbox;
use arc_swap::ArcSwap;
use futures_util::future::BoxFuture;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

type Read = BoxFuture<'static, Result<(SlotMap, bool), BrokerError>>;

/// One master's feed, as the router holds it.
struct FeedHandle {
    inbox: Arc<Inbox>,
    stop: CancellationToken,
}

/// Sharded pub/sub's router; see the module docs.
pub struct Router {
    core: Arc<Core>,
    settings: ClusterSettings,
    map: Arc<ArcSwap<SlotMap>>,
    feeds: HashMap<HostPort, FeedHandle>,
    signal: Arc<Signal>,
    reader: Arc<tokio::sync::Mutex<TopologyReader>>,
    /// A change is under way: the last read's voters disagreed, or a
    /// feed reported a move the reads have not shown yet.
    unsettled: bool,
    /// Reads in a row that failed, and that found no change.
    failures: u32,
    quiet: u32,
    tracker: TaskTracker,
    stop: CancellationToken,
}

impl Router {
    pub fn new(core: Arc<Core>, settings: ClusterSettings, tracker: TaskTracker) -> Router {
        let reader = TopologyReader::new(core.dialer.clone());
        core.state
            .set_waiting(Some("reading the cluster topology".into()));
        Router {
            core,
            settings,
            map: Arc::default(),
            feeds: HashMap::new(),
            signal: Arc::default(),
            reader: Arc::new(tokio::sync::Mutex::new(reader)),
            unsettled: false,
            failures: 0,
            quiet: 0,
            tracker,
            stop: CancellationToken::new(),
        }
    }

    /// Runs until `stop`, then stops every feed.
    pub async fn run(mut self, stop: CancellationToken) {
        self.stop = stop.child_token();
        let changes = self.core.hub.changes().clone();
        let signal = self.signal.clone();
        let mut next = Instant::now();
        let mut reading: Option<Read> = None;
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = changes.changed() => self.route_changes(),
                _ = signal.wake.notified() => {
                    self.follow_moves();
                    self.unsettled = true;
                    self.quiet = 0;
                    // Requests come in bursts (a failover drops many
                    // subscriptions at once): one read answers them all.
                    next = next.min(Instant::now() + REFRESH_COALESCE);
                }
                _ = tokio::time::sleep_until(next), if reading.is_none() => {
                    reading = Some(self.start_read());
                }
                result = finish(&mut reading), if reading.is_some() => {
                    reading = None;
                    self.on_read(result);
                    next = Instant::now() + self.pause();
                }
            }
        }
        self.feeds.drain().for_each(|(_, f)| f.stop.cancel());
    }

    /// Until the next read: backing off while reads fail; short while a
    /// change is under way or the cluster is degraded (a feed down, slots
    /// uncovered); else `redis.cluster_refresh_interval`.
    fn pause(&self) -> Duration {
        if self.failures > 0 {
            return crate::broker::backoff(self.failures, DEGRADED_REFRESH, DEGRADED_REFRESH_MAX);
        }
        if self.unsettled {
            return UNSETTLED_REFRESH;
        }
        let map = self.map.load();
        let degraded =
            map.masters().is_empty() || map.uncovered() > 0 || !self.core.state.is_connected();
        if degraded {
            return DEGRADED_REFRESH;
        }
        self.settings.refresh_interval
    }

    fn start_read(&self) -> Read {
        let reader = self.reader.clone();
        let candidates = candidates(&self.settings.seeds, &self.map.load());
        Box::pin(async move { reader.lock().await.read(&candidates).await })
    }

    /// Applies MOVED hints at once when they name a known master (the
    /// read that follows confirms them); an unknown node waits for it.
    fn follow_moves(&mut self) {
        let moves = self.signal.take_moved();
        let current = self.map.load_full();
        let masters = current.masters();
        let known: Vec<_> = moves
            .into_iter()
            .filter(|(_, n)| masters.contains(n))
            .collect();
        let patched = known.iter().fold((*current).clone(), |map, (slot, node)| {
            map.with_owner(*slot, node)
        });
        if patched != *current {
            tracing::info!(
                moves = known.len(),
                "following MOVED replies before the next topology read"
            );
            self.apply(patched);
        }
    }

    /// Sends each changed channel to the feed of its slot's master.
    fn route_changes(&self) {
        let (names, _) = self.core.hub.changes().take();
        self.route(names);
    }

    fn route(&self, names: impl IntoIterator<Item = String>) {
        let map = self.map.load();
        let prefix = &self.core.settings.channel_prefix;
        for name in names {
            let slot = key_slot(format!("{prefix}{name}").as_bytes());
            if let Some(feed) = map.owner(slot).and_then(|m| self.feeds.get(m)) {
                feed.inbox.mark([name]);
            }
        }
    }

    /// Applies a read when it changed the topology.
    fn on_read(&mut self, result: Result<(SlotMap, bool), BrokerError>) {
        let current = self.map.load_full();
        let (map, agreed) = match result {
            Ok(read) => read,
            Err(e) => {
                self.failures = self.failures.saturating_add(1);
                tracing::warn!(error = %e, "cannot read the cluster topology");
                if current.masters().is_empty() {
                    self.core.state.set_waiting(Some(e.to_string()));
                }
                return;
            }
        };
        self.failures = 0;
        let none = map.masters().is_empty();
        self.core
            .state
            .set_waiting(none.then(|| "the cluster serves no slot".into()));
        let changed = map != *current;
        if changed {
            self.apply(map);
        }
        self.quiet = if changed {
            0
        } else {
            self.quiet.saturating_add(1)
        };
        // Settled once the nodes agree on a change; a reported move that no
        // read shows is given up on after a while.
        let settled = (changed && agreed) || self.quiet > UNSETTLED_READS;
        self.unsettled = (self.unsettled || !agreed) && !settled;
    }

    /// Starts and stops feeds for the new masters, then routes everything.
    fn apply(&mut self, map: SlotMap) {
        let masters = map.masters();
        tracing::info!(masters = ?masters.iter().map(ToString::to_string).collect::<Vec<_>>(), uncovered = map.uncovered(), "cluster topology changed");
        self.core.metrics.redis_topology_refreshes.inc();
        self.map.store(Arc::new(map));
        self.feeds.retain(|node, feed| {
            let keep = masters.contains(node);
            if !keep {
                feed.stop.cancel();
            }
            keep
        });
        for master in masters {
            if !self.feeds.contains_key(&master) {
                let handle = self.spawn_feed(master.clone());
                self.feeds.insert(master, handle);
            }
        }
        self.feeds.values().for_each(|f| f.inbox.mark_all());
        self.route(self.core.hub.channel_names());
    }

    fn spawn_feed(&self, master: HostPort) -> FeedHandle {
        let inbox = Arc::new(Inbox::default());
        let scope = Scope::Slots(self.map.clone());
        let feed = Feed::new(
            self.core.clone(),
            scope,
            inbox.clone(),
            Some(self.signal.clone()),
        );
        let stop = self.stop.child_token();
        self.tracker
            .spawn(feed.run(Target::Node(master), stop.clone()));
        FeedHandle { inbox, stop }
    }
}

/// The read in progress (the branch is only polled while there is one).
async fn finish(reading: &mut Option<Read>) -> Result<(SlotMap, bool), BrokerError> {
    match reading.as_mut() {
        Some(read) => read.await,
        None => std::future::pending().await,
    }
}
