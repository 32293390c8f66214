//! Server-Sent Events: `GET /sse?channel=a&channel=b` streams the same
//! frames as WebSocket (JSON envelopes, or raw payloads with `format=raw`)
//! as `data:` events, through the same admission (Origin, token, rules),
//! limits, hub and bounded outbox: there is no second delivery pipeline.
//!
//! The stream task drains the outbox into one chunk per wake-up and hands
//! it to hyper through a one-slot channel, so a client that stops reading
//! stops the task at `send`; meanwhile the outbox fills and the stream is
//! ended as a slow consumer, exactly like a WebSocket. Keep-alive comments
//! go out every `client.ping_interval`. Binary (non-UTF-8) payloads cannot
//! travel in SSE and are skipped in raw mode (counted as dropped).
//!
//! Durable channels: events carrying positions get an `id:`
//! ([`event_id`]); a reconnecting EventSource's `Last-Event-ID` resumes
//! them, exactly as a WebSocket `subscribe` with `since`.

pub mod event_id;

use crate::auth::Identity;
use crate::handshake::Body;
use crate::hub::{Format, Join, SessionId};
use crate::outbox::{Drain, Outbox};
use crate::protocol::{self, Frame, Position, RequestError};
use crate::session::durable;
use crate::session::SessionContext;
use bytes::{BufMut, Bytes, BytesMut};
use event_id::Positions;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame as BodyFrame;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};

/// Reconnect delay suggested to EventSource clients (`retry:`).
pub const RETRY_HINT_MS: u64 = 3000;

/// What the admission decided about this stream.
pub struct StreamParams {
    pub id: SessionId,
    pub format: Format,
    pub channels: Vec<String>,
    /// Requested channels that were refused; sent first, as error events.
    pub rejected: Vec<RequestError>,
    pub identity: Identity,
    /// `Access-Control-Allow-Origin` to send, for allowed cross-origin pages.
    pub cors_origin: Option<HeaderValue>,
    /// Positions to resume durable channels from (`Last-Event-ID`).
    pub since: HashMap<String, Position>,
}

/// Why a stream ended (a metric label).
enum End {
    Gone,
    Shutdown,
    Slow,
    Stalled,
    Expired,
}

impl End {
    fn reason(&self) -> &'static str {
        match self {
            End::Gone => "client_gone",
            End::Shutdown => "shutdown",
            End::Slow => "slow_consumer",
            End::Stalled => "write_stalled",
            End::Expired => "token_expired",
        }
    }
}

/// Builds the streaming response and the task that feeds it; the caller
/// runs the task (it holds the connection permits for its lifetime).
pub fn respond(
    ctx: Arc<SessionContext>,
    params: StreamParams,
) -> (Response<Body>, impl std::future::Future<Output = ()>) {
    let (tx, rx) = mpsc::channel::<Bytes>(1);
    let body = StreamBody::new(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|chunk| (Ok(BodyFrame::data(chunk)), rx))
    }));
    let mut resp = Response::new(body.boxed());
    *resp.status_mut() = StatusCode::OK;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-transform"),
    );
    // Tell buffering proxies (nginx) to pass events through at once.
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    if let Some(origin) = params.cors_origin.clone() {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
    (resp, run(ctx, params, tx))
}

async fn run(ctx: Arc<SessionContext>, params: StreamParams, tx: mpsc::Sender<Bytes>) {
    let client = ctx.live.load().settings.client.clone();
    let outbox = Arc::new(Outbox::new(client.queue_max_bytes));
    for e in &params.rejected {
        outbox.push(protocol::encode_error(e));
    }
    let since = params.since.clone();
    let plan = durable::plan(&ctx, &outbox, params.format, None, &params.channels, since);
    let join = Join {
        session: params.id,
        outbox: &outbox,
        format: params.format,
        channels: params.channels.clone(),
        id: None,
        gates: plan.gates,
        then: plan.then,
    };
    ctx.hub.subscribe(join);
    let end = serve(&ctx, &params, &outbox, &tx).await;
    outbox.close();
    ctx.hub.unsubscribe(params.id, &params.channels);
    ctx.metrics.closed(end.reason());
    tracing::info!(id = params.id, reason = end.reason(), "connection closed");
}

async fn serve(
    ctx: &SessionContext,
    p: &StreamParams,
    outbox: &Outbox,
    tx: &mpsc::Sender<Bytes>,
) -> End {
    let (ping_interval, idle_timeout, window) = {
        let live = ctx.live.load();
        let c = &live.settings.client;
        (
            c.ping_interval,
            c.idle_timeout,
            live.settings.server.drain_window,
        )
    };
    let leeway = ctx.live.load().policy.leeway;
    let expiry = p.identity.deadline(leeway);
    let mut ping = tokio::time::interval_at(Instant::now() + ping_interval, ping_interval);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut close_at: Option<Instant> = None;
    let mut batch = Vec::new();
    let mut positions = Positions::new(&p.since);
    let mut chunk = BytesMut::new();
    chunk.put_slice(format!("retry: {RETRY_HINT_MS}\n\n").as_bytes());
    loop {
        // Drain before waiting: a wake-up may have been used up while a
        // send was pending, and the queue only wakes us when it was empty.
        let Drain::Frames(oldest) = outbox.drain(&mut batch) else {
            return End::Slow;
        };
        if let Some(received) = oldest {
            ctx.metrics
                .delivery_latency
                .0
                .observe(received.elapsed().as_secs_f64());
        }
        batch
            .drain(..)
            .for_each(|f| encode_event(&mut chunk, &f, &mut positions, &ctx.metrics));
        if !chunk.is_empty() {
            if let Err(end) = send(tx, chunk.split().freeze(), outbox, idle_timeout).await {
                return end;
            }
            continue;
        }
        tokio::select! {
            biased;
            _ = tx.closed() => return End::Gone,
            _ = ctx.shutdown.cancelled(), if close_at.is_none() => {
                close_at = Some(crate::shutdown::drain_moment(window));
            }
            _ = tokio::time::sleep_until(close_at.unwrap_or(expiry)), if close_at.is_some() => return End::Shutdown,
            _ = tokio::time::sleep_until(expiry) => return End::Expired,
            _ = outbox.ready() => {}
            _ = ping.tick() => chunk.put_slice(b": ping\n\n"),
        }
    }
}

/// Hands a chunk to hyper; a client that takes nothing for `stall`, or
/// overflows its queue meanwhile, ends the stream.
async fn send(
    tx: &mpsc::Sender<Bytes>,
    chunk: Bytes,
    outbox: &Outbox,
    stall: Duration,
) -> Result<(), End> {
    let sending = tx.send(chunk);
    tokio::pin!(sending);
    let deadline = Instant::now() + stall;
    loop {
        tokio::select! {
            r = &mut sending => return r.map_err(|_| End::Gone),
            _ = outbox.ready() => {
                if outbox.is_overflowed() {
                    return Err(End::Slow);
                }
            }
            _ = tokio::time::sleep_until(deadline) => return Err(End::Stalled),
        }
    }
}

/// One frame as an SSE event: each line of the text as a `data:` line, so
/// that multi-line payloads arrive whole (EventSource joins them with \n);
/// an `id:` first when it carries positions. A binary frame (raw mode)
/// cannot be an event: it is counted and dropped.
pub fn encode_event(
    out: &mut BytesMut,
    frame: &Frame,
    positions: &mut Positions,
    metrics: &crate::metrics::Metrics,
) {
    let Frame::Text(text) = frame else {
        metrics.sse_binary_dropped.inc();
        return;
    };
    if let Some(id) = positions.update(frame) {
        out.put_slice(b"id: ");
        out.put_slice(id.as_bytes());
        out.put_u8(b'\n');
    }
    // SSE ends a line at \r\n, \r or \n: all three must start a new
    // data: line, or a bare \r would cut the event short.
    let text = text.as_str();
    let normalized;
    let text = if text.contains('\r') {
        normalized = text.replace("\r\n", "\n");
        normalized.as_str()
    } else {
        text
    };
    for line in text.split(['\n', '\r']) {
        out.put_slice(b"data: ");
        out.put_slice(line.as_bytes());
        out.put_u8(b'\n');
    }
    out.put_u8(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiline_payloads_become_several_data_lines() {
        let metrics = crate::metrics::Metrics::default();
        let mut out = BytesMut::new();
        let mut ids = Positions::default();
        encode_event(
            &mut out,
            &Frame::Text("{\n \"a\": 1\r\n}".into()),
            &mut ids,
            &metrics,
        );
        assert_eq!(&out[..], b"data: {\ndata:  \"a\": 1\ndata: }\n\n");
        out.clear();
        encode_event(&mut out, &Frame::Text("a\rb".into()), &mut ids, &metrics);
        assert_eq!(&out[..], b"data: a\ndata: b\n\n");
    }
}
