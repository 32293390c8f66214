//! Keeps the Function library in place on Redis (every master of a
//! cluster): checked at start, after a reload, whenever a pub/sub link is
//! made (the node may have restarted without its data), on a read that
//! finds it missing, and every `redis.ping_interval`. A missing library or
//! another version is (re)loaded; a failure shows in readiness.

use super::library::Library;
use crate::broker::commands::{is_lost, Commands};
use crate::broker::BrokerState;
use crate::reload::Live;
use arc_swap::ArcSwap;
use std::sync::Arc;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Loads and checks the library.
pub struct Keeper {
    commands: Arc<Commands>,
    live: Arc<ArcSwap<Live>>,
    state: Arc<BrokerState>,
    /// Told after a reload.
    reloaded: Arc<Notify>,
}

impl Keeper {
    pub fn new(
        commands: Arc<Commands>,
        live: Arc<ArcSwap<Live>>,
        state: Arc<BrokerState>,
        reloaded: Arc<Notify>,
    ) -> Arc<Keeper> {
        Arc::new(Keeper {
            commands,
            live,
            state,
            reloaded,
        })
    }

    /// Checks on every occasion until `stop`.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let interval = self.live.load().settings.redis.ping_interval;
        loop {
            let result = self.ensure().await;
            self.state.set_library(result.err());
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = self.reloaded.notified() => {}
                _ = self.state.linked.notified() => {}
                _ = tokio::time::sleep(interval) => {}
            }
        }
    }

    /// Makes sure every master holds this configuration's library.
    pub async fn ensure(&self) -> Result<(), String> {
        let live = self.live.load_full();
        if !live.settings.channels.any_durable() {
            return Ok(());
        }
        let library = Library::generate(&live.settings).map_err(|e| e.to_string())?;
        let (mut conn, generation) = self.commands.conn().await.ok_or("redis is unavailable")?;
        let version = redis::cmd("FCALL").arg("redcast_version").arg(0).to_owned();
        match conn.on_masters(&version, true).await {
            Ok(redis::Value::Array(found)) if holds(&found, &library.version) => return Ok(()),
            Err(e) if is_lost(&e) => {
                self.commands.lost(generation).await;
                return Err(format!("redis connection lost: {e}"));
            }
            // Missing on some node ("Function not found"), or another version.
            _ => {}
        }
        let load = redis::cmd("FUNCTION")
            .arg("LOAD")
            .arg("REPLACE")
            .arg(&library.code)
            .to_owned();
        if let Err(e) = conn.on_masters(&load, false).await {
            if is_lost(&e) {
                self.commands.lost(generation).await;
            }
            tracing::error!(error = %e, "cannot load the redis function library for durable channels");
            return Err(format!("cannot load it: {e}"));
        }
        tracing::info!(version = %library.version, "redis function library for durable channels loaded");
        Ok(())
    }
}

/// Whether every node answered with this version.
fn holds(found: &[redis::Value], version: &str) -> bool {
    !found.is_empty()
        && found
            .iter()
            .all(|v| matches!(v, redis::Value::BulkString(b) if b == version.as_bytes()))
}
