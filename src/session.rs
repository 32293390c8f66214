//! One WebSocket client, from upgrade to close, in a single task.
//!
//! The task waits on four things at once: shutdown, its [`Outbox`] (frames
//! from the hub), the socket (requests from the client) and the ping
//! timer. Queued frames are written as one batch and flushed once. A write
//! that stalls while the client overflows its queue, or while the server
//! shuts down, gets `client.write_timeout` to finish before the socket is
//! dropped; otherwise the session ends with a close frame whose code says
//! why (see [`protocol::close`]).

use crate::config::{Settings, MAX_CHANNEL_NAME_BYTES};
use crate::hub::{Format, Hub, Join, SessionId};
use crate::metrics::Metrics;
use crate::outbox::{Drain, Outbox};
use crate::protocol::{self, close, ErrorCode, Frame, Request, RequestError};
use futures_util::{SinkExt, StreamExt};
use std::collections::HashSet;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;
use tungstenite::error::{CapacityError, Error as WsError};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::CloseFrame;
use tungstenite::Message;

/// What every session shares.
pub struct SessionContext {
    pub settings: Arc<Settings>,
    pub hub: Arc<Hub>,
    pub metrics: Arc<Metrics>,
    pub shutdown: CancellationToken,
}

/// What the handshake decided about this session.
pub struct SessionParams {
    pub id: SessionId,
    pub format: Format,
    /// Valid, de-duplicated channels from the URL, within the limit.
    pub channels: Vec<String>,
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
}

struct Session<S> {
    ws: WebSocketStream<S>,
    ctx: Arc<SessionContext>,
    id: SessionId,
    format: Format,
    outbox: Arc<Outbox>,
    channels: HashSet<String>,
    batch: Vec<Frame>,
    ping_due: bool,
    last_seen: Instant,
}

/// Serves one upgraded connection until it closes.
pub async fn run<S>(ws: WebSocketStream<S>, ctx: Arc<SessionContext>, params: SessionParams)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let outbox = Arc::new(Outbox::new(ctx.settings.client.queue_max_bytes));
    let mut session = Session {
        ws,
        ctx,
        id: params.id,
        format: params.format,
        outbox,
        channels: HashSet::new(),
        batch: Vec::new(),
        ping_due: false,
        last_seen: Instant::now(),
    };
    if !params.channels.is_empty() {
        // Names and count were checked in the handshake; this cannot fail,
        // but an error would still reach the client as a frame.
        if let Err(e) = session.subscribe(None, params.channels) {
            session.reply_error(&e);
        }
    }
    let ending = session.serve().await;
    session.finish(ending).await;
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    async fn serve(&mut self) -> Ending {
        let client = &self.ctx.settings.client;
        let mut ping =
            tokio::time::interval_at(Instant::now() + client.ping_interval, client.ping_interval);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let idle_timeout = client.idle_timeout;
        loop {
            tokio::select! {
                biased;
                _ = self.ctx.shutdown.cancelled() => return Ending::SHUTDOWN,
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
            if let Err(ending) = self.pump().await {
                return ending;
            }
        }
    }

    /// Writes everything queued, batch after batch, until the queue is empty.
    async fn pump(&mut self) -> Result<(), Ending> {
        loop {
            if self.outbox.drain(&mut self.batch) == Drain::Overflowed {
                return Err(Ending::SLOW);
            }
            if self.batch.is_empty() && !self.ping_due {
                return Ok(());
            }
            self.write_batch().await?;
        }
    }

    /// Feeds the batch to the socket and flushes once. While a write is
    /// stuck, an overflow or shutdown still ends the session: the write
    /// then gets `write_timeout` to finish so a close frame can follow.
    async fn write_batch(&mut self) -> Result<(), Ending> {
        let Session {
            ws,
            batch,
            outbox,
            ctx,
            ping_due,
            ..
        } = self;
        let bytes: usize = batch.iter().map(Frame::len).sum();
        let ping = std::mem::take(ping_due);
        let write = async {
            if ping {
                ws.feed(Message::Ping(Default::default())).await?;
            }
            for frame in batch.drain(..) {
                ws.feed(into_message(frame)).await?;
            }
            ws.flush().await
        };
        tokio::pin!(write);
        let interrupted = loop {
            tokio::select! {
                r = &mut write => {
                    ctx.metrics.bytes_out.inc_by(bytes as u64);
                    return r.map_err(|_| Ending::GONE);
                }
                _ = outbox.ready() => {
                    if outbox.is_overflowed() {
                        break Ending::SLOW;
                    }
                }
                _ = ctx.shutdown.cancelled() => break Ending::SHUTDOWN,
            }
        };
        match tokio::time::timeout(ctx.settings.client.write_timeout, write).await {
            Ok(Ok(())) => Err(interrupted),
            _ => Err(Ending {
                send_close: false,
                ..interrupted
            }),
        }
    }

    fn on_incoming(&mut self, msg: Option<Result<Message, WsError>>) -> Option<Ending> {
        let msg = match msg {
            None => return Some(Ending::GONE),
            Some(Err(e)) => return Some(ending_for_error(e)),
            Some(Ok(msg)) => msg,
        };
        self.last_seen = Instant::now();
        match msg {
            Message::Text(_) | Message::Binary(_) if self.format == Format::Raw => {
                Some(Ending::close(close::POLICY, "raw_mode_is_receive_only"))
            }
            Message::Text(text) => {
                self.ctx.metrics.inbound_messages.inc();
                self.on_request(text.as_str());
                None
            }
            Message::Binary(_) => Some(Ending::close(close::UNSUPPORTED_DATA, "binary_frame")),
            Message::Close(_) => Some(Ending::CLIENT_CLOSED),
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => None,
        }
    }

    fn on_request(&mut self, text: &str) {
        let result = match protocol::parse_request(text) {
            Ok(Request::Subscribe { id, channels }) => self.subscribe(id, channels),
            Ok(Request::Unsubscribe { id, channels }) => self.unsubscribe(id, channels),
            Ok(Request::Ping { id }) => {
                self.outbox.push(protocol::encode_pong(id.as_deref()));
                Ok(())
            }
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            self.reply_error(&e);
        }
    }

    fn reply_error(&self, e: &RequestError) {
        self.ctx
            .metrics
            .inbound_errors
            .get_or_create(&crate::metrics::Code {
                code: e.code.as_str(),
            })
            .inc();
        self.outbox.push(protocol::encode_error(e));
    }

    /// Joins channels; the ack comes from the hub once Redis confirms.
    fn subscribe(&mut self, id: Option<String>, channels: Vec<String>) -> Result<(), RequestError> {
        let channels = self.checked_channels(&id, channels)?;
        let new: Vec<String> = channels
            .iter()
            .filter(|c| !self.channels.contains(*c))
            .cloned()
            .collect();
        let max = self.ctx.settings.client.max_subscriptions;
        if self.channels.len() + new.len() > max {
            let message = format!("at most {max} subscriptions per connection");
            return Err(
                RequestError::new(id, ErrorCode::TooManySubscriptions, message).with_channels(new),
            );
        }
        self.channels.extend(new.iter().cloned());
        self.ctx.hub.subscribe(Join {
            session: self.id,
            outbox: &self.outbox,
            format: self.format,
            channels: &new,
            ack_channels: channels,
            id,
        });
        Ok(())
    }

    fn unsubscribe(
        &mut self,
        id: Option<String>,
        channels: Vec<String>,
    ) -> Result<(), RequestError> {
        let channels = self.checked_channels(&id, channels)?;
        let gone: Vec<String> = channels
            .iter()
            .filter(|c| self.channels.remove(*c))
            .cloned()
            .collect();
        self.ctx.hub.unsubscribe(self.id, &gone);
        self.outbox
            .push(protocol::encode_unsubscribed(id.as_deref(), &channels));
        Ok(())
    }

    /// Validates names and drops duplicates, keeping the client's order.
    fn checked_channels(
        &self,
        id: &Option<String>,
        channels: Vec<String>,
    ) -> Result<Vec<String>, RequestError> {
        let rules = &self.ctx.settings.channels;
        let bad: Vec<String> = channels
            .iter()
            .filter(|c| !rules.is_valid_name(c))
            .cloned()
            .collect();
        if let Some(first) = bad.first() {
            let shown: String = first.chars().take(64).collect();
            let message = format!("invalid channel name `{shown}`");
            // Echo only names short enough not to amplify a hostile request.
            let listed = bad
                .into_iter()
                .filter(|c| c.len() <= MAX_CHANNEL_NAME_BYTES)
                .collect();
            return Err(
                RequestError::new(id.clone(), ErrorCode::InvalidChannel, message)
                    .with_channels(listed),
            );
        }
        let mut seen = HashSet::new();
        Ok(channels
            .into_iter()
            .filter(|c| seen.insert(c.clone()))
            .collect())
    }

    /// Leaves every channel and sends the close frame when possible.
    async fn finish(mut self, ending: Ending) {
        self.outbox.close();
        let channels: Vec<String> = self.channels.drain().collect();
        self.ctx.hub.unsubscribe(self.id, &channels);
        self.ctx.metrics.closed(ending.reason);
        tracing::debug!(
            session = self.id,
            code = ending.code,
            reason = ending.reason,
            "session closed"
        );
        if !ending.send_close {
            return;
        }
        let frame = CloseFrame {
            code: CloseCode::from(ending.code),
            reason: ending.reason.into(),
        };
        let close = async {
            // After a client's close this flushes the reply tungstenite queued.
            let _ = self.ws.close(Some(frame)).await;
            // Wait briefly for the peer's close reply so the TCP close is clean.
            while let Some(Ok(_)) = self.ws.next().await {}
        };
        let _ = tokio::time::timeout(self.ctx.settings.client.write_timeout, close).await;
    }
}

fn into_message(frame: Frame) -> Message {
    match frame {
        Frame::Text(t) => Message::Text(t),
        Frame::Binary(b) => Message::Binary(b),
    }
}

fn ending_for_error(e: WsError) -> Ending {
    match e {
        WsError::Capacity(CapacityError::MessageTooLong { .. }) | WsError::Capacity(_) => {
            Ending::close(close::TOO_BIG, "message_too_big")
        }
        WsError::Utf8(_) => Ending::close(close::INVALID_PAYLOAD, "invalid_utf8"),
        WsError::Protocol(_) => Ending::close(close::PROTOCOL_ERROR, "protocol_error"),
        _ => Ending::GONE,
    }
}
