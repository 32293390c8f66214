//! Cluster mode. Channel names stay exactly what backends use: redcast
//! adds no hash tags, it routes each channel by its own slot.
//!
//! Sharded pub/sub: a [`Router`] reads the topology (`CLUSTER SLOTS`,
//! asking up to three known nodes over kept connections and keeping the
//! view most of them share), keeps one feed per master that serves slots,
//! and routes every hub change to the feed whose node serves the
//! channel's slot. The topology is read again every
//! `redis.cluster_refresh_interval`; every [`DEGRADED_REFRESH`] while a
//! feed is down or slots are uncovered (backing off while reads fail);
//! every [`UNSETTLED_REFRESH`] while the nodes asked disagree; and at once
//! (coalesced) when a feed loses its link, Redis drops a subscription
//! because its slot moved (`sunsubscribe`), or refuses one (MOVED,
//! CLUSTERDOWN). A MOVED reply that names a known master is followed at
//! once, before a read confirms it. When the topology changes, feeds for
//! new masters start, feeds for nodes that serve nothing any more stop,
//! and every channel is routed again: each feed drops what it no longer
//! owns and subscribes what it now does.
//!
//! Classic pub/sub: one feed on any node ([`Nodes`]); PUBLISH reaches
//! every node, so any will do, and the next one is used after a failure.

mod reader;
mod router;

pub use reader::{candidates, TopologyReader, TOPOLOGY_VOTERS};
pub use router::Router;

use super::link::Dialer;
use super::BrokerError;
use crate::config::{ClusterSettings, HostPort};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::Notify;

/// Topology reads while the cluster is degraded (a feed down, slots
/// uncovered): a failover is followed within about this much of the
/// cluster electing the new master.
pub const DEGRADED_REFRESH: Duration = Duration::from_millis(100);

/// Longest pause between topology reads that fail: they back off from
/// [`DEGRADED_REFRESH`] to this.
pub const DEGRADED_REFRESH_MAX: Duration = Duration::from_secs(2);

/// Topology reads while the nodes asked disagree (a change is spreading
/// through the cluster): it settles within a few of these.
pub const UNSETTLED_REFRESH: Duration = Duration::from_millis(50);

/// Reads at the unsettled pace before a reported change that no read
/// shows is given up on (one second).
pub const UNSETTLED_READS: u32 = 20;

/// Requests for a read that arrive together (a failover drops many
/// subscriptions at once) are answered by one read this much later.
pub const REFRESH_COALESCE: Duration = Duration::from_millis(20);

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

/// The nodes of a cluster, for classic pub/sub's single feed.
pub struct Nodes {
    seeds: Vec<HostPort>,
    reader: tokio::sync::Mutex<TopologyReader>,
    known: Mutex<(Vec<HostPort>, usize)>,
}

impl Nodes {
    pub fn new(settings: &ClusterSettings, dialer: Dialer) -> Nodes {
        Nodes {
            seeds: settings.seeds.clone(),
            reader: tokio::sync::Mutex::new(TopologyReader::new(dialer)),
            known: Mutex::new((settings.seeds.clone(), 0)),
        }
    }

    /// The next node to try: the list is refreshed from the cluster when
    /// a node answers, and walked in turn across failures.
    pub async fn next(&self) -> Result<HostPort, BrokerError> {
        let mut asked = self.lock().0.clone();
        asked.extend(self.seeds.iter().cloned());
        let read = self.reader.lock().await.read(&asked).await;
        if let Ok((map, _)) = read {
            let fresh = candidates(&[], &map);
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
