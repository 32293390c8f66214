//! The Redis topologies redcast follows (`redis.mode`) and their
//! validated settings; `[redis]` itself is read in `config::redis`.

use super::security::Secret;
use serde::Deserialize;
use std::time::Duration;

/// `redis.mode`: how Redis is deployed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RedisMode {
    /// One server at `redis.url`.
    #[default]
    Standalone,
    /// The master that `redis.sentinels` name for `redis.sentinel_master`.
    Sentinel,
    /// A Redis Cluster, seeded by `redis.url` and `redis.nodes`.
    Cluster,
}

impl RedisMode {
    /// The name as written in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            RedisMode::Standalone => "standalone",
            RedisMode::Sentinel => "sentinel",
            RedisMode::Cluster => "cluster",
        }
    }
}

/// A `host:port` address (IPv6 hosts in brackets: `[::1]:6379`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostPort {
    pub host: String,
    pub port: u16,
}

impl HostPort {
    /// Parses `host:port`; `None` when it is not one.
    pub fn parse(s: &str) -> Option<HostPort> {
        let (host, port) = s.rsplit_once(':')?;
        let host = match host.strip_prefix('[') {
            Some(v6) => v6.strip_suffix(']')?,
            None if host.contains(':') => return None,
            None => host,
        };
        let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
        let valid = !host.is_empty() && !host.contains(['/', '@', ' ', '[', ']']);
        valid.then(|| HostPort {
            host: host.to_string(),
            port,
        })
    }
}

impl HostPort {
    /// The host and port of a TCP (or TLS) Redis address.
    pub fn of_addr(addr: &::redis::ConnectionAddr) -> Option<HostPort> {
        match addr {
            ::redis::ConnectionAddr::Tcp(host, port)
            | ::redis::ConnectionAddr::TcpTls { host, port, .. } => Some(HostPort {
                host: host.clone(),
                port: *port,
            }),
            _ => None,
        }
    }
}

impl std::fmt::Display for HostPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Sentinel mode, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct SentinelSettings {
    pub sentinels: Vec<HostPort>,
    pub master: String,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub tls: bool,
}

/// Cluster mode, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterSettings {
    /// `redis.url`'s node first, then `redis.nodes`.
    pub seeds: Vec<HostPort>,
    pub sharded: bool,
    pub refresh_interval: Duration,
}

/// How redcast finds its Redis nodes.
#[derive(Debug, Clone, PartialEq)]
pub enum Topology {
    Standalone,
    Sentinel(SentinelSettings),
    Cluster(ClusterSettings),
}

impl Topology {
    /// The `redis.mode` this topology comes from.
    pub fn mode(&self) -> RedisMode {
        match self {
            Topology::Standalone => RedisMode::Standalone,
            Topology::Sentinel(_) => RedisMode::Sentinel,
            Topology::Cluster(_) => RedisMode::Cluster,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_parses_names_ipv4_and_bracketed_ipv6() {
        let hp = |s: &str| HostPort::parse(s).map(|h| h.to_string());
        assert_eq!(
            hp("redis-0.redis:26379").as_deref(),
            Some("redis-0.redis:26379")
        );
        assert_eq!(hp("127.0.0.1:7000").as_deref(), Some("127.0.0.1:7000"));
        assert_eq!(hp("[::1]:7000").as_deref(), Some("[::1]:7000"));
        for bad in [
            "",
            "host",
            "host:",
            ":6379",
            "host:0",
            "host:99999",
            "::1:7000",
            "a b:1",
        ] {
            assert_eq!(hp(bad), None, "{bad}");
        }
    }
}
