//! Process signals: SIGTERM and SIGINT start a graceful shutdown; SIGHUP
//! reloads the configuration. Handlers are installed before the gateway
//! announces that it started, so an early signal is never fatal.

use tokio::signal::unix::{signal, Signal, SignalKind};

/// SIGTERM and SIGINT, installed.
pub struct Termination {
    term: Signal,
    int: Signal,
}

impl Termination {
    /// Installs the handlers now.
    pub fn install() -> std::io::Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Resolves with the signal's name when one arrives.
    pub async fn recv(mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

/// SIGHUP, installed.
pub struct Hangup(Signal);

impl Hangup {
    /// Installs the handler now.
    pub fn install() -> std::io::Result<Self> {
        Ok(Self(signal(SignalKind::hangup())?))
    }

    /// Calls `reload` on every SIGHUP, for the life of the process.
    pub async fn each(mut self, mut reload: impl FnMut()) {
        while self.0.recv().await.is_some() {
            tracing::info!(signal = "SIGHUP", "reloading configuration");
            reload();
        }
    }
}

/// When one client closes during a drain: a uniform point in the drain
/// window, so that clients do not all reconnect elsewhere at once.
pub fn drain_moment(window: std::time::Duration) -> tokio::time::Instant {
    tokio::time::Instant::now() + window.mul_f64(rand::random::<f64>())
}
