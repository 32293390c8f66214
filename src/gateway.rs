//! Wiring: binds the listeners and starts the broker, the public server
//! and the admin server as tasks of one [`Gateway`], which also owns the
//! graceful shutdown sequence.

use crate::admin::{Admin, Readiness};
use crate::broker::Broker;
use crate::config::Settings;
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::server::Server;
use crate::session::SessionContext;
use anyhow::Context;
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A running gateway.
pub struct Gateway {
    /// Where the public (WebSocket) listener is bound.
    pub ws_addr: SocketAddr,
    /// Where the admin listener is bound.
    pub admin_addr: SocketAddr,
    settings: Arc<Settings>,
    /// Cancelled to start draining: stop accepting, close sessions.
    draining: CancellationToken,
    /// Cancelled after draining: stops the broker and the admin server.
    stop: CancellationToken,
    sessions: TaskTracker,
    background: TaskTracker,
}

impl Gateway {
    /// Binds both listeners and starts every task.
    pub async fn start(settings: Settings) -> anyhow::Result<Gateway> {
        let settings = Arc::new(settings);
        let ws_listener = TcpListener::bind(settings.server.listen)
            .await
            .with_context(|| {
                format!(
                    "cannot listen on server.listen = {}",
                    settings.server.listen
                )
            })?;
        let admin_listener = TcpListener::bind(settings.admin.listen)
            .await
            .with_context(|| {
                format!("cannot listen on admin.listen = {}", settings.admin.listen)
            })?;
        let metrics = Arc::new(Metrics::default());
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let hub = Arc::new(Hub::new(metrics.clone()));
        let broker = Broker::new(settings.redis.clone(), hub.clone(), metrics.clone());
        let gateway = Gateway {
            ws_addr: ws_listener.local_addr()?,
            admin_addr: admin_listener.local_addr()?,
            settings: settings.clone(),
            draining: CancellationToken::new(),
            stop: CancellationToken::new(),
            sessions: TaskTracker::new(),
            background: TaskTracker::new(),
        };
        let admin = Arc::new(Admin {
            readiness: Readiness {
                broker: broker.state(),
                hub: hub.clone(),
                draining: gateway.draining.clone(),
            },
            registry,
        });
        let session = Arc::new(SessionContext {
            settings,
            hub,
            metrics,
            shutdown: gateway.draining.clone(),
        });
        let server = Server::new(session, gateway.sessions.clone());
        gateway.background.spawn(broker.run(gateway.stop.clone()));
        gateway.background.spawn(admin.run(
            admin_listener,
            gateway.stop.clone(),
            gateway.background.clone(),
        ));
        gateway.sessions.spawn(server.run(ws_listener));
        tracing::info!(listen = %gateway.ws_addr, admin = %gateway.admin_addr, "redcast started");
        Ok(gateway)
    }

    /// A token that starts the shutdown when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.draining.clone()
    }

    /// Waits until something cancels the shutdown token, then drains.
    pub async fn run_until_shutdown(self) {
        self.draining.cancelled().await;
        self.shutdown().await;
    }

    /// Graceful shutdown: readiness fails and the listener stops at once,
    /// sessions close with 1001, and whatever is left after
    /// `server.drain_timeout` is abandoned.
    pub async fn shutdown(self) {
        self.draining.cancel();
        self.sessions.close();
        let deadline = self.settings.server.drain_timeout;
        if tokio::time::timeout(deadline, self.sessions.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                ?deadline,
                "drain deadline passed; abandoning remaining sessions"
            );
        }
        self.stop.cancel();
        self.background.close();
        let _ = tokio::time::timeout(deadline, self.background.wait()).await;
        tracing::info!("redcast stopped");
    }
}
