//! One WebSocket client, from upgrade to close, in a single task.
//!
//! The task waits on shutdown, its [`Outbox`] (frames from the hub), the
//! socket (requests from the client), the ping timer and its token's
//! expiry. Queued frames are written as one batch and flushed once
//! (`writer`); requests are handled in `requests`. The session ends
//! with a close frame whose code says why (see [`crate::protocol::close`]).

pub mod durable;
mod requests;
mod writer;

use crate::auth::Identity;
use crate::broker::publisher::Publisher;
use crate::hub::{Format, Hub, SessionId};
use crate::metrics::Metrics;
use crate::outbox::Outbox;
use crate::protocol::{close, Frame};
use crate::reload::Live;
use arc_swap::ArcSwap;
use futures_util::StreamExt;
use std::collections::HashSet;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;
use tungstenite::error::Error as WsError;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::CloseFrame;
use tungstenite::Message;

/// What every session shares.
pub struct SessionContext {
    /// The reloadable configuration and policy.
    pub live: Arc<ArcSwap<Live>>,
    pub hub: Arc<Hub>,
    pub metrics: Arc<Metrics>,
    pub publisher: Publisher,
    /// Durable channels' history.
    pub history: Arc<crate::history::store::Store>,
    pub shutdown: CancellationToken,
}

/// What the handshake decided about this session.
pub struct SessionParams {
    pub id: SessionId,
    pub format: Format,
    /// Valid, allowed, de-duplicated channels from the URL.
    pub channels: Vec<String>,
    pub identity: Identity,
    /// The session's outbox: direct (plain TCP) or queued.
    pub outbox: Arc<Outbox>,
    /// Released when the session ends (connection-limit permits).
    pub guard: Box<dyn Send + Sync>,
    /// `/echo` (`server.conformance_echo`): every text and binary message
    /// goes back to the client through the outbox, nothing else happens.
    pub echo: bool,
}

/// Why a session ends; becomes the close frame and a metric label.
#[derive(Debug, Clone, Copy)]
struct Ending {
    code: u16,
    reason: &'static str,
    /// Whether the socket can still carry a close frame.
    send_close: bool,
}

impl Ending {
    const fn close(code: u16, reason: &'static str) -> Self {
        Self {
            code,
            reason,
            send_close: true,
        }
    }
    const GONE: Ending = Ending {
        code: close::NORMAL,
        reason: "client_gone",
        send_close: false,
    };
    const CLIENT_CLOSED: Ending = Ending::close(close::NORMAL, "client_closed");
    const SHUTDOWN: Ending = Ending::close(close::GOING_AWAY, "shutdown");
    const SLOW: Ending = Ending::close(close::SLOW_CONSUMER, "slow_consumer");
    const STALLED: Ending = Ending::close(close::SLOW_CONSUMER, "write_stalled");
    const EXPIRED: Ending = Ending::close(close::TOKEN_EXPIRED, "token_expired");
    const RATE_LIMITED: Ending = Ending::close(close::RATE_LIMITED, "rate_limited");
}

/// A token bucket for inbound requests.
struct Bucket {
    tokens: f64,
    last: Instant,
    /// Requests refused in a row; too many closes the connection.
    refused: u32,
}

struct Session<S> {
    ws: WebSocketStream<S>,
    ctx: Arc<SessionContext>,
    id: SessionId,
    format: Format,
    identity: Identity,
    outbox: Arc<Outbox>,
    channels: HashSet<String>,
    batch: Vec<Frame>,
    ping_due: bool,
    last_seen: Instant,
    /// When the token (plus leeway) runs out; moved by a refresh.
    expires: Instant,
    bucket: Bucket,
    echo: bool,
    _guard: Box<dyn Send + Sync>,
}

/// Serves one upgraded connection until it closes. The setup runs now;
/// the returned future holds only the session itself (what its parts need
/// while running is boxed), keeping idle sessions small.
pub fn run<S>(
    ws: WebSocketStream<S>,
    ctx: Arc<SessionContext>,
    params: SessionParams,
) -> impl std::future::Future<Output = ()> + Send
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let burst = ctx.live.load().settings.client.rate_burst;
    let mut session = Session {
        ws,
        outbox: params.outbox,
        ctx,
        id: params.id,
        format: params.format,
        identity: params.identity,
        channels: HashSet::new(),
        batch: Vec::new(),
        ping_due: false,
        last_seen: Instant::now(),
        expires: Instant::now(),
        bucket: Bucket {
            tokens: burst as f64,
            last: Instant::now(),
            refused: 0,
        },
        echo: params.echo,
        _guard: params.guard,
    };
    session.expires = session.expiry();
    if !params.channels.is_empty() {
        session.join(None, params.channels, Default::default());
    }
    async move {
        let ending = Box::pin(session.serve()).await;
        Box::pin(session.finish(ending)).await;
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    async fn serve(&mut self) -> Ending {
        let (ping_interval, idle_timeout) = {
            let live = self.ctx.live.load();
            (
                live.settings.client.ping_interval,
                live.settings.client.idle_timeout,
            )
        };
        let mut ping = tokio::time::interval_at(Instant::now() + ping_interval, ping_interval);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // One timer for both ends a session can be given: the token's
        // expiry and, once draining, its moment in the drain window.
        let mut close_at: Option<Instant> = None;
        let mut deadline_at = self.expires;
        let deadline = tokio::time::sleep_until(deadline_at);
        tokio::pin!(deadline);
        loop {
            let want = close_at.map_or(self.expires, |c| c.min(self.expires));
            if want != deadline_at {
                deadline_at = want;
                deadline.as_mut().reset(want);
            }
            tokio::select! {
                biased;
                _ = self.ctx.shutdown.cancelled(), if close_at.is_none() => {
                    close_at = Some(self.drain_moment());
                }
                _ = &mut deadline => {
                    return match close_at {
                        Some(c) if c <= self.expires => Ending::SHUTDOWN,
                        _ => Ending::EXPIRED,
                    };
                }
                _ = self.outbox.ready() => {}
                msg = self.ws.next() => {
                    if let Some(ending) = self.on_incoming(msg) {
                        return ending;
                    }
                }
                _ = ping.tick() => {
                    if self.last_seen.elapsed() > idle_timeout {
                        return Ending::close(close::IDLE_TIMEOUT, "idle_timeout");
                    }
                    self.ping_due = true;
                }
            }
            // Boxed: the write path is large and rarely active, so idle
            // sessions (most of them) keep a small task.
            if let Err(ending) = Box::pin(self.pump()).await {
                return ending;
            }
        }
    }

    /// When to close during a drain: a uniform point in the drain window,
    /// so that clients do not all reconnect elsewhere at the same instant.
    fn drain_moment(&self) -> Instant {
        crate::shutdown::drain_moment(self.ctx.live.load().settings.server.drain_window)
    }

    /// When the token (plus leeway) runs out; far away without a token.
    pub(super) fn expiry(&self) -> Instant {
        self.identity.deadline(self.ctx.live.load().policy.leeway)
    }

    fn on_incoming(&mut self, msg: Option<Result<Message, WsError>>) -> Option<Ending> {
        let msg = match msg {
            None => return Some(Ending::GONE),
            Some(Err(e)) => return Some(ending_for_error(e)),
            Some(Ok(msg)) => msg,
        };
        self.last_seen = Instant::now();
        match msg {
            Message::Text(_) | Message::Binary(_) if self.echo => self.echo_back(msg),
            Message::Text(_) | Message::Binary(_) if self.format == Format::Raw => {
                Some(Ending::close(close::POLICY, "raw_mode_is_receive_only"))
            }
            Message::Text(text) => {
                self.ctx.metrics.inbound_messages.inc();
                self.on_request(text.as_str())
            }
            Message::Binary(_) => Some(Ending::close(close::UNSUPPORTED_DATA, "binary_frame")),
            Message::Close(_) => Some(Ending::CLIENT_CLOSED),
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => None,
        }
    }

    /// Conformance echo: the message goes back as it came, through the
    /// outbox like any frame (direct write on plain TCP, else the writer).
    /// An overflow ends the session as slow at the next write.
    fn echo_back(&mut self, msg: Message) -> Option<Ending> {
        self.ctx.metrics.inbound_messages.inc();
        let frame = match msg {
            Message::Text(text) => Frame::Text(text),
            Message::Binary(data) => Frame::Binary(data),
            _ => return None,
        };
        self.outbox.push(frame);
        None
    }

    /// Leaves every channel and sends the close frame when possible.
    async fn finish(mut self, ending: Ending) {
        self.outbox.close();
        let channels: Vec<String> = self.channels.drain().collect();
        self.ctx.hub.unsubscribe(self.id, &channels);
        self.ctx.metrics.closed(ending.reason);
        tracing::info!(
            id = self.id,
            code = ending.code,
            reason = ending.reason,
            "connection closed"
        );
        if !ending.send_close {
            return;
        }
        let frame = CloseFrame {
            code: CloseCode::from(ending.code),
            reason: ending.reason.into(),
        };
        let write_timeout = self.ctx.live.load().settings.client.write_timeout;
        let close = async {
            // After a client's close this flushes the reply tungstenite queued.
            let _ = self.ws.close(Some(frame)).await;
            // Wait briefly for the peer's close reply so the TCP close is clean.
            while let Some(Ok(_)) = self.ws.next().await {}
        };
        let _ = tokio::time::timeout(write_timeout, close).await;
    }
}

fn ending_for_error(e: WsError) -> Ending {
    use tungstenite::error::ProtocolError;
    match e {
        // The peer vanished without a close frame: nobody to tell.
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => Ending::GONE,
        WsError::Capacity(_) => Ending::close(close::TOO_BIG, "message_too_big"),
        WsError::Utf8(_) => Ending::close(close::INVALID_PAYLOAD, "invalid_utf8"),
        WsError::Protocol(_) => Ending::close(close::PROTOCOL_ERROR, "protocol_error"),
        _ => Ending::GONE,
    }
}
