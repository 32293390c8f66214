//! The validated runtime configuration.

use super::file::FileConfig;
use super::history::{validate_history, HistorySettings};
use super::key::{addr, at_least, err, positive, KeyError};
use super::redis::{validate_redis, RedisSettings};
use super::security::{
    validate_auth, validate_rules, validate_tls, Access, AuthSettings, ChannelRule, TlsSettings,
};
use ipnet::IpNet;
use regex::Regex;
use std::net::SocketAddr;
use std::time::Duration;

/// Hard ceiling on a channel name, whatever `name_pattern` allows, so
/// that a permissive pattern cannot make map keys unbounded.
pub const MAX_CHANNEL_NAME_BYTES: usize = 1024;

/// Everything redcast needs at run time, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    pub server: ServerSettings,
    pub admin: AdminSettings,
    pub redis: RedisSettings,
    pub client: ClientSettings,
    pub channels: ChannelSettings,
    pub log: LogSettings,
    /// `None`: the public listener speaks plain HTTP.
    pub tls: Option<TlsSettings>,
    pub auth: AuthSettings,
    pub history: HistorySettings,
}

/// `[server]`, validated.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    pub max_connections: usize,
    pub max_pending_handshakes: usize,
    pub handshake_timeout: Duration,
    pub drain_window: Duration,
    pub drain_timeout: Duration,
    pub trusted_proxies: Vec<IpNet>,
    pub demo: bool,
    /// The fan-out shards write pre-encoded frames straight to client
    /// sockets (plain or TLS) instead of waking each session's writer.
    pub direct_writes: bool,
    /// Connections from `trusted_proxies` must start with a PROXY protocol
    /// header, whose source address then stands for the TCP peer.
    pub proxy_protocol: bool,
    /// Worker threads of the runtime, and fan-out shards (one each).
    pub worker_threads: usize,
    /// `GET /echo` upgrades to a WebSocket that echoes every message
    /// (for the Autobahn TestSuite); never meant for production.
    pub conformance_echo: bool,
}

/// `[admin]`, validated.
#[derive(Debug, Clone)]
pub struct AdminSettings {
    pub listen: SocketAddr,
}

/// `[client]`, validated.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    pub max_message_bytes: usize,
    pub max_subscriptions: usize,
    pub queue_max_bytes: usize,
    pub ping_interval: Duration,
    pub idle_timeout: Duration,
    pub write_timeout: Duration,
    pub allowed_origins: Vec<String>,
    pub max_connections_per_ip: usize,
    pub rate_limit: f64,
    pub rate_burst: u32,
}

/// `[channels]`, validated.
#[derive(Debug, Clone)]
pub struct ChannelSettings {
    /// The operator's pattern, anchored to match whole names.
    pub name_pattern: Regex,
    /// The pattern as written, for display.
    pub name_pattern_source: String,
    /// Access rules, first match wins; empty means open (see docs).
    pub rules: Vec<ChannelRule>,
}

impl ChannelSettings {
    /// Whether a client may use this channel name at all.
    pub fn is_valid_name(&self, name: &str) -> bool {
        !name.is_empty()
            && name.len() <= MAX_CHANNEL_NAME_BYTES
            // Reserved for redcast's own channels (the delivery probe).
            && !name.starts_with(crate::broker::probe::RESERVED_PREFIX)
            && self.name_pattern.is_match(name)
    }

    /// Whether any rule keeps history.
    pub fn any_durable(&self) -> bool {
        self.rules.iter().any(|r| r.retention.is_some())
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// `[log]`, validated.
#[derive(Debug, Clone)]
pub struct LogSettings {
    pub format: LogFormat,
    pub level: String,
}

impl Settings {
    /// Checks every value of the file configuration; errors name the key.
    pub fn validate(raw: FileConfig) -> Result<Settings, KeyError> {
        let server = ServerSettings {
            listen: addr("server.listen", &raw.server.listen)?,
            max_connections: at_least("server.max_connections", raw.server.max_connections, 1)?,
            max_pending_handshakes: at_least(
                "server.max_pending_handshakes",
                raw.server.max_pending_handshakes,
                1,
            )?,
            handshake_timeout: positive("server.handshake_timeout", raw.server.handshake_timeout)?,
            drain_window: raw.server.drain_window,
            drain_timeout: raw.server.drain_timeout,
            trusted_proxies: validate_proxies(&raw.server.trusted_proxies)?,
            demo: raw.server.demo,
            direct_writes: raw.server.direct_writes,
            proxy_protocol: raw.server.proxy_protocol,
            worker_threads: worker_threads(raw.server.worker_threads)?,
            conformance_echo: raw.server.conformance_echo,
        };
        if server.proxy_protocol && server.trusted_proxies.is_empty() {
            return Err(err(
                "server.proxy_protocol",
                "needs server.trusted_proxies: a header is only read from those addresses, \
                 so with none it could never apply",
            ));
        }
        if server.drain_timeout <= server.drain_window {
            return Err(err(
                "server.drain_timeout",
                "must be longer than server.drain_window, or the last clients are cut off",
            ));
        }
        let admin = AdminSettings {
            listen: addr("admin.listen", &raw.admin.listen)?,
        };
        Ok(Settings {
            server,
            admin,
            redis: validate_redis(raw.redis)?,
            client: validate_client(raw.client)?,
            channels: validate_channels(raw.channels)?,
            log: validate_log(raw.log)?,
            tls: validate_tls(raw.tls)?,
            auth: validate_auth(raw.auth)?,
            history: validate_history(raw.history)?,
        })
    }

    /// Settings that work but deserve an operator's attention.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.server.conformance_echo {
            out.push(
                "server.conformance_echo = true: GET /echo echoes whatever any client sends; \
                 this is for WebSocket conformance testing only, never for production"
                    .into(),
            );
        }
        if self.channels.rules.is_empty() {
            out.push(
                "no [[channels.rules]]: redcast runs OPEN, any client may subscribe to any valid \
                 channel (publishing is denied)"
                    .into(),
            );
        }
        let needs_tokens = self.channels.rules.iter().any(|r| {
            [r.subscribe, r.publish]
                .iter()
                .any(|a| matches!(a, Access::Authenticated | Access::Token))
        });
        if needs_tokens && !self.auth.enabled() {
            out.push("channel rules need tokens but [auth] has no algorithms: those rules can never allow".into());
        }
        if self.tls.is_none() && !self.server.listen.ip().is_loopback() {
            out.push(format!(
                "server.listen = {} is reachable from the network without TLS: \
                 terminate TLS in front of redcast or set [tls]",
                self.server.listen
            ));
        }
        if !self.admin.listen.ip().is_loopback() {
            out.push(format!(
                "admin.listen = {} exposes metrics to the network",
                self.admin.listen
            ));
        }
        out
    }
}

fn validate_client(c: super::file::ClientSection) -> Result<ClientSettings, KeyError> {
    let max_message_bytes = at_least("client.max_message_bytes", c.max_message_bytes, 128)?;
    if max_message_bytes > 64 * 1024 * 1024 {
        return Err(err("client.max_message_bytes", "must be at most 64 MiB"));
    }
    let ping_interval = positive("client.ping_interval", c.ping_interval)?;
    let idle_timeout = positive("client.idle_timeout", c.idle_timeout)?;
    if idle_timeout <= ping_interval {
        return Err(err(
            "client.idle_timeout",
            "must be greater than client.ping_interval, or healthy clients would be closed",
        ));
    }
    Ok(ClientSettings {
        max_message_bytes,
        max_subscriptions: at_least("client.max_subscriptions", c.max_subscriptions, 1)?,
        queue_max_bytes: at_least("client.queue_max_bytes", c.queue_max_bytes, 1024)?,
        ping_interval,
        idle_timeout,
        write_timeout: positive("client.write_timeout", c.write_timeout)?,
        allowed_origins: validate_origins(c.allowed_origins)?,
        max_connections_per_ip: c.max_connections_per_ip,
        rate_limit: validate_rate(c.rate_limit)?,
        rate_burst: at_least("client.rate_burst", c.rate_burst as usize, 1)? as u32,
    })
}

fn validate_channels(c: super::file::ChannelsSection) -> Result<ChannelSettings, KeyError> {
    // Anchor the pattern so that it must match the whole name.
    let anchored = format!("^(?:{})$", c.name_pattern);
    let name_pattern = Regex::new(&anchored).map_err(|e| {
        err(
            "channels.name_pattern",
            format!("not a valid regular expression: {e}"),
        )
    })?;
    Ok(ChannelSettings {
        name_pattern,
        name_pattern_source: c.name_pattern,
        rules: validate_rules(c.rules)?,
    })
}

fn validate_log(l: super::file::LogSection) -> Result<LogSettings, KeyError> {
    let format = match l.format.as_str() {
        "text" => LogFormat::Text,
        "json" => LogFormat::Json,
        other => {
            return Err(err(
                "log.format",
                format!("`{other}` is not one of text, json"),
            ))
        }
    };
    tracing_subscriber::EnvFilter::try_new(&l.level)
        .map_err(|e| err("log.level", format!("not a valid filter: {e}")))?;
    Ok(LogSettings {
        format,
        level: l.level,
    })
}

fn validate_proxies(list: &[String]) -> Result<Vec<IpNet>, KeyError> {
    list.iter()
        .map(|p| {
            p.parse::<IpNet>()
                .or_else(|_| p.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    err(
                        "server.trusted_proxies",
                        format!("`{p}` is not an IP address or CIDR"),
                    )
                })
        })
        .collect()
}

fn validate_origins(list: Vec<String>) -> Result<Vec<String>, KeyError> {
    for o in &list {
        let ok = (o.starts_with("https://") || o.starts_with("http://"))
            && !o.ends_with('/')
            && o.split("://")
                .nth(1)
                .is_some_and(|h| !h.is_empty() && !h.contains('/'));
        if !ok {
            return Err(err(
                "client.allowed_origins",
                format!("`{o}` is not an origin like https://app.example.com"),
            ));
        }
    }
    Ok(list.into_iter().map(|o| o.to_ascii_lowercase()).collect())
}

fn validate_rate(rate: f64) -> Result<f64, KeyError> {
    if !(rate.is_finite() && rate > 0.0) {
        return Err(err(
            "client.rate_limit",
            "must be a positive number of requests per second",
        ));
    }
    Ok(rate)
}

/// `server.worker_threads`: at least 1; unset means the cores available
/// to the process (its CPU affinity and cgroup quota included).
fn worker_threads(value: Option<usize>) -> Result<usize, KeyError> {
    match value {
        Some(n) => at_least("server.worker_threads", n, 1),
        None => Ok(std::thread::available_parallelism().map_or(1, |n| n.get())),
    }
}
