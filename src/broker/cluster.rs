//! Cluster mode. Channel names stay exactly what backends use: redcast
//! adds no hash tags, it routes each channel by its own slot.
//!
//! Sharded pub/sub: a [`Router`] reads the topology (`CLUSTER SLOTS`,
//! asking up to three known nodes and keeping the view most of them
//! share), keeps one feed per master that serves slots, and routes every
//! hub change to the feed whose node serves the channel's slot. The
//! topology is read again every `redis.cluster_refresh_interval`; every
//! [`DEGRADED_REFRESH`] (backing off) while a feed is down or slots are
//! uncovered; every [`UNSETTLED_REFRESH`] while the nodes asked disagree;
//! and at once (coalesced) when a feed loses its link, Redis drops a
//! subscription because its slot moved (`sunsubscribe`), or refuses one
//! (MOVED, CLUSTERDOWN). A MOVED reply that names a known master is
//! followed at once, before the read confirms it. When it changes, feeds for new masters start,
//! feeds for nodes that serve nothing any more stop, and every channel is
//! routed again: each feed drops what it no longer owns and subscribes
//! what it now does.
//!
//! Classic pub/sub: one feed on any node ([`Nodes`]); PUBLISH reaches
//! every node, so any will do, and the next one is used after a failure.

use super::feed::{Feed, Scope};
use super::link::Dialer;
use super::slots::{key_slot, SlotMap};
use super::target::Target;
use super::{BrokerError, Core};
use crate::config::{ClusterSettings, HostPort};
use crate::hub::Inbox;
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Topology reads while the cluster is degraded (a feed down, slots
/// uncovered): a failover is followed within about this much of the
/// cluster electing the new master.
pub const DEGRADED_REFRESH: Duration = Duration::from_millis(250);

/// Longest pause between topology reads while degraded: reads that see
/// no change back off from [`DEGRADED_REFRESH`] to this.
pub const DEGRADED_REFRESH_MAX: Duration = Duration::from_secs(2);

/// Topology reads while the nodes asked disagree (a change is spreading
/// through the cluster): it settles within a few of these.
pub const UNSETTLED_REFRESH: Duration = Duration::from_millis(50);

/// Reads at the unsettled pace (backing off) before a reported change
/// that no read shows is given up on.
pub const UNSETTLED_READS: u32 = 6;

/// Requests for a read that arrive together (a failover drops many
/// subscriptions at once) are answered by one read this much later.
pub const REFRESH_COALESCE: Duration = Duration::from_millis(20);

/// Nodes asked for the topology at each read.
pub const TOPOLOGY_VOTERS: usize = 3;

/// MOVED hints kept until the router takes them; more are dropped (the
/// full read that every hint also asks for covers them).
pub const MAX_HINTS: usize = 1024;

/// What cluster feeds tell the router: read the topology again, and
/// where MOVED replies said slots live now.
#[derive(Default)]
pub struct Signal {
    wake: Notify,
    moved: Mutex<Vec<(u16, HostPort)>>,
}

impl Signal {
    /// Asks for a topology read.
    pub fn refresh(&self) {
        self.wake.notify_one();
    }

    /// A MOVED reply: `slot` lives on `node` now.
    pub fn moved(&self, slot: u16, node: HostPort) {
        let mut moved = self.moved.lock().unwrap_or_else(|e| e.into_inner());
        if moved.len() < MAX_HINTS {
            moved.push((slot, node));
        }
        drop(moved);
        self.wake.notify_one();
    }

    fn take_moved(&self) -> Vec<(u16, HostPort)> {
        std::mem::take(&mut *self.moved.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Reads the topology from up to [`TOPOLOGY_VOTERS`] of `candidates`
/// and keeps the view most answers agree on; `true` when all agreed.
pub async fn read_topology(
    dialer: &Dialer,
    candidates: &[HostPort],
) -> Result<(SlotMap, bool), BrokerError> {
    let mut views: Vec<(SlotMap, usize)> = Vec::new();
    let mut failures = Vec::new();
    for node in candidates {
        if views.iter().map(|(_, n)| n).sum::<usize>() >= TOPOLOGY_VOTERS {
            break;
        }
        match ask_slots(dialer, node).await {
            Ok(map) => match views.iter_mut().find(|(m, _)| *m == map) {
                Some((_, n)) => *n += 1,
                None => views.push((map, 1)),
            },
            Err(e) => failures.push(e.to_string()),
        }
    }
    let agreed = views.len() == 1;
    // Ties go to the view heard first (candidates list masters first).
    let best = views
        .into_iter()
        .rev()
        .max_by_key(|(_, n)| *n)
        .map(|(m, _)| (m, agreed));
    best.ok_or_else(|| {
        BrokerError::Topology(format!(
            "no cluster node answered CLUSTER SLOTS ({})",
            failures.join("; ")
        ))
    })
}

async fn ask_slots(dialer: &Dialer, node: &HostPort) -> Result<SlotMap, BrokerError> {
    let mut link = dialer.open(node).await?;
    let reply = link.request(redis::cmd("CLUSTER").arg("SLOTS")).await?;
    SlotMap::from_cluster_slots(reply, node)
        .ok_or_else(|| BrokerError::from(link.unreadable("CLUSTER SLOTS")))
}

/// Seeds first, then the nodes last seen: who to ask about the topology.
fn candidates(seeds: &[HostPort], map: &SlotMap) -> Vec<HostPort> {
    let mut all = map.masters();
    all.extend(map.nodes().iter().cloned());
    all.extend(seeds.iter().cloned());
    let mut seen = std::collections::HashSet::new();
    all.retain(|n| seen.insert(n.clone()));
    all
}

/// The nodes of a cluster, for classic pub/sub's single feed.
pub struct Nodes {
    seeds: Vec<HostPort>,
    dialer: Dialer,
    known: Mutex<(Vec<HostPort>, usize)>,
}

impl Nodes {
    pub fn new(settings: &ClusterSettings, dialer: Dialer) -> Nodes {
        Nodes {
            seeds: settings.seeds.clone(),
            dialer,
            known: Mutex::new((settings.seeds.clone(), 0)),
        }
    }

    /// The next node to try: the list is refreshed from the cluster when
    /// a node answers, and walked in turn across failures.
    pub async fn next(&self) -> Result<HostPort, BrokerError> {
        let candidates = self.lock().0.clone();
        let mut candidates = candidates;
        candidates.extend(self.seeds.iter().cloned());
        if let Ok((map, _)) = read_topology(&self.dialer, &candidates).await {
            let fresh = candidates_of(&map);
            let mut known = self.lock();
            if !fresh.is_empty() && known.0 != fresh {
                *known = (fresh, 0);
            }
        }
        let mut known = self.lock();
        let (list, next) = &mut *known;
        let node = list.get(*next % list.len().max(1)).cloned();
        *next += 1;
        node.ok_or_else(|| BrokerError::Topology("no cluster node known".into()))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (Vec<HostPort>, usize)> {
        self.known.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn candidates_of(map: &SlotMap) -> Vec<HostPort> {
    candidates(&[], map)
}

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
    /// A change is under way: the last read's voters disagreed, or a
    /// feed reported a move the reads have not shown yet.
    unsettled: bool,
    tracker: TaskTracker,
    stop: CancellationToken,
}

impl Router {
    pub fn new(core: Arc<Core>, settings: ClusterSettings, tracker: TaskTracker) -> Router {
        core.state
            .set_waiting(Some("reading the cluster topology".into()));
        Router {
            core,
            settings,
            map: Arc::default(),
            feeds: HashMap::new(),
            signal: Arc::default(),
            unsettled: false,
            tracker,
            stop: CancellationToken::new(),
        }
    }

    /// Runs until `stop`, then stops every feed.
    pub async fn run(mut self, stop: CancellationToken) {
        self.stop = stop.child_token();
        let changes = self.core.hub.changes().clone();
        let signal = self.signal.clone();
        let (mut failures, mut quiet) = (0u32, 0u32);
        let mut next = Instant::now();
        let mut last = Instant::now();
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = changes.changed() => self.route_changes(),
                _ = signal.wake.notified() => {
                    self.follow_moves();
                    self.unsettled = true;
                    // Requests come in bursts (a failover drops many
                    // subscriptions at once): one read answers them all,
                    // and reads back off while they fail.
                    let gap = super::backoff(failures, REFRESH_COALESCE, self.core.settings.reconnect_max);
                    next = next.min(last + gap);
                    quiet = 0;
                }
                _ = tokio::time::sleep_until(next) => {
                    let read = self.refresh().await;
                    failures = if read.is_some() { 0 } else { failures.saturating_add(1) };
                    quiet = if read == Some(false) { quiet.saturating_add(1) } else { 0 };
                    // Reported moves the reads never show are given up on
                    // after a few seconds of backing off.
                    self.unsettled &= quiet <= UNSETTLED_READS;
                    last = Instant::now();
                    next = last + self.pause(quiet);
                }
            }
        }
        self.feeds.drain().for_each(|(_, f)| f.stop.cancel());
    }

    /// Until the next read: short while the nodes disagree, or while
    /// degraded (a feed down, slots uncovered), longer as reads keep
    /// finding no change.
    fn pause(&self, quiet: u32) -> Duration {
        let map = self.map.load();
        let degraded =
            map.masters().is_empty() || map.uncovered() > 0 || !self.core.state.is_connected();
        let first = match (self.unsettled, degraded) {
            (true, _) => UNSETTLED_REFRESH,
            (false, true) => DEGRADED_REFRESH,
            (false, false) => return self.settings.refresh_interval,
        };
        first
            .saturating_mul(1 << quiet.min(5))
            .min(DEGRADED_REFRESH_MAX)
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

    /// Reads the topology and applies it when it changed: `Some(changed)`,
    /// or `None` when no node answered.
    async fn refresh(&mut self) -> Option<bool> {
        let current = self.map.load_full();
        let candidates = candidates(&self.settings.seeds, &current);
        match read_topology(&self.core.dialer, &candidates).await {
            Ok((map, agreed)) => {
                self.unsettled |= !agreed;
                let none = map.masters().is_empty();
                self.core
                    .state
                    .set_waiting(none.then(|| "the cluster serves no slot".into()));
                let changed = map != *current;
                if changed {
                    self.apply(map);
                }
                self.unsettled &= !(changed && agreed);
                Some(changed)
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the cluster topology");
                if current.masters().is_empty() {
                    self.core.state.set_waiting(Some(e.to_string()));
                }
                None
            }
        }
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
