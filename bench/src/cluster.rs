//! Publishing to Redis, on one node or on a Redis Cluster, with `PUBLISH`
//! or `SPUBLISH`.
//!
//! `--redis-cluster`: `--redis-url` is a seed. Its `CLUSTER SLOTS` is read
//! first, and every node it names must be on loopback. Then redis-rs's
//! async cluster client takes over: it keeps a multiplexed connection per
//! master and routes each command by the slot of its first argument, the
//! channel. For `SPUBLISH` that is what Redis requires (the master serving
//! the channel's slot); `PUBLISH` would be accepted by any node and is
//! routed by the same rule, so a channel's messages enter the cluster at
//! the same master in both modes and only what Redis does next differs:
//! classic pub/sub copies each message over the cluster bus to every
//! node, sharded pub/sub only to the shard's replicas.

use anyhow::{bail, Context};
use clap::ValueEnum;
use redis::aio::MultiplexedConnection;
use redis::cluster_async::ClusterConnection;
use redis::Value;
use serde::Serialize;
use std::net::IpAddr;
use std::time::Duration;

/// The command each message is published with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PublishCommand {
    /// Classic pub/sub (reaches SUBSCRIBErs; on a cluster, every node).
    Publish,
    /// Sharded pub/sub (reaches SSUBSCRIBErs of the channel's shard).
    Spublish,
}

impl PublishCommand {
    pub fn name(self) -> &'static str {
        match self {
            PublishCommand::Publish => "PUBLISH",
            PublishCommand::Spublish => "SPUBLISH",
        }
    }
}

/// How messages were published, for the report.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PublishSetup {
    /// `PUBLISH`, `SPUBLISH`, or `HTTP POST` (Nchan).
    pub command: String,
    /// Published through the cluster client (`--redis-cluster`).
    pub cluster: bool,
    /// Masters and replicas in the seed's `CLUSTER SLOTS` (cluster only).
    pub masters: Option<usize>,
    pub replicas: Option<usize>,
}

impl PublishSetup {
    /// One line for the report's table.
    pub fn describe(&self) -> String {
        match (self.masters, self.replicas) {
            (Some(m), Some(r)) => {
                format!("{} to a cluster of {m} masters, {r} replicas", self.command)
            }
            _ => self.command.clone(),
        }
    }
}

/// A node named in `CLUSTER SLOTS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotNode {
    pub host: String,
    pub port: u16,
    pub master: bool,
}

/// The nodes of a `CLUSTER SLOTS` reply (each once, a master before its
/// replicas); a node that announces no host (`""` or `?`) is on `seed`.
pub fn slot_nodes(reply: &Value, seed: &str) -> Option<Vec<SlotNode>> {
    let Value::Array(ranges) = reply else {
        return None;
    };
    let mut nodes: Vec<SlotNode> = Vec::new();
    for range in ranges {
        let Value::Array(fields) = range else {
            return None;
        };
        for (i, node) in fields.iter().skip(2).enumerate() {
            let Value::Array(parts) = node else {
                return None;
            };
            let host = match parts.first()? {
                Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
                Value::SimpleString(s) => s.clone(),
                _ => return None,
            };
            let host = if host.is_empty() || host == "?" {
                seed.to_string()
            } else {
                host
            };
            let Value::Int(port) = parts.get(1)? else {
                return None;
            };
            let port = u16::try_from(*port).ok()?;
            if !nodes.iter().any(|n| n.host == host && n.port == port) {
                nodes.push(SlotNode {
                    host,
                    port,
                    master: i == 0,
                });
            }
        }
    }
    Some(nodes)
}

/// Refuses a cluster with a node off loopback (or named, not numbered:
/// a cluster announces addresses, and this one must be 127.0.0.0/8).
pub fn all_loopback(nodes: &[SlotNode]) -> anyhow::Result<()> {
    for n in nodes {
        let ip: IpAddr = n
            .host
            .parse()
            .with_context(|| format!("cluster node {}:{} is not an IP address", n.host, n.port))?;
        if !ip.is_loopback() {
            bail!(
                "cluster node {}:{}: only loopback targets (127.0.0.0/8) are allowed",
                n.host,
                n.port
            );
        }
    }
    Ok(())
}

/// One connection that publishes: to a node, or to the cluster.
#[derive(Clone)]
pub enum RedisConn {
    Node(MultiplexedConnection),
    Cluster(ClusterConnection),
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl RedisConn {
    /// Connects (run it on the runtime that should drive the connection).
    pub async fn connect(
        url: &str,
        seed_host: &str,
        cluster: bool,
        command: PublishCommand,
    ) -> anyhow::Result<(RedisConn, PublishSetup)> {
        let client = redis::Client::open(url)?;
        let node = tokio::time::timeout(CONNECT_TIMEOUT, client.get_multiplexed_async_connection())
            .await
            .context("Redis connect timed out")??;
        let mut setup = PublishSetup {
            command: command.name().into(),
            cluster,
            masters: None,
            replicas: None,
        };
        if !cluster {
            return Ok((RedisConn::Node(node), setup));
        }
        let mut seed = node;
        let reply: Value = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query_async(&mut seed)
            .await
            .context("CLUSTER SLOTS on the seed")?;
        let nodes = slot_nodes(&reply, seed_host).context("unreadable CLUSTER SLOTS reply")?;
        all_loopback(&nodes)?;
        let masters = nodes.iter().filter(|n| n.master).count();
        setup.masters = Some(masters);
        setup.replicas = Some(nodes.len() - masters);
        let cluster = redis::cluster::ClusterClientBuilder::new(vec![url])
            .connection_timeout(CONNECT_TIMEOUT)
            .response_timeout(Duration::from_secs(10))
            .build()?;
        let conn = tokio::time::timeout(CONNECT_TIMEOUT, cluster.get_async_connection())
            .await
            .context("Redis Cluster connect timed out")??;
        Ok((RedisConn::Cluster(conn), setup))
    }

    /// Sends `cmd`; answers the number of receivers (on that node).
    pub async fn query(&self, cmd: &redis::Cmd) -> redis::RedisResult<i64> {
        match self {
            RedisConn::Node(c) => cmd.query_async(&mut c.clone()).await,
            RedisConn::Cluster(c) => cmd.query_async(&mut c.clone()).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(host: &str, port: i64) -> Value {
        Value::Array(vec![
            Value::BulkString(host.as_bytes().to_vec()),
            Value::Int(port),
            Value::BulkString(b"id".to_vec()),
        ])
    }

    fn range(a: i64, b: i64, nodes: Vec<Value>) -> Value {
        let mut v = vec![Value::Int(a), Value::Int(b)];
        v.extend(nodes);
        Value::Array(v)
    }

    #[test]
    fn reads_cluster_slots() {
        let reply = Value::Array(vec![
            range(
                0,
                5460,
                vec![node("127.0.0.1", 7001), node("127.0.0.1", 7004)],
            ),
            range(5461, 10922, vec![node("", 7002), node("?", 7005)]),
            // A master serving two ranges is listed once.
            range(10923, 12000, vec![node("127.0.0.1", 7003)]),
            range(
                12001,
                16383,
                vec![node("127.0.0.1", 7003), node("127.0.0.1", 7006)],
            ),
        ]);
        let nodes = slot_nodes(&reply, "127.0.0.9").unwrap();
        let got: Vec<(&str, u16, bool)> = nodes
            .iter()
            .map(|n| (n.host.as_str(), n.port, n.master))
            .collect();
        assert_eq!(
            got,
            vec![
                ("127.0.0.1", 7001, true),
                ("127.0.0.1", 7004, false),
                ("127.0.0.9", 7002, true),
                ("127.0.0.9", 7005, false),
                ("127.0.0.1", 7003, true),
                ("127.0.0.1", 7006, false),
            ]
        );
        assert!(all_loopback(&nodes).is_ok());
        assert!(slot_nodes(&Value::Int(1), "127.0.0.1").is_none());
        assert_eq!(slot_nodes(&Value::Array(vec![]), "x"), Some(vec![]));
    }

    #[test]
    fn refuses_nodes_off_loopback() {
        let reply = Value::Array(vec![range(
            0,
            16383,
            vec![node("127.0.0.1", 7001), node("10.0.0.7", 7004)],
        )]);
        let nodes = slot_nodes(&reply, "127.0.0.1").unwrap();
        assert!(all_loopback(&nodes).is_err());
        let named = vec![SlotNode {
            host: "redis-1".into(),
            port: 6379,
            master: true,
        }];
        assert!(all_loopback(&named).is_err());
    }

    #[test]
    fn command_names() {
        assert_eq!(PublishCommand::Publish.name(), "PUBLISH");
        assert_eq!(PublishCommand::Spublish.name(), "SPUBLISH");
        let parsed = PublishCommand::from_str("spublish", true).unwrap();
        assert_eq!(parsed, PublishCommand::Spublish);
        let mut setup = PublishSetup {
            command: "SPUBLISH".into(),
            cluster: true,
            masters: Some(3),
            replicas: Some(3),
        };
        assert_eq!(
            setup.describe(),
            "SPUBLISH to a cluster of 3 masters, 3 replicas"
        );
        (setup.masters, setup.cluster) = (None, false);
        assert_eq!(setup.describe(), "SPUBLISH");
    }
}
