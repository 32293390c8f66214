//! The configuration file as written by the operator: serde types that
//! mirror the TOML sections one to one. Every field has a named default so
//! that an empty file (or none at all) is a complete configuration.

use serde::Deserialize;
use std::time::Duration;

/// Default WebSocket listen address (loopback: exposing it is a choice).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default admin listen address (health, readiness, metrics).
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9090";
/// Default cap on open WebSocket connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Default cap on connections still in their HTTP/TLS handshake.
pub const DEFAULT_MAX_PENDING_HANDSHAKES: usize = 1_024;
/// Default time a client has to finish its handshake.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default window over which clients are closed on shutdown.
pub const DEFAULT_DRAIN_WINDOW: Duration = Duration::from_secs(10);
/// Default deadline for the whole shutdown (longer than the window).
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(20);
/// Default for `server.direct_writes`: on (fewer wake-ups and writes).
pub const DEFAULT_DIRECT_WRITES: bool = true;
/// Default for `server.worker_threads`: unset, meaning the number of cores
/// available to the process (`std::thread::available_parallelism`).
pub const DEFAULT_WORKER_THREADS: Option<usize> = None;
/// Default for `server.conformance_echo`: off (`/echo` is a 404).
pub const DEFAULT_CONFORMANCE_ECHO: bool = false;
/// Default for `server.proxy_protocol`: off (no header is read from anyone).
pub const DEFAULT_PROXY_PROTOCOL: bool = false;
/// Default largest client frame (and client message) in bytes.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Default cap on channels one connection may subscribe to.
pub const DEFAULT_MAX_SUBSCRIPTIONS: usize = 100;
/// Default cap on bytes queued for one client before it counts as slow.
pub const DEFAULT_QUEUE_MAX_BYTES: usize = 1024 * 1024;
/// Default interval between server pings.
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(25);
/// Default silence after which a client is closed.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default time a slow or closing client gets to take its last bytes.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Default channel name rule: 1 to 200 of letters, digits and `_ - . : @ /`.
pub const DEFAULT_NAME_PATTERN: &str = "^[A-Za-z0-9_.:@/-]{1,200}$";
/// Default cap on open connections from one client IP.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 1_000;
/// Default sustained request rate per connection (requests per second).
pub const DEFAULT_RATE_LIMIT: f64 = 50.0;
/// Default burst of requests above the rate.
pub const DEFAULT_RATE_BURST: u32 = 100;

/// The whole file. Unknown sections and keys are errors.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    /// `[server]`
    pub server: ServerSection,
    /// `[admin]`
    pub admin: AdminSection,
    /// `[redis]`
    pub redis: super::redis::RedisSection,
    /// `[client]`
    pub client: ClientSection,
    /// `[channels]`
    pub channels: ChannelsSection,
    /// `[log]`
    pub log: LogSection,
    /// `[tls]`
    pub tls: super::security::TlsSection,
    /// `[auth]`
    pub auth: super::security::AuthSection,
    /// `[history]`
    pub history: super::history::HistorySection,
}

/// `[server]`: the public WebSocket listener.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSection {
    pub listen: String,
    pub max_connections: usize,
    pub max_pending_handshakes: usize,
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub drain_window: Duration,
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// Proxies (IPs or CIDRs) whose X-Forwarded-For / Forwarded is believed.
    pub trusted_proxies: Vec<String>,
    /// Serve the live demo page at `/demo`.
    pub demo: bool,
    /// The delivery path writes frames straight to sockets (TLS too).
    pub direct_writes: bool,
    /// Read a PROXY protocol (v1/v2) header from `trusted_proxies` peers.
    pub proxy_protocol: bool,
    /// Runtime worker threads (and fan-out shards); unset: one per core.
    pub worker_threads: Option<usize>,
    /// Serve `GET /echo`, a WebSocket echo for conformance test suites.
    pub conformance_echo: bool,
}

impl Default for ServerSection {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.into(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_pending_handshakes: DEFAULT_MAX_PENDING_HANDSHAKES,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            drain_window: DEFAULT_DRAIN_WINDOW,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            trusted_proxies: Vec::new(),
            demo: false,
            direct_writes: DEFAULT_DIRECT_WRITES,
            proxy_protocol: DEFAULT_PROXY_PROTOCOL,
            worker_threads: DEFAULT_WORKER_THREADS,
            conformance_echo: DEFAULT_CONFORMANCE_ECHO,
        }
    }
}

/// `[admin]`: health, readiness and metrics.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSection {
    pub listen: String,
}

impl Default for AdminSection {
    fn default() -> Self {
        Self {
            listen: DEFAULT_ADMIN_LISTEN.into(),
        }
    }
}

/// `[client]`: limits applied to every connection.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientSection {
    pub max_message_bytes: usize,
    pub max_subscriptions: usize,
    pub queue_max_bytes: usize,
    #[serde(with = "humantime_serde")]
    pub ping_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub write_timeout: Duration,
    /// Browser origins allowed to connect (exact, or `https://*.example.com`).
    pub allowed_origins: Vec<String>,
    /// Open connections per client IP; 0 means no limit.
    pub max_connections_per_ip: usize,
    /// Requests per second one connection may send (token bucket rate).
    pub rate_limit: f64,
    /// Requests a connection may send in a burst above the rate.
    pub rate_burst: u32,
}

impl Default for ClientSection {
    fn default() -> Self {
        Self {
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            max_subscriptions: DEFAULT_MAX_SUBSCRIPTIONS,
            queue_max_bytes: DEFAULT_QUEUE_MAX_BYTES,
            ping_interval: DEFAULT_PING_INTERVAL,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            allowed_origins: Vec::new(),
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
            rate_limit: DEFAULT_RATE_LIMIT,
            rate_burst: DEFAULT_RATE_BURST,
        }
    }
}

/// `[channels]`: which names clients may use.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChannelsSection {
    pub name_pattern: String,
    /// Access rules, first match wins (`[[channels.rules]]`).
    pub rules: Vec<super::security::RuleSection>,
}

impl Default for ChannelsSection {
    fn default() -> Self {
        Self {
            name_pattern: DEFAULT_NAME_PATTERN.into(),
            rules: Vec::new(),
        }
    }
}

/// `[log]`: how redcast reports.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    /// `text` or `json`.
    pub format: String,
    /// A tracing filter such as `info` or `redcast=debug`; `RUST_LOG` wins.
    pub level: String,
}

impl Default for LogSection {
    fn default() -> Self {
        Self {
            format: "text".into(),
            level: "info".into(),
        }
    }
}
