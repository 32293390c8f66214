//! redcast's command connection to Redis (not a pub/sub link): client
//! publishes, probes, durable-history reads and the Function library go
//! over it. One multiplexed connection, to `redis.url` (standalone), to
//! the master the sentinels name (re-dialled when it changes), or through
//! redis-rs's cluster client, which routes by slot. It is made on first
//! use and re-made on the next use after a caller reports it lost.

use super::publisher::{certificates, client, connection_info};
use crate::config::{HostPort, RedisSettings, Topology};
use redis::aio::MultiplexedConnection;
use redis::cluster_async::ClusterConnection;
use std::sync::Arc;
use tokio::sync::{watch, Mutex};

/// Where commands go.
pub enum Route {
    /// `redis.url`.
    Url,
    /// The master the sentinels name.
    Master(watch::Receiver<Option<HostPort>>),
    /// The cluster, routed by slot.
    Cluster,
}

/// A command connection to a node or to the cluster, cheap to clone.
#[derive(Clone)]
pub enum Conn {
    Node(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl Conn {
    /// Runs one command.
    pub async fn query<T: redis::FromRedisValue>(
        &mut self,
        cmd: &redis::Cmd,
    ) -> redis::RedisResult<T> {
        match self {
            Conn::Node(c) => cmd.query_async(c).await,
            Conn::Cluster(c) => cmd.query_async(c).await,
        }
    }

    /// Runs one command on every master (a cluster: the replies, arrays,
    /// are combined into one), or on the node.
    pub async fn on_masters(
        &mut self,
        cmd: &redis::Cmd,
        combine: bool,
    ) -> redis::RedisResult<redis::Value> {
        use redis::cluster_routing::{MultipleNodeRoutingInfo, ResponsePolicy, RoutingInfo};
        match self {
            Conn::Node(c) => cmd.query_async(c).await,
            Conn::Cluster(c) => {
                let policy = if combine {
                    ResponsePolicy::CombineArrays
                } else {
                    ResponsePolicy::AllSucceeded
                };
                let all = MultipleNodeRoutingInfo::AllMasters;
                c.route_command(cmd.clone(), RoutingInfo::MultiNode((all, Some(policy))))
                    .await
            }
        }
    }
}

struct Slot {
    route: Route,
    conn: Option<Conn>,
    /// Counts connections made, so that a report about an old one does
    /// not drop a newer one.
    generation: u64,
}

/// The shared command connection.
pub struct Commands {
    settings: RedisSettings,
    slot: Mutex<Slot>,
}

impl Commands {
    pub fn new(settings: RedisSettings, route: Route) -> Arc<Commands> {
        Arc::new(Commands {
            settings,
            slot: Mutex::new(Slot {
                route,
                conn: None,
                generation: 0,
            }),
        })
    }

    /// Per-command deadline (`redis.timeout`).
    pub fn timeout(&self) -> std::time::Duration {
        self.settings.timeout
    }

    /// Whether publishes go out as SPUBLISH.
    pub fn sharded(&self) -> bool {
        self.settings.sharded()
    }

    /// The connection and its generation, made now if there is none (or
    /// the master moved); `None` when Redis cannot be reached in time.
    pub async fn conn(&self) -> Option<(Conn, u64)> {
        let mut slot = self.slot.lock().await;
        if let Route::Master(master) = &mut slot.route {
            if master.has_changed().unwrap_or(false) {
                master.mark_unchanged();
                slot.conn = None;
            }
        }
        if slot.conn.is_none() {
            let connect = self.connect(&slot.route);
            slot.conn = tokio::time::timeout(self.settings.timeout, connect)
                .await
                .ok()
                .and_then(Result::ok);
            slot.generation += 1;
        }
        let generation = slot.generation;
        slot.conn.clone().map(|c| (c, generation))
    }

    /// The connection of `generation` failed: the next use makes another.
    pub async fn lost(&self, generation: u64) {
        let mut slot = self.slot.lock().await;
        if slot.generation == generation {
            slot.conn = None;
        }
    }

    async fn connect(&self, route: &Route) -> redis::RedisResult<Conn> {
        let node = match route {
            Route::Cluster => return Ok(Conn::Cluster(self.cluster().await?)),
            Route::Url => None,
            Route::Master(master) => match master.borrow().clone() {
                Some(m) => Some(m),
                None => return Err(unavailable("the sentinels have not named a master yet")),
            },
        };
        let client = client(&self.settings, node.as_ref())?;
        // redis-rs answers a command with an error after 500 ms unless
        // told otherwise; a history read waiting behind others, or a
        // publish in a burst, may take longer without anything being
        // wrong: give each command `redis.timeout`, as the cluster client.
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.settings.timeout))
            .set_response_timeout(Some(self.settings.timeout));
        let conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        Ok(Conn::Node(conn))
    }

    async fn cluster(&self) -> redis::RedisResult<ClusterConnection> {
        let Topology::Cluster(c) = &self.settings.topology else {
            return Err(unavailable("not a cluster"));
        };
        let nodes: Vec<redis::ConnectionInfo> = c
            .seeds
            .iter()
            .map(|seed| connection_info(&self.settings, Some(seed)))
            .collect::<Result<_, _>>()?;
        let mut builder = redis::cluster::ClusterClientBuilder::new(nodes)
            .connection_timeout(self.settings.timeout)
            .response_timeout(self.settings.timeout);
        if let Some(certs) = certificates(&self.settings)? {
            builder = builder.certs(certs);
        }
        builder.build()?.get_async_connection().await
    }
}

fn unavailable(why: &'static str) -> redis::RedisError {
    redis::RedisError::from((redis::ErrorKind::Io, why))
}

/// Whether an error means the connection itself is gone (rather than a
/// refused command): READONLY means a demoted master, so find the new one.
pub fn is_lost(e: &redis::RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_unrecoverable_error()
        || e.code() == Some("READONLY")
}
