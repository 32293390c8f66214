//! Where a feed connects: a fixed node, the master the sentinels name, or
//! any node of a cluster. Asked again before every (re)connect.

use super::cluster::Nodes;
use super::sentinel::Sentinels;
use super::BrokerError;
use crate::config::{HostPort, RedisSettings};
use std::sync::Arc;

/// A feed's target; see the module docs.
pub enum Target {
    /// One node (standalone; a cluster master's feed).
    Node(HostPort),
    /// The current master of a Sentinel-managed set.
    Sentinel(Arc<Sentinels>),
    /// Any node of a cluster (classic pub/sub reaches every node).
    AnyNode(Box<Nodes>),
}

impl Target {
    /// The node of `redis.url`.
    pub fn node(settings: &RedisSettings) -> Result<Target, BrokerError> {
        url_node(&settings.url).map(Target::Node)
    }

    /// The node to connect to now.
    pub async fn resolve(&mut self) -> Result<HostPort, BrokerError> {
        match self {
            Target::Node(node) => Ok(node.clone()),
            Target::Sentinel(s) => s.resolve().await,
            Target::AnyNode(nodes) => nodes.next().await,
        }
    }

    /// Whether the node must answer `ROLE` as a master: after a failover
    /// the sentinels may still name a node that is being demoted.
    pub fn expects_master(&self) -> bool {
        matches!(self, Target::Sentinel(_))
    }

    /// Resolves once the target has moved away from `current` (a Sentinel
    /// master switch); never for the other targets.
    pub async fn switched(&self, current: &HostPort) {
        match self {
            Target::Sentinel(s) => s.switched_from(current).await,
            _ => std::future::pending().await,
        }
    }
}

impl Target {
    /// Resolves when a reconnect waiting out its backoff should try at
    /// once (a Sentinel switch was heard); never for the other targets.
    pub async fn changed(&self) {
        match self {
            Target::Sentinel(s) => s.changed().await,
            _ => std::future::pending().await,
        }
    }
}

/// The host and port of a `redis://` or `rediss://` URL.
pub fn url_node(url: &str) -> Result<HostPort, BrokerError> {
    use redis::IntoConnectionInfo;
    let info = url
        .into_connection_info()
        .map_err(|e| BrokerError::Topology(format!("redis.url: {:?}", e.kind())))?;
    HostPort::of_addr(info.addr())
        .ok_or_else(|| BrokerError::Topology("redis.url must name a TCP address".into()))
}
