//! The reloadable part of the configuration. [`Live`] pairs the settings
//! with the security policy built from them; a reload (SIGHUP, `redcast
//! reload`) validates a new configuration completely, then swaps it in
//! atomically, so every new check (handshakes, subscribes, publishes)
//! sees either the old or the new whole. Open connections stay open.
//!
//! Reloaded: channel rules, JWT keys and settings, origins, client limits
//! and the TLS certificate. Read once at start (a change is logged and
//! needs a restart): listen addresses, Redis settings, handshake and drain
//! settings, log format.

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
}

impl Reloader {
    pub fn new(live: Arc<ArcSwap<Live>>, certs: Option<Arc<CertStore>>) -> Self {
        Self { live, certs }
    }

    /// Whether the public listener terminates TLS.
    pub fn has_tls(&self) -> bool {
        self.certs.is_some()
    }

    /// Applies a new configuration, or refuses it whole.
    pub fn apply(&self, settings: Settings) -> Result<(), ReloadError> {
        let next = Live::new(settings)?;
        for key in restart_only_changes(&self.live.load().settings, &next.settings) {
            tracing::warn!(
                key,
                "changed in the configuration but needs a restart; keeping the running value"
            );
        }
        // Certificates last: nothing is swapped unless everything loaded.
        if let Some(certs) = &self.certs {
            certs.reload()?;
        }
        self.live.store(Arc::new(next));
        tracing::info!("configuration reloaded");
        Ok(())
    }
}

/// Keys that differ but are only read at start.
fn restart_only_changes(old: &Settings, new: &Settings) -> Vec<&'static str> {
    let mut out = Vec::new();
    let mut check = |key, changed: bool| {
        if changed {
            out.push(key);
        }
    };
    check("server.listen", old.server.listen != new.server.listen);
    check("admin.listen", old.admin.listen != new.admin.listen);
    check("redis.url", old.redis.url != new.redis.url);
    check(
        "redis.channel_prefix",
        old.redis.channel_prefix != new.redis.channel_prefix,
    );
    check(
        "server.max_pending_handshakes",
        old.server.max_pending_handshakes != new.server.max_pending_handshakes,
    );
    check(
        "tls",
        old.tls.as_ref().map(|t| (&t.cert, &t.key)) != new.tls.as_ref().map(|t| (&t.cert, &t.key)),
    );
    check("log.format", old.log.format != new.log.format);
    out
}
