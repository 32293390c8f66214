//! The reloadable part of the configuration. [`Live`] pairs the settings
//! with the security policy built from them; a reload (SIGHUP, e.g.
//! `systemctl reload redcast`) validates a new configuration completely, then swaps it in
//! atomically, so every new check (handshakes, subscribes, publishes)
//! sees either the old or the new whole. Open connections stay open.
//!
//! Reloaded: channel rules, JWT keys and settings, origins, client limits,
//! handshake limits, trusted proxies and the PROXY protocol (both read per
//! new connection), the drain window and the TLS certificate (re-read
//! from the same files), and `history.max_replay` (the Redis Function
//! library follows the rules: reloaded into Redis at once). Read once at start (a change is logged, the
//! running value kept, and a restart needed): listen addresses, every
//! `[redis]` key (the topology included), TLS file paths, watch interval
//! and `tls.session_tickets`, `drain_timeout`, `server.worker_threads`,
//! `history.max_reads` and `history.read_timeout`, and `[log]`. A reload
//! also rotates the TLS session ticket keys.

use crate::auth::{KeyLoadError, Policy};
use crate::config::Settings;
use crate::tls::CertStore;
use arc_swap::ArcSwap;
use std::sync::Arc;

/// Settings and the policy built from them.
pub struct Live {
    pub settings: Settings,
    pub policy: Policy,
}

impl Live {
    /// Validates key material and builds the policy.
    pub fn new(settings: Settings) -> Result<Live, KeyLoadError> {
        let policy = Policy::from_settings(&settings)?;
        Ok(Live { settings, policy })
    }
}

/// Why a reload was refused (the running configuration stays).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Keys(#[from] KeyLoadError),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
}

/// Swaps in new configurations.
#[derive(Clone)]
pub struct Reloader {
    live: Arc<ArcSwap<Live>>,
    certs: Option<Arc<CertStore>>,
    /// Told after each reload (the durable channels' library follows the rules).
    reloaded: Arc<tokio::sync::Notify>,
}

impl Reloader {
    pub fn new(live: Arc<ArcSwap<Live>>, certs: Option<Arc<CertStore>>) -> Self {
        Self {
            live,
            certs,
            reloaded: Arc::default(),
        }
    }

    /// Told after each applied reload.
    pub fn reloaded(&self) -> Arc<tokio::sync::Notify> {
        self.reloaded.clone()
    }

    /// Whether the public listener terminates TLS.
    pub fn has_tls(&self) -> bool {
        self.certs.is_some()
    }

    /// Applies a new configuration, or refuses it whole.
    pub fn apply(&self, mut settings: Settings) -> Result<(), ReloadError> {
        let running = self.live.load_full();
        for key in restart_only_changes(&running.settings, &settings) {
            tracing::warn!(
                key,
                "changed in the configuration but needs a restart; keeping the running value"
            );
        }
        keep_restart_only(&running.settings, &mut settings);
        let next = Live::new(settings)?;
        // Certificates last: nothing is swapped unless everything loaded.
        if let Some(certs) = &self.certs {
            certs.reload()?;
            certs.rotate_tickets()?;
        }
        self.live.store(Arc::new(next));
        self.reloaded.notify_one();
        tracing::info!("configuration reloaded");
        Ok(())
    }
}

/// Puts the running values back into the keys that are read at start, so
/// that the live settings always describe what actually runs.
fn keep_restart_only(running: &Settings, next: &mut Settings) {
    next.server.listen = running.server.listen;
    next.server.drain_timeout = running.server.drain_timeout;
    next.server.worker_threads = running.server.worker_threads;
    next.admin = running.admin.clone();
    next.redis = running.redis.clone();
    next.tls = running.tls.clone();
    next.log = running.log.clone();
    next.history.max_reads = running.history.max_reads;
    next.history.read_timeout = running.history.read_timeout;
}

/// Keys that differ but are only read at start.
fn restart_only_changes(old: &Settings, new: &Settings) -> Vec<&'static str> {
    let (o, n) = (&old.redis, &new.redis);
    let tls = |s: &Settings| {
        s.tls.as_ref().map(|t| {
            (
                t.cert.clone(),
                t.key.clone(),
                t.watch_interval,
                t.session_tickets,
            )
        })
    };
    let changes = [
        ("server.listen", old.server.listen != new.server.listen),
        (
            "server.drain_timeout",
            old.server.drain_timeout != new.server.drain_timeout,
        ),
        (
            "server.worker_threads",
            old.server.worker_threads != new.server.worker_threads,
        ),
        ("admin.listen", old.admin.listen != new.admin.listen),
        ("redis.url", o.url != n.url),
        ("redis.username", o.username != n.username),
        ("redis.password", o.password != n.password),
        ("redis.ca_file", o.ca_file != n.ca_file),
        ("redis.channel_prefix", o.channel_prefix != n.channel_prefix),
        (
            "redis (mode, sentinels, cluster nodes)",
            o.topology != n.topology,
        ),
        (
            "redis (timeouts, intervals)",
            (
                o.timeout,
                o.ping_interval,
                o.reconnect_min,
                o.reconnect_max,
                o.probe_interval,
                o.probe_timeout,
            ) != (
                n.timeout,
                n.ping_interval,
                n.reconnect_min,
                n.reconnect_max,
                n.probe_interval,
                n.probe_timeout,
            ),
        ),
        ("tls", tls(old) != tls(new)),
        (
            "history (max_reads, read_timeout)",
            (old.history.max_reads, old.history.read_timeout)
                != (new.history.max_reads, new.history.read_timeout),
        ),
        (
            "log",
            (old.log.format, &old.log.level) != (new.log.format, &new.log.level),
        ),
    ];
    changes
        .into_iter()
        .filter(|(_, changed)| *changed)
        .map(|(key, _)| key)
        .collect()
}
