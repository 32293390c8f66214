//! The public listener: accepts TCP, runs each handshake (a PROXY header
//! from trusted proxies when configured, TLS, then HTTP) in the
//! connection's own task under `server.handshake_timeout`,
//! and upgrades `GET /ws` to a WebSocket [`session`](crate::session::run)
//! (and `GET /echo`, with `server.conformance_echo`, to an echoing one).
//!
//! The accept loop never waits on a peer and never exits on an accept
//! error (EMFILE and friends are logged and retried after a short pause).
//! Limits: `server.max_pending_handshakes` (excess TCP connections are
//! closed at once), `server.max_connections` (HTTP 503) and
//! `client.max_connections_per_ip` (HTTP 429).

mod limits;
mod plain;
mod proxy;
mod upgrade;

use crate::assets;
use crate::handshake::{self, Body, Refusal};
use crate::session::SessionContext;
use crate::sse::{self, StreamParams};
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use limits::Permit;
use plain::PlainTcp;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use upgrade::Route;
pub use upgrade::READ_BUFFER_BYTES;

/// Pause after a failed accept (e.g. out of file descriptors), so the loop
/// does not spin while the condition lasts.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// State shared by the accept loop and every connection task.
pub struct Server {
    pub session: Arc<SessionContext>,
    pub tracker: TaskTracker,
    tls: Option<TlsAcceptor>,
    open: Arc<AtomicUsize>,
    pending: Arc<AtomicUsize>,
    per_ip: Arc<Mutex<HashMap<IpAddr, usize>>>,
    next_id: AtomicU64,
}

/// What a connection task and its request router share during the HTTP
/// handshake.
#[derive(Default)]
struct ConnState {
    /// The response is an event stream: the connection outlives the
    /// handshake timeout, and ends once its stream task is done.
    streaming: AtomicBool,
    ended: CancellationToken,
    /// A request was answered: a later idle timeout is not a failed handshake.
    served: AtomicBool,
    /// A direct-mode upgrade was answered: hold the 101 for the session's
    /// first frame (see [`plain`]).
    hold: AtomicBool,
}

impl Server {
    /// A server whose sessions share `session`; TLS when `tls` is set.
    pub fn new(
        session: Arc<SessionContext>,
        tracker: TaskTracker,
        tls: Option<TlsAcceptor>,
    ) -> Arc<Self> {
        Arc::new(Self {
            session,
            tracker,
            tls,
            open: Arc::default(),
            pending: Arc::default(),
            per_ip: Arc::default(),
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
                    self.tracker
                        .spawn(async move { server.handle(stream, peer).await });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed; retrying");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                }
            }
        }
    }

    /// Runs one connection's handshakes (TLS, HTTP) under the timeout.
    /// A connection that became an SSE stream outlives the timeout; the
    /// stream task ends it (client gone, slow, drained).
    async fn handle(self: Arc<Self>, stream: TcpStream, peer: SocketAddr) {
        let (max_pending, timeout) = {
            let live = self.session.live.load();
            (
                live.settings.server.max_pending_handshakes,
                live.settings.server.handshake_timeout,
            )
        };
        let metrics = &self.session.metrics;
        let Some(permit) =
            Permit::try_take(&self.pending, &metrics.handshakes_pending, max_pending)
        else {
            metrics.rejected("handshake_limit");
            return;
        };
        let _ = stream.set_nodelay(true);
        let state = Arc::new(ConnState::default());
        let conn = async {
            let mut stream = stream;
            let Some(peer) = self.client_addr(&mut stream, peer).await else {
                return;
            };
            match &self.tls {
                None => {
                    let plain = PlainTcp::new(stream, state.clone());
                    self.clone().serve_http(plain, peer, state.clone()).await
                }
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(tls) => self.clone().serve_http(tls, peer, state.clone()).await,
                    Err(_) => metrics.rejected("tls_handshake"),
                },
            }
        };
        tokio::pin!(conn);
        // None: the connection finished (it must not be polled again).
        let unfinished = tokio::select! {
            _ = self.session.shutdown.cancelled() => Some(false),
            r = tokio::time::timeout(timeout, &mut conn) => r.is_err().then_some(true),
        };
        drop(permit);
        let Some(timed_out) = unfinished else { return };
        if state.streaming.load(Ordering::Acquire) {
            // Once the stream task is done, a client that does not take the
            // last bytes gets write_timeout, then the socket is dropped.
            tokio::select! {
                _ = &mut conn => {}
                _ = state.ended.cancelled() => {
                    let grace = self.session.live.load().settings.client.write_timeout;
                    let _ = tokio::time::timeout(grace, &mut conn).await;
                }
            }
        } else if timed_out && !state.served.load(Ordering::Acquire) {
            metrics.rejected("handshake_timeout");
        }
    }

    async fn serve_http<IO>(self: Arc<Self>, io: IO, peer: SocketAddr, state: Arc<ConnState>)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let server = self.clone();
        let service = hyper::service::service_fn(move |req| {
            let (server, state) = (server.clone(), state.clone());
            async move { Ok::<_, std::convert::Infallible>(server.route(req, peer, &state)) }
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .max_buf_size(16 * 1024)
            .serve_connection(TokioIo::new(io), service)
            .with_upgrades();
        let _ = conn.await;
    }

    fn route(
        self: &Arc<Self>,
        req: Request<Incoming>,
        peer: SocketAddr,
        state: &ConnState,
    ) -> Response<Body> {
        state.served.store(true, Ordering::Release);
        let path = req.uri().path();
        let result = match path {
            "/ws" => self.upgrade(req, peer, state, Route::Gateway),
            "/echo" => self.upgrade(req, peer, state, Route::Echo),
            "/sse" => self.sse(req, peer, state),
            p if assets::is_asset(p) && matches!(*req.method(), Method::GET | Method::HEAD) => {
                let demo = self.session.live.load().settings.server.demo;
                assets::serve(p, req.headers(), demo).ok_or(Refusal::NotFound)
            }
            _ => Err(Refusal::NotFound),
        };
        result.unwrap_or_else(|refusal| {
            self.session.metrics.rejected(refusal.reason());
            refusal.into_response()
        })
    }

    /// Admits an SSE request and starts its stream task.
    fn sse(
        self: &Arc<Self>,
        req: Request<Incoming>,
        peer: SocketAddr,
        state: &ConnState,
    ) -> Result<Response<Body>, Refusal> {
        if req.method() != Method::GET {
            return Err(Refusal::BadRequest("an event stream is opened with GET"));
        }
        let live = self.session.live.load_full();
        let admission = handshake::admit(&req, &live, peer, None, handshake::Partial::Yes)?;
        if admission.channels.is_empty() {
            return Err(Refusal::BadRequest(
                "an event stream needs at least one channel",
            ));
        }
        let since = sse::event_id::from_request(&req)?;
        let permits = self.take_permits(&live, admission.client_ip)?;
        let params = StreamParams {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            format: admission.format,
            channels: admission.channels,
            rejected: admission.rejected,
            identity: admission.identity,
            // Admission already checked the Origin; echo it for CORS.
            cors_origin: req.headers().get(hyper::header::ORIGIN).cloned(),
            since,
        };
        tracing::info!(%peer, id = params.id, transport = "sse", "connection open");
        let (resp, task) = sse::respond(self.session.clone(), params);
        state.streaming.store(true, Ordering::Release);
        self.session.metrics.connections_accepted.inc();
        let ended = state.ended.clone();
        self.tracker.spawn(async move {
            let _permits = permits;
            task.await;
            ended.cancel();
        });
        Ok(resp)
    }
}
