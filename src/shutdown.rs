//! Process signals: SIGTERM and SIGINT start a graceful shutdown; SIGHUP
//! reloads the configuration.

use tokio::signal::unix::{signal, SignalKind};

/// Resolves with the signal's name when SIGTERM or SIGINT arrives.
pub async fn terminated() -> std::io::Result<&'static str> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}

/// Calls `reload` on every SIGHUP, for the life of the process.
pub async fn on_hangup(mut reload: impl FnMut()) {
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::error!("cannot watch SIGHUP; reload needs a restart");
        return;
    };
    while hup.recv().await.is_some() {
        tracing::info!(signal = "SIGHUP", "reloading configuration");
        reload();
    }
}
