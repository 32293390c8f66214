//! Reading a cluster's topology: `CLUSTER SLOTS` from up to
//! [`TOPOLOGY_VOTERS`] nodes, asked together, keeping the view most of
//! them give. The connections to the nodes asked are kept for the next
//! read, so that reading every 50-100 ms while the cluster changes costs
//! one command per node, not a connection.

use crate::broker::link::{Dialer, Link};
use crate::broker::slots::SlotMap;
use crate::broker::BrokerError;
use crate::config::HostPort;
use std::collections::HashMap;

/// Nodes asked for the topology at each read.
pub const TOPOLOGY_VOTERS: usize = 3;

/// Who to ask: the masters last seen, then their replicas, then the seeds.
pub fn candidates(seeds: &[HostPort], map: &SlotMap) -> Vec<HostPort> {
    let mut all = map.masters();
    all.extend(map.nodes().iter().cloned());
    all.extend(seeds.iter().cloned());
    let mut seen = std::collections::HashSet::new();
    all.retain(|n| seen.insert(n.clone()));
    all
}

/// Reads topologies over kept connections.
pub struct TopologyReader {
    dialer: Dialer,
    /// At most [`TOPOLOGY_VOTERS`] open connections: to the last voters.
    links: HashMap<HostPort, Link>,
}

impl TopologyReader {
    pub fn new(dialer: Dialer) -> TopologyReader {
        TopologyReader {
            dialer,
            links: HashMap::new(),
        }
    }

    /// The view most of the first [`TOPOLOGY_VOTERS`] answering
    /// `candidates` give (ties: the first heard), and whether all agreed.
    pub async fn read(&mut self, candidates: &[HostPort]) -> Result<(SlotMap, bool), BrokerError> {
        let mut views: Vec<(SlotMap, usize)> = Vec::new();
        let mut failures = Vec::new();
        let mut voters = Vec::new();
        for group in candidates.chunks(TOPOLOGY_VOTERS) {
            if voters.len() >= TOPOLOGY_VOTERS {
                break;
            }
            let asks = group.iter().map(|node| {
                let kept = self.links.remove(node);
                ask(&self.dialer, node, kept)
            });
            for (node, answer) in group.iter().zip(futures_util::future::join_all(asks).await) {
                match answer {
                    Ok((map, link)) => {
                        self.links.insert(node.clone(), link);
                        voters.push(node.clone());
                        match views.iter_mut().find(|(m, _)| *m == map) {
                            Some((_, n)) => *n += 1,
                            None => views.push((map, 1)),
                        }
                    }
                    Err(e) => failures.push(e.to_string()),
                }
            }
        }
        self.links.retain(|node, _| voters.contains(node));
        let agreed = views.len() == 1;
        let best = views.into_iter().rev().max_by_key(|(_, n)| *n);
        best.map(|(m, _)| (m, agreed)).ok_or_else(|| {
            BrokerError::Topology(format!(
                "no cluster node answered CLUSTER SLOTS ({})",
                failures.join("; ")
            ))
        })
    }
}

/// `CLUSTER SLOTS` on `node`, over `kept` if it still works (a kept
/// connection the node has since closed is replaced once).
async fn ask(
    dialer: &Dialer,
    node: &HostPort,
    kept: Option<Link>,
) -> Result<(SlotMap, Link), BrokerError> {
    if let Some(link) = kept {
        if let Ok(answer) = slots(node, link).await {
            return Ok(answer);
        }
    }
    slots(node, dialer.open(node).await?).await
}

async fn slots(node: &HostPort, mut link: Link) -> Result<(SlotMap, Link), BrokerError> {
    let reply = link.request(redis::cmd("CLUSTER").arg("SLOTS")).await?;
    match SlotMap::from_cluster_slots(reply, node) {
        Some(map) => Ok((map, link)),
        None => Err(link.unreadable("CLUSTER SLOTS").into()),
    }
}
