//! The session's writing half: everything queued goes out as one batch
//! with one flush. A write that stalls while the client overflows its
//! queue, or for longer than `client.idle_timeout`, ends the session: the
//! write gets `client.write_timeout` to finish (so a close frame can
//! follow) before the socket is dropped.

use super::{Ending, Session};
use crate::outbox::Drain;
use crate::protocol::Frame;
use futures_util::SinkExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tungstenite::Message;

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    pub(super) async fn pump(&mut self) -> Result<(), Ending> {
        loop {
            let Drain::Frames(oldest) = self.outbox.drain(&mut self.batch) else {
                return Err(Ending::SLOW);
            };
            // Direct mode queues nothing for the batch: its backlog is
            // written by the flush at the end of write_batch (via WireIo).
            if self.batch.is_empty() && !self.ping_due && !self.outbox.has_backlog() {
                return Ok(());
            }
            self.write_batch().await?;
            if let Some(received) = oldest {
                self.ctx
                    .metrics
                    .delivery_latency
                    .0
                    .observe(received.elapsed().as_secs_f64());
            }
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
        // Most writes finish at once: only a pending one needs a stall timer.
        if let Some(r) = futures_util::FutureExt::now_or_never(&mut write) {
            return r.map_err(|_| Ending::GONE);
        }
        // A client that takes no bytes for idle_timeout is as good as gone,
        // even when nothing new is queued for it.
        let stalled = tokio::time::Instant::now() + ctx.live.load().settings.client.idle_timeout;
        let interrupted = loop {
            tokio::select! {
                r = &mut write => return r.map_err(|_| Ending::GONE),
                _ = outbox.ready() => {
                    if outbox.is_overflowed() {
                        break Ending::SLOW;
                    }
                }
                _ = tokio::time::sleep_until(stalled) => break Ending::STALLED,
            }
        };
        let write_timeout = ctx.live.load().settings.client.write_timeout;
        match tokio::time::timeout(write_timeout, write).await {
            Ok(Ok(())) => Err(interrupted),
            _ => Err(Ending {
                send_close: false,
                ..interrupted
            }),
        }
    }
}

fn into_message(frame: Frame) -> Message {
    match frame {
        Frame::Text(t) => Message::Text(t),
        Frame::Binary(b) => Message::Binary(b),
    }
}
