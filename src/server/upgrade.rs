//! WebSocket upgrades: `GET /ws` (a gateway session) and, with
//! `server.conformance_echo`, `GET /echo` (the same session stack echoing
//! every data message, for the Autobahn TestSuite). Both answer 101 and
//! start the session on the direct path (`server.direct_writes`: the
//! fan-out shard writes the socket, encrypting first over TLS) or the
//! queued path (direct writes off).

use super::plain::PlainTcp;
use super::{ConnState, Server};
use crate::handshake::{self, Body, Refusal};
use crate::outbox::{Outbox, Records, Socket, TlsLink, WireIo};
use crate::reload::Live;
use crate::session::{self, SessionParams};
use bytes::Bytes;
use futures_util::FutureExt;
use hyper::body::Incoming;
use hyper::upgrade::Upgraded;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tungstenite::protocol::{Role, WebSocketConfig};

/// What the upgraded connection becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Route {
    /// `/ws`: a gateway session.
    Gateway,
    /// `/echo`: echoes every text and binary message (conformance testing).
    Echo,
}

impl Server {
    /// Answers a good upgrade request with 101 and starts the session
    /// once hyper hands over the connection.
    pub(super) fn upgrade(
        self: &Arc<Self>,
        mut req: Request<Incoming>,
        peer: SocketAddr,
        state: &ConnState,
        route: Route,
    ) -> Result<Response<Body>, Refusal> {
        let live = self.session.live.load_full();
        if route == Route::Echo && !live.settings.server.conformance_echo {
            return Err(Refusal::NotFound);
        }
        let upgrade = handshake::check(&req, &live, peer)?;
        let permits = self.take_permits(&live, upgrade.admission.client_ip)?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let channels = match route {
            Route::Gateway => upgrade.admission.channels.clone(),
            // An echo session joins nothing: it only answers its client.
            Route::Echo => Vec::new(),
        };
        let admission = (
            upgrade.admission.format,
            channels,
            upgrade.admission.identity.clone(),
        );
        let on_upgrade = hyper::upgrade::on(&mut req);
        let server = self.clone();
        let timeout = live.settings.server.handshake_timeout;
        let direct = live.settings.server.direct_writes;
        self.tracker.spawn(async move {
            let Ok(Ok(upgraded)) = tokio::time::timeout(timeout, on_upgrade).await else {
                return;
            };
            server.session.metrics.connections_accepted.inc();
            tracing::info!(%peer, id, transport = "websocket", ?route, "connection open");
            // A task of its own: the waiting state above is freed, so an
            // idle session holds only its own state.
            let start = SessionStart {
                live,
                id,
                admission,
                permits,
                echo: route == Route::Echo,
            };
            let tracker = server.tracker.clone();
            match path(upgraded, direct) {
                Path::Direct(parts) => server.run_direct(parts, start).map(|s| tracker.spawn(s)),
                Path::Queued(upgraded) => {
                    let io = TokioIo::new(upgraded);
                    server
                        .run_queued(io, Vec::new(), start)
                        .map(|s| tracker.spawn(s))
                }
                Path::QueuedTls(tls, early) => server
                    .run_queued(*tls, early, start)
                    .map(|s| tracker.spawn(s)),
                Path::Closed => None,
            };
        });
        // Direct mode: the 101 waits (MSG_MORE) for the session's first
        // frame; no effect over TLS, where the stream is not PlainTcp.
        // A session without one (an echo session, no URL channels) pushes
        // the 101 as soon as it is set up (`run_direct`).
        state.hold.store(direct, Ordering::Release);
        Ok(handshake::switching_protocols(&upgrade))
    }

    /// Direct mode: the fan-out shard writes to the socket itself
    /// (encrypting first over TLS).
    fn run_direct(
        &self,
        parts: DirectParts,
        start: SessionStart,
    ) -> Option<impl Future<Output = ()> + Send> {
        let (config, queue) = start.limits();
        let (outbox, io) = match parts.stream {
            Stream::Plain(stream) => {
                let (read, write) = stream.into_split();
                let outbox = Arc::new(Outbox::direct(queue, Socket::Plain(write)));
                (outbox.clone(), WireIo::new(read, outbox))
            }
            Stream::Tls(tcp, records) => {
                let link = Arc::new(TlsLink::new(tcp, *records));
                let outbox = Arc::new(Outbox::direct(queue, Socket::Tls(link.clone())));
                (outbox.clone(), WireIo::tls(link, outbox))
            }
        };
        // Bytes the client sent right after its handshake, copied: the
        // slice would keep hyper's whole 8 KiB read buffer alive.
        let early = parts.early.to_vec();
        // Setting up a server-side stream does no I/O: it is ready at once.
        let ws =
            WebSocketStream::from_partially_read(io, early, Role::Server, config).now_or_never()?;
        let session = session::run(ws, self.session.clone(), start.into_params(outbox.clone()));
        // The setup above wrote the URL's `subscribed` ack if Redis had
        // confirmed its channels; either way the held 101 goes out now.
        outbox.push_held();
        Some(session)
    }

    /// `server.direct_writes` off: queued mode, the session writes.
    fn run_queued<S>(
        &self,
        io: S,
        early: Vec<u8>,
        start: SessionStart,
    ) -> Option<impl Future<Output = ()> + Send>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (config, queue) = start.limits();
        let outbox = Arc::new(Outbox::new(queue));
        let ws =
            WebSocketStream::from_partially_read(io, early, Role::Server, config).now_or_never()?;
        Some(session::run(
            ws,
            self.session.clone(),
            start.into_params(outbox),
        ))
    }
}

/// The connection under an upgrade, taken apart for direct writes.
struct DirectParts {
    stream: Stream,
    /// What the client sent after its request.
    early: Bytes,
}

enum Stream {
    Plain(TcpStream),
    /// The socket and its TLS 1.3 record layer, handshake done.
    Tls(TcpStream, Box<Records>),
}

/// Where an upgraded connection goes.
enum Path {
    /// Direct writes: plain TCP, or TLS 1.3 with its record keys.
    Direct(DirectParts),
    /// Direct writes off: the connection as hyper handed it over.
    Queued(Upgraded),
    /// TLS other than 1.3 (rustls keeps it), with hyper's unread bytes.
    QueuedTls(Box<TlsStream<TcpStream>>, Vec<u8>),
    /// rustls would not hand over the keys of a connection it had
    /// agreed to (logged): the connection ends.
    Closed,
}

/// Takes the connection under `upgraded` apart for direct writes where
/// they apply (`enabled`: `server.direct_writes`).
fn path(upgraded: Upgraded, enabled: bool) -> Path {
    if !enabled {
        return Path::Queued(upgraded);
    }
    let upgraded = match upgraded.downcast::<TokioIo<PlainTcp>>() {
        Ok(parts) => {
            return Path::Direct(DirectParts {
                stream: Stream::Plain(parts.io.into_inner().into_inner()),
                early: parts.read_buf,
            })
        }
        Err(upgraded) => upgraded,
    };
    let parts = match upgraded.downcast::<TokioIo<TlsStream<TcpStream>>>() {
        Ok(parts) => parts,
        Err(upgraded) => return Path::Queued(upgraded),
    };
    let tls = parts.io.into_inner();
    if !Records::can_take_over(tls.get_ref().1) {
        return Path::QueuedTls(Box::new(tls), parts.read_buf.to_vec());
    }
    let (tcp, conn) = tls.into_inner();
    let (records, plain) = match Records::take_over(conn) {
        Ok(taken) => taken,
        Err(e) => {
            tracing::warn!(error = %e, "TLS keys not handed over; connection closed");
            return Path::Closed;
        }
    };
    // Hyper's unread bytes came first, then what rustls had decrypted.
    let mut early = parts.read_buf.to_vec();
    early.extend_from_slice(&plain);
    Path::Direct(DirectParts {
        stream: Stream::Tls(tcp, Box::new(records)),
        early: early.into(),
    })
}

/// Eagerly allocated read buffer per WebSocket. Client requests are small
/// JSON; a larger frame grows the buffer only while it is being read.
pub const READ_BUFFER_BYTES: usize = 256;

/// What the admission decided, carried into the session task.
type Admitted = (crate::hub::Format, Vec<String>, crate::auth::Identity);

/// Everything a session task starts from.
struct SessionStart {
    live: Arc<Live>,
    id: u64,
    admission: Admitted,
    /// Held for the life of the session.
    permits: super::limits::Permits,
    echo: bool,
}

impl SessionStart {
    fn limits(&self) -> (Option<WebSocketConfig>, usize) {
        (
            Some(websocket_config(&self.live)),
            self.live.settings.client.queue_max_bytes,
        )
    }

    fn into_params(self, outbox: Arc<Outbox>) -> SessionParams {
        let (format, channels, identity) = self.admission;
        let guard = Box::new(self.permits);
        SessionParams {
            id: self.id,
            format,
            channels,
            identity,
            outbox,
            guard,
            echo: self.echo,
        }
    }
}

/// Per-connection WebSocket settings: small eager read buffer (idle
/// connections dominate memory), incoming size capped by the config.
fn websocket_config(live: &Live) -> WebSocketConfig {
    let max = live.settings.client.max_message_bytes;
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(16 * 1024)
        .max_message_size(Some(max))
        .max_frame_size(Some(max))
}
