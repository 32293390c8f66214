//! `check-config` output: the effective configuration as TOML, with
//! secrets masked, so that what runs can be read back and diffed.

use super::settings::{LogFormat, Settings};
use super::{mask_url_password, Access, ChannelRule, HostPort, Topology};
use std::time::Duration;
use toml::{Table, Value};

fn d(d: Duration) -> Value {
    Value::String(humantime::format_duration(d).to_string())
}

fn s(v: impl ToString) -> Value {
    Value::String(v.to_string())
}

fn n(v: usize) -> Value {
    Value::Integer(v as i64)
}

fn list(v: &[String]) -> Value {
    Value::Array(v.iter().map(s).collect())
}

fn table<const N: usize>(pairs: [(&str, Value); N]) -> Value {
    Value::Table(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

fn access(a: Access) -> Value {
    s(match a {
        Access::Anyone => "anyone",
        Access::Authenticated => "authenticated",
        Access::Token => "token",
        Access::Nobody => "nobody",
    })
}

fn rule(r: &ChannelRule) -> Value {
    let mut t = table([
        ("pattern", s(&r.pattern)),
        ("subscribe", access(r.subscribe)),
        ("publish", access(r.publish)),
    ]);
    if let (Some(h), Value::Table(t)) = (r.retention, &mut t) {
        t.insert("history_size".into(), n(h.size));
        t.insert("history_ttl".into(), d(h.ttl));
    }
    t
}

/// Adds the keys that have a value (TOML has no null).
fn put_optional<const N: usize>(section: &mut Value, pairs: [(&str, Option<String>); N]) {
    if let Value::Table(t) = section {
        for (k, v) in pairs {
            if let Some(v) = v {
                t.insert(k.into(), s(v));
            }
        }
    }
}

/// The keys of the chosen mode (the others cannot be set).
fn topology(section: &mut Value, t: &Topology) {
    let Value::Table(section) = section else {
        return;
    };
    let addrs = |v: &[HostPort]| list(&v.iter().map(HostPort::to_string).collect::<Vec<_>>());
    match t {
        Topology::Standalone => {}
        Topology::Sentinel(st) => {
            section.insert("sentinels".into(), addrs(&st.sentinels));
            section.insert("sentinel_master".into(), s(&st.master));
            section.insert("sentinel_tls".into(), Value::Boolean(st.tls));
            if let Some(user) = &st.username {
                section.insert("sentinel_username".into(), s(user));
            }
            if st.password.is_some() {
                section.insert("sentinel_password".into(), s("***"));
            }
        }
        Topology::Cluster(c) => {
            section.insert("nodes".into(), addrs(&c.seeds[1..]));
            section.insert("sharded".into(), Value::Boolean(c.sharded));
            section.insert("cluster_refresh_interval".into(), d(c.refresh_interval));
        }
    }
}

impl Settings {
    /// The effective configuration as TOML, secrets masked.
    pub fn render(&self) -> String {
        let (sv, c, r, a) = (&self.server, &self.client, &self.redis, &self.auth);
        let mut t = Table::new();
        let proxies: Vec<String> = sv.trusted_proxies.iter().map(|p| p.to_string()).collect();
        t.insert(
            "server".into(),
            table([
                ("listen", s(sv.listen)),
                ("max_connections", n(sv.max_connections)),
                ("max_pending_handshakes", n(sv.max_pending_handshakes)),
                ("handshake_timeout", d(sv.handshake_timeout)),
                ("drain_window", d(sv.drain_window)),
                ("drain_timeout", d(sv.drain_timeout)),
                ("trusted_proxies", list(&proxies)),
                ("demo", Value::Boolean(sv.demo)),
                ("direct_writes", Value::Boolean(sv.direct_writes)),
                ("proxy_protocol", Value::Boolean(sv.proxy_protocol)),
                ("worker_threads", n(sv.worker_threads)),
                ("conformance_echo", Value::Boolean(sv.conformance_echo)),
            ]),
        );
        t.insert("admin".into(), table([("listen", s(self.admin.listen))]));
        let mut redis = table([
            ("mode", s(r.topology.mode().name())),
            ("url", s(mask_url_password(&r.url))),
            ("channel_prefix", s(&r.channel_prefix)),
            ("timeout", d(r.timeout)),
            ("ping_interval", d(r.ping_interval)),
            ("reconnect_min", d(r.reconnect_min)),
            ("reconnect_max", d(r.reconnect_max)),
            ("probe_interval", d(r.probe_interval)),
            ("probe_timeout", d(r.probe_timeout)),
        ]);
        put_optional(
            &mut redis,
            [
                ("username", r.username.clone()),
                ("password", r.password.as_ref().map(|_| "***".to_string())),
                (
                    "ca_file",
                    r.ca_file.as_ref().map(|p| p.display().to_string()),
                ),
            ],
        );
        topology(&mut redis, &r.topology);
        t.insert("redis".into(), redis);
        t.insert(
            "client".into(),
            table([
                ("max_message_bytes", n(c.max_message_bytes)),
                ("max_subscriptions", n(c.max_subscriptions)),
                ("queue_max_bytes", n(c.queue_max_bytes)),
                ("ping_interval", d(c.ping_interval)),
                ("idle_timeout", d(c.idle_timeout)),
                ("write_timeout", d(c.write_timeout)),
                ("allowed_origins", list(&c.allowed_origins)),
                ("max_connections_per_ip", n(c.max_connections_per_ip)),
                ("rate_limit", Value::Float(c.rate_limit)),
                ("rate_burst", n(c.rate_burst as usize)),
            ]),
        );
        let mut channels = table([("name_pattern", s(&self.channels.name_pattern_source))]);
        if let Value::Table(ch) = &mut channels {
            ch.insert(
                "rules".into(),
                Value::Array(self.channels.rules.iter().map(rule).collect()),
            );
        }
        t.insert("channels".into(), channels);
        if let Some(tls) = &self.tls {
            t.insert(
                "tls".into(),
                table([
                    ("cert", s(tls.cert.display())),
                    ("key", s(tls.key.display())),
                    ("watch_interval", d(tls.watch_interval)),
                    ("session_tickets", Value::Boolean(tls.session_tickets)),
                ]),
            );
        }
        let mut auth = table([
            ("algorithms", list(&a.algorithms)),
            ("leeway", d(a.leeway)),
            ("cookie_name", s(&a.cookie_name)),
            ("required", Value::Boolean(a.required)),
            ("audience", list(&a.audience)),
        ]);
        put_optional(
            &mut auth,
            [
                (
                    "hmac_secret",
                    a.hmac_secret.as_ref().map(|_| "***".to_string()),
                ),
                (
                    "public_key_file",
                    a.public_key_file.as_ref().map(|p| p.display().to_string()),
                ),
                (
                    "jwks_file",
                    a.jwks_file.as_ref().map(|p| p.display().to_string()),
                ),
                ("issuer", a.issuer.clone()),
            ],
        );
        t.insert("auth".into(), auth);
        let h = &self.history;
        t.insert(
            "history".into(),
            table([
                ("max_replay", n(h.max_replay)),
                ("max_reads", n(h.max_reads)),
                ("read_timeout", d(h.read_timeout)),
            ]),
        );
        let format = if self.log.format == LogFormat::Json {
            "json"
        } else {
            "text"
        };
        t.insert(
            "log".into(),
            table([("format", s(format)), ("level", s(&self.log.level))]),
        );
        toml::to_string(&t).unwrap_or_default()
    }
}
