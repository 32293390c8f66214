//! `[redis]`: where messages come from. One Redis server (`standalone`),
//! a master found through Sentinel (`sentinel`), or a Redis Cluster
//! (`cluster`), as written and validated.

use super::key::{err, positive, KeyError};
use super::mask_url_password;
use super::security::Secret;
use super::topology::{ClusterSettings, HostPort, RedisMode, SentinelSettings, Topology};
use serde::Deserialize;
use std::time::Duration;

/// Default Redis URL.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
/// Default time allowed for connecting to Redis and for each command.
pub const DEFAULT_REDIS_TIMEOUT: Duration = Duration::from_secs(5);
/// Default interval of the pub/sub connection health PING.
pub const DEFAULT_REDIS_PING_INTERVAL: Duration = Duration::from_secs(5);
/// Default shortest reconnect delay (the range doubles up to the maximum,
/// every delay drawn at random within it).
pub const DEFAULT_RECONNECT_MIN: Duration = Duration::from_millis(100);
/// Default longest reconnect delay: a restored Redis is found within about
/// half a second (docs/chaos.md), at a cost of about three refused
/// connects per second per instance while it is down.
pub const DEFAULT_RECONNECT_MAX: Duration = Duration::from_millis(500);
/// Default interval of the delivery probe.
pub const DEFAULT_PROBE_INTERVAL: Duration = Duration::from_secs(5);
/// Default time a probe may take to come back before readiness fails.
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// Default for `redis.sharded` in cluster mode: sharded pub/sub.
pub const DEFAULT_SHARDED: bool = true;
/// Default interval of the cluster topology refresh (`CLUSTER SLOTS`),
/// besides the refresh every failure and slot move triggers at once.
pub const DEFAULT_CLUSTER_REFRESH_INTERVAL: Duration = Duration::from_secs(10);
/// Longest accepted `redis.channel_prefix`.
pub const MAX_CHANNEL_PREFIX_BYTES: usize = 256;

/// `[redis]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisSection {
    pub mode: RedisMode,
    /// The data node (standalone), a seed (cluster), or only the scheme,
    /// credentials and database of the data nodes (sentinel).
    pub url: String,
    /// ACL user; overrides one in the URL.
    pub username: Option<String>,
    /// ACL password; overrides one in the URL. Never logged.
    pub password: Option<Secret>,
    /// PEM CA bundle to verify a `rediss://` server (else system roots).
    pub ca_file: Option<std::path::PathBuf>,
    /// Sentinel addresses, `host:port`.
    pub sentinels: Vec<String>,
    /// The master's name in the sentinels' configuration.
    pub sentinel_master: Option<String>,
    pub sentinel_username: Option<String>,
    pub sentinel_password: Option<Secret>,
    /// Speak TLS to the sentinels (verified with `ca_file`, else system roots).
    pub sentinel_tls: bool,
    /// More cluster seeds, `host:port`.
    pub nodes: Vec<String>,
    /// Cluster: sharded pub/sub (`SSUBSCRIBE`); unset means the default.
    pub sharded: Option<bool>,
    #[serde(with = "humantime_serde")]
    pub cluster_refresh_interval: Duration,
    pub channel_prefix: String,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub ping_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub reconnect_min: Duration,
    #[serde(with = "humantime_serde")]
    pub reconnect_max: Duration,
    #[serde(with = "humantime_serde")]
    pub probe_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub probe_timeout: Duration,
}

impl std::fmt::Debug for RedisSection {
    // The URL may carry a password: never print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSection")
            .field("mode", &self.mode)
            .field("url", &mask_url_password(&self.url))
            .field("channel_prefix", &self.channel_prefix)
            .finish_non_exhaustive()
    }
}

impl Default for RedisSection {
    fn default() -> Self {
        Self {
            mode: RedisMode::default(),
            url: DEFAULT_REDIS_URL.into(),
            username: None,
            password: None,
            ca_file: None,
            sentinels: Vec::new(),
            sentinel_master: None,
            sentinel_username: None,
            sentinel_password: None,
            sentinel_tls: false,
            nodes: Vec::new(),
            sharded: None,
            cluster_refresh_interval: DEFAULT_CLUSTER_REFRESH_INTERVAL,
            channel_prefix: String::new(),
            timeout: DEFAULT_REDIS_TIMEOUT,
            ping_interval: DEFAULT_REDIS_PING_INTERVAL,
            reconnect_min: DEFAULT_RECONNECT_MIN,
            reconnect_max: DEFAULT_RECONNECT_MAX,
            probe_interval: DEFAULT_PROBE_INTERVAL,
            probe_timeout: DEFAULT_PROBE_TIMEOUT,
        }
    }
}

/// `[redis]`, validated. Debug masks the URL's password.
#[derive(Clone)]
pub struct RedisSettings {
    pub url: String,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub ca_file: Option<std::path::PathBuf>,
    pub topology: Topology,
    pub channel_prefix: String,
    pub timeout: Duration,
    pub ping_interval: Duration,
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    pub probe_interval: Duration,
    pub probe_timeout: Duration,
}

impl RedisSettings {
    /// Whether client channels map to sharded pub/sub (cluster, `sharded`).
    pub fn sharded(&self) -> bool {
        matches!(&self.topology, Topology::Cluster(c) if c.sharded)
    }
}

impl std::fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSettings")
            .field("url", &mask_url_password(&self.url))
            .field("username", &self.username)
            .field("password", &self.password)
            .field("ca_file", &self.ca_file)
            .field("topology", &self.topology)
            .field("channel_prefix", &self.channel_prefix)
            .field("timeout", &self.timeout)
            .field("ping_interval", &self.ping_interval)
            .finish_non_exhaustive()
    }
}

/// Checks `[redis]`; errors name the key.
pub(super) fn validate_redis(r: RedisSection) -> Result<RedisSettings, KeyError> {
    let info = validate_url(&r)?;
    if r.channel_prefix.len() > MAX_CHANNEL_PREFIX_BYTES {
        return Err(err(
            "redis.channel_prefix",
            format!("must be at most {MAX_CHANNEL_PREFIX_BYTES} bytes"),
        ));
    }
    if r.reconnect_min > r.reconnect_max {
        return Err(err(
            "redis.reconnect_min",
            "must not exceed redis.reconnect_max",
        ));
    }
    let topology = validate_topology(&r, &info)?;
    if matches!(&topology, Topology::Cluster(c) if c.sharded) && r.channel_prefix.contains('{') {
        // A hash tag in the prefix would put every channel in one slot.
        return Err(err(
            "redis.channel_prefix",
            "must not contain `{` with sharded cluster pub/sub (a hash tag there puts every channel on one node)",
        ));
    }
    Ok(RedisSettings {
        topology,
        timeout: positive("redis.timeout", r.timeout)?,
        ping_interval: positive("redis.ping_interval", r.ping_interval)?,
        reconnect_min: positive("redis.reconnect_min", r.reconnect_min)?,
        reconnect_max: r.reconnect_max,
        probe_interval: positive("redis.probe_interval", r.probe_interval)?,
        probe_timeout: positive("redis.probe_timeout", r.probe_timeout)?,
        url: r.url,
        username: r.username,
        password: r.password,
        ca_file: r.ca_file,
        channel_prefix: r.channel_prefix,
    })
}

fn validate_url(r: &RedisSection) -> Result<::redis::ConnectionInfo, KeyError> {
    use ::redis::IntoConnectionInfo;
    let scheme_ok = r.url.starts_with("redis://") || r.url.starts_with("rediss://");
    if !scheme_ok {
        return Err(err("redis.url", "must start with redis:// or rediss://"));
    }
    // Parse errors are reported without the URL itself: it may hold a password.
    let info = r.url.as_str().into_connection_info().map_err(|e| {
        err(
            "redis.url",
            format!("not a usable Redis URL ({:?})", e.kind()),
        )
    })?;
    if matches!(
        info.addr(),
        ::redis::ConnectionAddr::TcpTls { insecure: true, .. }
    ) {
        return Err(err(
            "redis.url",
            "#insecure (TLS without certificate checks) is not supported: \
             give the CA that signed the server's certificate in redis.ca_file",
        ));
    }
    let tls_wanted = r.url.starts_with("rediss://") || r.sentinel_tls;
    if let Some(ca) = &r.ca_file {
        if !tls_wanted {
            return Err(err(
                "redis.ca_file",
                "is only used with a rediss:// URL or redis.sentinel_tls",
            ));
        }
        std::fs::metadata(ca).map_err(|e| {
            err(
                "redis.ca_file",
                format!("cannot read {}: {e}", ca.display()),
            )
        })?;
    }
    Ok(info)
}

/// The keys of one mode must not be set in another: a typo in `mode`
/// would otherwise silently ignore them.
fn validate_topology(
    r: &RedisSection,
    info: &::redis::ConnectionInfo,
) -> Result<Topology, KeyError> {
    let sentinel_keys = [
        ("redis.sentinels", !r.sentinels.is_empty()),
        ("redis.sentinel_master", r.sentinel_master.is_some()),
        ("redis.sentinel_username", r.sentinel_username.is_some()),
        ("redis.sentinel_password", r.sentinel_password.is_some()),
        ("redis.sentinel_tls", r.sentinel_tls),
    ];
    let cluster_keys = [
        ("redis.nodes", !r.nodes.is_empty()),
        ("redis.sharded", r.sharded.is_some()),
    ];
    let foreign: Vec<_> = match r.mode {
        RedisMode::Standalone => [&sentinel_keys[..], &cluster_keys[..]].concat(),
        RedisMode::Sentinel => cluster_keys.to_vec(),
        RedisMode::Cluster => sentinel_keys.to_vec(),
    };
    if let Some((key, _)) = foreign.iter().find(|(_, set)| *set) {
        return Err(err(
            key,
            format!("is not used with redis.mode = \"{}\"", r.mode.name()),
        ));
    }
    match r.mode {
        RedisMode::Standalone => Ok(Topology::Standalone),
        RedisMode::Sentinel => validate_sentinel(r).map(Topology::Sentinel),
        RedisMode::Cluster => validate_cluster(r, info).map(Topology::Cluster),
    }
}

fn host_ports(key: &str, list: &[String]) -> Result<Vec<HostPort>, KeyError> {
    list.iter()
        .map(|s| {
            HostPort::parse(s).ok_or_else(|| err(key, format!("`{s}` is not a host:port address")))
        })
        .collect()
}

fn validate_sentinel(r: &RedisSection) -> Result<SentinelSettings, KeyError> {
    if r.sentinels.is_empty() {
        return Err(err(
            "redis.sentinels",
            "is required with redis.mode = \"sentinel\" (a list of host:port)",
        ));
    }
    let master = match &r.sentinel_master {
        Some(m) if !m.is_empty() && !m.contains(char::is_whitespace) => m.clone(),
        Some(_) => return Err(err("redis.sentinel_master", "must be a master name")),
        None => {
            return Err(err(
                "redis.sentinel_master",
                "is required with redis.mode = \"sentinel\"",
            ))
        }
    };
    Ok(SentinelSettings {
        sentinels: host_ports("redis.sentinels", &r.sentinels)?,
        master,
        username: r.sentinel_username.clone(),
        password: r.sentinel_password.clone(),
        tls: r.sentinel_tls,
    })
}

fn validate_cluster(
    r: &RedisSection,
    info: &::redis::ConnectionInfo,
) -> Result<ClusterSettings, KeyError> {
    if info.redis_settings().db() != 0 {
        return Err(err("redis.url", "Redis Cluster has only database 0"));
    }
    let seed = HostPort::of_addr(info.addr())
        .ok_or_else(|| err("redis.url", "a cluster seed must be a TCP address"))?;
    let mut seeds = vec![seed];
    seeds.extend(host_ports("redis.nodes", &r.nodes)?);
    Ok(ClusterSettings {
        seeds,
        sharded: r.sharded.unwrap_or(DEFAULT_SHARDED),
        refresh_interval: positive("redis.cluster_refresh_interval", r.cluster_refresh_interval)?,
    })
}
