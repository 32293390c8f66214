//! Wiring: binds the listeners and starts the broker, the publisher, the
//! public server, the admin server and the certificate watcher as tasks of
//! one [`Gateway`], which also owns reloads and the shutdown sequence.

use crate::admin::{Admin, Readiness};
use crate::config::{RedisSettings, Settings};
use crate::fanout::{self, Shards};
use crate::history::keeper::Keeper;
use crate::history::store::Store;
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::reload::{Live, Reloader};
use crate::server::Server;
use crate::session::SessionContext;
use crate::tls::CertStore;
use anyhow::Context;
use arc_swap::ArcSwap;
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A running gateway.
pub struct Gateway {
    /// Where the public (WebSocket) listener is bound.
    pub ws_addr: SocketAddr,
    /// Where the admin listener is bound.
    pub admin_addr: SocketAddr,
    reloader: Reloader,
    drain_timeout: Duration,
    /// Cancelled to start draining: stop accepting, close sessions.
    draining: CancellationToken,
    /// Cancelled after draining: stops the broker and the admin server.
    stop: CancellationToken,
    sessions: TaskTracker,
    background: TaskTracker,
}

/// Pending connections the kernel may hold for accept (capped by
/// net.core.somaxconn). A connection storm must not overflow it, or
/// clients wait for their SYN retry (a second or more).
pub const LISTEN_BACKLOG: u32 = 4096;

fn bind(addr: SocketAddr, key: &str) -> anyhow::Result<TcpListener> {
    let bind = || -> std::io::Result<TcpListener> {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        socket.listen(LISTEN_BACKLOG)
    };
    bind().with_context(|| format!("cannot listen on {key} = {addr}"))
}

impl Gateway {
    /// Loads key material, binds both listeners and starts every task.
    pub async fn start(settings: Settings) -> anyhow::Result<Gateway> {
        // One crypto provider for every rustls user (server TLS, rediss://).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let certs = settings.tls.clone().map(CertStore::new).transpose()?;
        let tls = certs
            .as_ref()
            .map(|c| c.server_config().map(tokio_rustls::TlsAcceptor::from))
            .transpose()?;
        let ws_listener = bind(settings.server.listen, "server.listen")?;
        let admin_listener = bind(settings.admin.listen, "admin.listen")?;
        let redis = settings.redis.clone();
        let shards = settings.server.worker_threads;
        let drain_timeout = settings.server.drain_timeout;
        let live = Arc::new(ArcSwap::from_pointee(Live::new(settings)?));
        let gateway = Gateway {
            ws_addr: ws_listener.local_addr()?,
            admin_addr: admin_listener.local_addr()?,
            reloader: Reloader::new(live.clone(), certs.clone()),
            drain_timeout,
            draining: CancellationToken::new(),
            stop: CancellationToken::new(),
            sessions: TaskTracker::new(),
            background: TaskTracker::new(),
        };
        let (session, admin) = gateway.spawn_core(redis, live, shards)?;
        gateway.background.spawn(admin.run(
            admin_listener,
            gateway.stop.clone(),
            gateway.background.clone(),
        ));
        if let Some(certs) = certs {
            gateway.background.spawn(certs.watch(gateway.stop.clone()));
        }
        let server = Server::new(session, gateway.sessions.clone(), tls);
        gateway.sessions.spawn(server.run(ws_listener));
        tracing::info!(listen = %gateway.ws_addr, admin = %gateway.admin_addr, tls = gateway.reloader.has_tls(), "redcast started");
        Ok(gateway)
    }

    /// Starts the Redis side (feeds, publisher); returns what the
    /// sessions share and the admin endpoints.
    fn spawn_core(
        &self,
        redis: RedisSettings,
        live: Arc<ArcSwap<Live>>,
        shards: usize,
    ) -> anyhow::Result<(Arc<SessionContext>, Arc<Admin>)> {
        let metrics = Arc::new(Metrics::default());
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        // One fan-out shard per worker thread; they run until the broker
        // stops (after the sessions drained).
        let (shards, queues) = Shards::new(shards, metrics.clone());
        for queue in queues {
            let stop = self.stop.clone();
            self.background
                .spawn(fanout::run_shard(queue, metrics.clone(), stop));
        }
        let hub = Arc::new(Hub::new(metrics.clone(), shards));
        let broker = crate::broker::start(
            &redis,
            hub.clone(),
            metrics.clone(),
            &self.background,
            &self.stop,
        )
        .context("cannot start the redis side")?;
        let keeper = Keeper::new(
            broker.commands.clone(),
            live.clone(),
            broker.state.clone(),
            self.reloader.reloaded(),
        );
        self.background.spawn(keeper.clone().run(self.stop.clone()));
        let h = &live.load().settings.history;
        let history = Arc::new(Store::new(
            broker.commands,
            keeper,
            h.max_reads,
            h.read_timeout,
        ));
        crate::history::catch_up::install(&hub, history.clone(), live.clone(), metrics.clone());
        let readiness = Readiness {
            broker: broker.state,
            hub: hub.clone(),
            draining: self.draining.clone(),
        };
        let session = Arc::new(SessionContext {
            live,
            hub,
            metrics,
            publisher: broker.publisher,
            history,
            shutdown: self.draining.clone(),
        });
        let admin = Arc::new(Admin {
            readiness,
            registry,
            connection_tasks: (
                self.sessions.clone(),
                session.metrics.connection_tasks.clone(),
            ),
        });
        Ok((session, admin))
    }

    /// Applies new settings to the running gateway (see [`crate::reload`]).
    pub fn reloader(&self) -> Reloader {
        self.reloader.clone()
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
        let deadline = self.drain_timeout;
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
