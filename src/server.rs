//! The public listener: accepts TCP, runs each HTTP handshake in the
//! connection's own task under `server.handshake_timeout`, and upgrades
//! `GET /ws` to a WebSocket [`session`](crate::session).
//!
//! The accept loop never waits on a peer and never exits on an accept
//! error (EMFILE and friends are logged and retried after a short pause).
//! Two limits protect it: `server.max_pending_handshakes` (excess TCP
//! connections are closed at once) and `server.max_connections` (excess
//! upgrades get HTTP 503).

use crate::hub::Format;
use crate::session::{self, SessionContext, SessionParams};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use prometheus_client::metrics::gauge::Gauge;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_util::task::TaskTracker;
use tungstenite::protocol::{Role, WebSocketConfig};

/// The subprotocol redcast speaks, echoed when a client offers it.
pub const SUBPROTOCOL: &str = "redcast.v1";

/// Pause after a failed accept (e.g. out of file descriptors), so the loop
/// does not spin while the condition lasts.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

type Body = Full<Bytes>;

/// State shared by the accept loop and every connection task.
pub struct Server {
    pub session: Arc<SessionContext>,
    pub tracker: TaskTracker,
    open: Arc<AtomicUsize>,
    pending: Arc<AtomicUsize>,
    next_id: AtomicU64,
}

/// A taken place under a limit; gives it back (counter and gauge) on drop.
struct Permit {
    counter: Arc<AtomicUsize>,
    gauge: Gauge,
}

impl Permit {
    /// Takes a place if fewer than `max` are taken.
    fn try_take(counter: &Arc<AtomicUsize>, gauge: &Gauge, max: usize) -> Option<Permit> {
        counter
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1))
            .ok()?;
        gauge.inc();
        Some(Permit { counter: counter.clone(), gauge: gauge.clone() })
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.counter.fetch_sub(1, Ordering::AcqRel);
        self.gauge.dec();
    }
}

impl Server {
    /// A server whose sessions share `session`.
    pub fn new(session: Arc<SessionContext>, tracker: TaskTracker) -> Arc<Self> {
        Arc::new(Self {
            session,
            tracker,
            open: Arc::default(),
            pending: Arc::default(),
            next_id: AtomicU64::new(1),
        })
    }

    /// Accepts connections until shutdown.
    pub async fn run(self: Arc<Self>, listener: TcpListener) {
        let shutdown = self.session.shutdown.clone();
        loop {
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = listener.accept() => r,
            };
            match accepted {
                Ok((stream, peer)) => {
                    let server = self.clone();
                    self.tracker.spawn(async move { server.handle(stream, peer).await });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed; retrying");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                }
            }
        }
    }

    /// Runs one connection's HTTP handshake under the timeout.
    async fn handle(self: Arc<Self>, stream: TcpStream, peer: SocketAddr) {
        let settings = &self.session.settings.server;
        let metrics = &self.session.metrics;
        let Some(_permit) = Permit::try_take(&self.pending, &metrics.handshakes_pending, settings.max_pending_handshakes) else {
            metrics.rejected("handshake_limit");
            return;
        };
        let _ = stream.set_nodelay(true);
        let server = self.clone();
        let service = hyper::service::service_fn(move |req| {
            let server = server.clone();
            async move { Ok::<_, std::convert::Infallible>(server.route(req, peer)) }
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .max_buf_size(16 * 1024)
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        tokio::select! {
            _ = self.session.shutdown.cancelled() => {}
            r = tokio::time::timeout(settings.handshake_timeout, conn) => {
                if r.is_err() {
                    metrics.rejected("handshake_timeout");
                }
            }
        }
    }

    fn route(self: &Arc<Self>, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        match req.uri().path() {
            "/ws" => self.upgrade(req, peer).unwrap_or_else(|r| r),
            _ => text(StatusCode::NOT_FOUND, "not found"),
        }
    }

    /// Validates an upgrade request and, when it is good, answers 101 and
    /// starts the session once hyper hands over the connection.
    fn upgrade(self: &Arc<Self>, mut req: Request<Incoming>, peer: SocketAddr) -> Result<Response<Body>, Response<Body>> {
        let metrics = &self.session.metrics;
        let key = check_upgrade(&req).inspect_err(|_| metrics.rejected("bad_handshake"))?;
        let params = self.session_params(req.uri().query().unwrap_or("")).inspect_err(|_| metrics.rejected("bad_request"))?;
        let settings = &self.session.settings;
        let Some(permit) = Permit::try_take(&self.open, &metrics.connections_open, settings.server.max_connections) else {
            metrics.rejected("max_connections");
            return Err(text(StatusCode::SERVICE_UNAVAILABLE, "server is at its connection limit; retry later"));
        };
        let subprotocol = offered_subprotocol(req.headers());
        let on_upgrade = hyper::upgrade::on(&mut req);
        let server = self.clone();
        let timeout = settings.server.handshake_timeout;
        let ws_config = WebSocketConfig::default()
            .read_buffer_size(4096)
            .write_buffer_size(16 * 1024)
            .max_message_size(Some(settings.client.max_message_bytes))
            .max_frame_size(Some(settings.client.max_message_bytes));
        self.tracker.spawn(async move {
            let _permit = permit;
            let Ok(Ok(upgraded)) = tokio::time::timeout(timeout, on_upgrade).await else {
                return;
            };
            server.session.metrics.connections_accepted.inc();
            tracing::debug!(%peer, id = params.id, "websocket open");
            let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(ws_config)).await;
            session::run(ws, server.session.clone(), params).await;
        });
        let mut resp = Response::new(Body::default());
        *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = resp.headers_mut();
        h.insert(hyper::header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(hyper::header::CONNECTION, HeaderValue::from_static("Upgrade"));
        if let Ok(v) = HeaderValue::from_str(&tungstenite::handshake::derive_accept_key(key.as_bytes())) {
            h.insert(hyper::header::SEC_WEBSOCKET_ACCEPT, v);
        }
        if subprotocol {
            h.insert(hyper::header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(SUBPROTOCOL));
        }
        Ok(resp)
    }

    /// Reads `channel` and `format` from the query; errors are 400s.
    fn session_params(&self, query: &str) -> Result<SessionParams, Response<Body>> {
        let settings = &self.session.settings;
        let mut format = Format::Envelope;
        let mut channels = Vec::new();
        let mut seen = HashSet::new();
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            match &*k {
                "channel" => {
                    if !settings.channels.is_valid_name(&v) {
                        return Err(text(StatusCode::BAD_REQUEST, "invalid channel name"));
                    }
                    if seen.insert(v.clone()) {
                        channels.push(v.into_owned());
                    }
                }
                "format" => {
                    format = match &*v {
                        "json" => Format::Envelope,
                        "raw" => Format::Raw,
                        _ => return Err(text(StatusCode::BAD_REQUEST, "format must be json or raw")),
                    }
                }
                _ => {}
            }
        }
        if format == Format::Raw && channels.is_empty() {
            return Err(text(StatusCode::BAD_REQUEST, "format=raw needs at least one channel"));
        }
        if channels.len() > settings.client.max_subscriptions {
            return Err(text(StatusCode::BAD_REQUEST, "too many channels"));
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        Ok(SessionParams { id, format, channels })
    }
}

/// Checks RFC 6455 section 4.2.1; returns the client's key.
fn check_upgrade(req: &Request<Incoming>) -> Result<String, Response<Body>> {
    let h = req.headers();
    let has_token = |name, token: &str| {
        h.get_all(name).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    if !has_token(hyper::header::UPGRADE, "websocket") {
        let mut resp = text(StatusCode::UPGRADE_REQUIRED, "this endpoint needs a WebSocket upgrade");
        resp.headers_mut().insert(hyper::header::UPGRADE, HeaderValue::from_static("websocket"));
        return Err(resp);
    }
    if req.method() != Method::GET || req.version() < hyper::Version::HTTP_11 {
        return Err(text(StatusCode::BAD_REQUEST, "a WebSocket upgrade must be an HTTP/1.1 GET"));
    }
    if !has_token(hyper::header::CONNECTION, "upgrade") {
        return Err(text(StatusCode::BAD_REQUEST, "missing `Connection: Upgrade`"));
    }
    if h.get(hyper::header::SEC_WEBSOCKET_VERSION).map(|v| v.as_bytes()) != Some(b"13") {
        let mut resp = text(StatusCode::UPGRADE_REQUIRED, "unsupported Sec-WebSocket-Version; use 13");
        resp.headers_mut().insert(hyper::header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        return Err(resp);
    }
    let key = h.get(hyper::header::SEC_WEBSOCKET_KEY).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !is_valid_key(key) {
        return Err(text(StatusCode::BAD_REQUEST, "missing or malformed Sec-WebSocket-Key"));
    }
    Ok(key.to_string())
}

/// A key is the base64 of 16 bytes: 22 characters and `==`.
fn is_valid_key(key: &str) -> bool {
    let b = key.as_bytes();
    b.len() == 24
        && b[22..] == *b"=="
        && b[..22].iter().all(|c| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/')
}

fn offered_subprotocol(h: &HeaderMap) -> bool {
    h.get_all(hyper::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == SUBPROTOCOL)
}

/// A short plain-text response.
pub fn text(status: StatusCode, msg: &'static str) -> Response<Body> {
    let mut resp = Response::new(Body::new(Bytes::from_static(msg.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(hyper::header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    resp
}

