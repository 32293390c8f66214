//! The admin listener: `/healthz` (the process is alive), `/readyz` (this
//! instance delivers: every Redis pub/sub connection is up, its own probe
//! messages come back through each, every channel with local subscribers
//! is confirmed, and it is not shutting down; a failure names the node) and `/metrics`
//! (Prometheus text format). It keeps serving while the gateway drains,
//! so that load balancers see readiness fail before clients are closed.

use crate::broker::BrokerState;
use crate::handshake::{text, Body};
use crate::hub::Hub;
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Concurrent admin connections; more wait for a free place.
pub const MAX_ADMIN_CONNECTIONS: usize = 64;
/// Longest life of one admin connection (scrapers reconnect).
pub const ADMIN_CONNECTION_TIMEOUT: Duration = Duration::from_secs(60);

/// What readiness looks at.
pub struct Readiness {
    pub broker: Arc<BrokerState>,
    pub hub: Arc<Hub>,
    /// Cancelled when the gateway starts draining.
    pub draining: CancellationToken,
}

impl Readiness {
    /// `Ok` when this instance delivers; else a one-line reason.
    pub fn check(&self) -> Result<(), String> {
        if self.draining.is_cancelled() {
            return Err("shutting down".into());
        }
        self.broker.check()?;
        match self.hub.unconfirmed() {
            0 => Ok(()),
            n => Err(format!(
                "{n} channel(s) not yet confirmed subscribed in redis"
            )),
        }
    }
}

/// The admin endpoints' shared state.
pub struct Admin {
    pub readiness: Readiness,
    pub registry: Registry,
    /// The public listener's tasks, counted into `connection_tasks` at
    /// each scrape.
    pub connection_tasks: (TaskTracker, prometheus_client::metrics::gauge::Gauge),
}

impl Admin {
    /// Serves until `stop` is cancelled.
    pub async fn run(
        self: Arc<Self>,
        listener: TcpListener,
        stop: CancellationToken,
        tracker: TaskTracker,
    ) {
        let permits = Arc::new(Semaphore::new(MAX_ADMIN_CONNECTIONS));
        loop {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return;
            };
            let accepted = tokio::select! {
                _ = stop.cancelled() => return,
                r = listener.accept() => r,
            };
            let Ok((stream, _)) = accepted else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let admin = self.clone();
            let stop = stop.clone();
            tracker.spawn(async move {
                let _permit = permit;
                let service = hyper::service::service_fn(move |req| {
                    let admin = admin.clone();
                    async move { Ok::<_, std::convert::Infallible>(admin.route(&req)) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service);
                tokio::select! {
                    _ = stop.cancelled() => {}
                    _ = tokio::time::timeout(ADMIN_CONNECTION_TIMEOUT, conn) => {}
                }
            });
        }
    }

    fn route(&self, req: &Request<Incoming>) -> Response<Body> {
        match req.uri().path() {
            "/healthz" => text(StatusCode::OK, "ok"),
            "/readyz" => match self.readiness.check() {
                Ok(()) => text(StatusCode::OK, "ready"),
                Err(reason) => owned_text(StatusCode::SERVICE_UNAVAILABLE, reason),
            },
            "/metrics" => self.metrics(req.headers()),
            _ => text(StatusCode::NOT_FOUND, "not found"),
        }
    }

    /// OpenMetrics when the scraper asks for it (Prometheus does), else
    /// Prometheus text format 0.0.4 (curl, promtool, older agents).
    fn metrics(&self, headers: &hyper::HeaderMap) -> Response<Body> {
        let (tasks, gauge) = &self.connection_tasks;
        gauge.set(tasks.len() as i64);
        let mut body = String::new();
        if prometheus_client::encoding::text::encode(&mut body, &self.registry).is_err() {
            return text(StatusCode::INTERNAL_SERVER_ERROR, "metrics encoding failed");
        }
        let accept = headers
            .get(hyper::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let (body, content_type) = if accept.contains("application/openmetrics-text") {
            (
                body,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )
        } else {
            (
                crate::metrics::to_prometheus_text(&body),
                "text/plain; version=0.0.4; charset=utf-8",
            )
        };
        let mut resp = text(StatusCode::OK, body);
        resp.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            HeaderValue::from_static(content_type),
        );
        resp
    }
}

fn owned_text(status: StatusCode, body: String) -> Response<Body> {
    text(status, body + "\n")
}
