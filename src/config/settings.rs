//! The validated runtime configuration.

use super::file::FileConfig;
use super::mask_url_password;
use regex::Regex;
use std::fmt::Write as _;
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
}

/// `[server]`, validated.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    pub max_connections: usize,
    pub max_pending_handshakes: usize,
    pub handshake_timeout: Duration,
    pub drain_timeout: Duration,
}

/// `[admin]`, validated.
#[derive(Debug, Clone)]
pub struct AdminSettings {
    pub listen: SocketAddr,
}

/// `[redis]`, validated. Debug masks the URL's password.
#[derive(Clone)]
pub struct RedisSettings {
    pub url: String,
    pub channel_prefix: String,
    pub timeout: Duration,
    pub ping_interval: Duration,
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
}

impl std::fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSettings")
            .field("url", &mask_url_password(&self.url))
            .field("channel_prefix", &self.channel_prefix)
            .field("timeout", &self.timeout)
            .field("ping_interval", &self.ping_interval)
            .finish_non_exhaustive()
    }
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
}

/// `[channels]`, validated.
#[derive(Debug, Clone)]
pub struct ChannelSettings {
    /// The operator's pattern, anchored to match whole names.
    pub name_pattern: Regex,
    /// The pattern as written, for display.
    pub name_pattern_source: String,
}

impl ChannelSettings {
    /// Whether a client may use this channel name at all.
    pub fn is_valid_name(&self, name: &str) -> bool {
        !name.is_empty() && name.len() <= MAX_CHANNEL_NAME_BYTES && self.name_pattern.is_match(name)
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

type KeyError = (String, String);

fn err(key: &str, message: impl Into<String>) -> KeyError {
    (key.to_string(), message.into())
}

fn addr(key: &str, value: &str) -> Result<SocketAddr, KeyError> {
    value
        .parse()
        .map_err(|_| err(key, format!("`{value}` is not an IP:port address")))
}

fn positive(key: &str, value: Duration) -> Result<Duration, KeyError> {
    if value.is_zero() {
        return Err(err(key, "must be greater than zero"));
    }
    Ok(value)
}

fn at_least(key: &str, value: usize, min: usize) -> Result<usize, KeyError> {
    if value < min {
        return Err(err(key, format!("must be at least {min}, got {value}")));
    }
    Ok(value)
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
            drain_timeout: raw.server.drain_timeout,
        };
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
        })
    }

    /// Settings that work but deserve an operator's attention.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.server.listen.ip().is_loopback() {
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

    /// The effective configuration as TOML, secrets masked.
    pub fn render(&self) -> String {
        let mut o = String::new();
        let d = |d: Duration| humantime::format_duration(d).to_string();
        let s = &self.server;
        let _ = writeln!(o, "[server]\nlisten = \"{}\"\nmax_connections = {}\nmax_pending_handshakes = {}\nhandshake_timeout = \"{}\"\ndrain_timeout = \"{}\"\n",
            s.listen, s.max_connections, s.max_pending_handshakes, d(s.handshake_timeout), d(s.drain_timeout));
        let _ = writeln!(o, "[admin]\nlisten = \"{}\"\n", self.admin.listen);
        let r = &self.redis;
        let _ = writeln!(o, "[redis]\nurl = {}\nchannel_prefix = {}\ntimeout = \"{}\"\nping_interval = \"{}\"\nreconnect_min = \"{}\"\nreconnect_max = \"{}\"\n",
            quote(&mask_url_password(&r.url)), quote(&r.channel_prefix), d(r.timeout), d(r.ping_interval), d(r.reconnect_min), d(r.reconnect_max));
        let c = &self.client;
        let _ = writeln!(o, "[client]\nmax_message_bytes = {}\nmax_subscriptions = {}\nqueue_max_bytes = {}\nping_interval = \"{}\"\nidle_timeout = \"{}\"\nwrite_timeout = \"{}\"\n",
            c.max_message_bytes, c.max_subscriptions, c.queue_max_bytes, d(c.ping_interval), d(c.idle_timeout), d(c.write_timeout));
        let _ = writeln!(
            o,
            "[channels]\nname_pattern = {}\n",
            quote(&self.channels.name_pattern_source)
        );
        let format = match self.log.format {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        };
        let _ = write!(
            o,
            "[log]\nformat = \"{format}\"\nlevel = {}\n",
            quote(&self.log.level)
        );
        o
    }
}

fn quote(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn validate_redis(r: super::file::RedisSection) -> Result<RedisSettings, KeyError> {
    let scheme_ok = r.url.starts_with("redis://") || r.url.starts_with("rediss://");
    if !scheme_ok {
        return Err(err("redis.url", "must start with redis:// or rediss://"));
    }
    // Parse errors are reported without the URL itself: it may hold a password.
    redis::Client::open(r.url.as_str()).map_err(|e| {
        err(
            "redis.url",
            format!("not a usable Redis URL ({:?})", e.kind()),
        )
    })?;
    if r.channel_prefix.len() > 256 {
        return Err(err("redis.channel_prefix", "must be at most 256 bytes"));
    }
    if r.reconnect_min > r.reconnect_max {
        return Err(err(
            "redis.reconnect_min",
            "must not exceed redis.reconnect_max",
        ));
    }
    Ok(RedisSettings {
        url: r.url,
        channel_prefix: r.channel_prefix,
        timeout: positive("redis.timeout", r.timeout)?,
        ping_interval: positive("redis.ping_interval", r.ping_interval)?,
        reconnect_min: positive("redis.reconnect_min", r.reconnect_min)?,
        reconnect_max: r.reconnect_max,
    })
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
