//! Direct mode: writes from any task straight to a plain TCP socket, all
//! under the outbox lock so that frames never interleave. What the socket
//! does not take at once is queued; the session flushes it with vectored
//! writes when the socket is writable again ([`Outbox::poll_flush`]).
//! tungstenite reads the connection through [`WireIo`], whose writes (its
//! pongs and close frames) join the same ordered path.

use super::{Item, Outbox, Queue, FRAME_OVERHEAD};
use bytes::Bytes;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::time::Instant;

/// Chunks written per vectored write.
const MAX_IOVECS: usize = 64;

/// Why a flush cannot finish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushError {
    /// The socket failed: the peer is gone.
    Broken,
}

/// Writes `bytes` now if the socket takes them; returns what is left
/// (`None` when all of it went out). A failed socket is marked broken.
pub(super) fn try_send(socket: &OwnedWriteHalf, bytes: &Bytes, q: &mut Queue) -> Option<Bytes> {
    match socket.try_write(bytes) {
        Ok(n) if n == bytes.len() => None,
        Ok(n) => {
            q.front_started = n > 0;
            Some(bytes.slice(n..))
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Some(bytes.clone()),
        Err(_) => {
            q.broken = true;
            Some(Bytes::new())
        }
    }
}

/// Drops `n` written bytes from the front of the queue.
fn advance(q: &mut Queue, mut n: usize) {
    while n > 0 {
        let Some(Item::Wire(front)) = q.items.front_mut() else {
            return;
        };
        if n >= front.len() {
            n -= front.len();
            q.bytes = q.bytes.saturating_sub(front.len() + FRAME_OVERHEAD);
            q.items.pop_front();
            q.front_started = false;
        } else {
            *front = front.slice(n..);
            q.bytes = q.bytes.saturating_sub(n);
            q.front_started = true;
            n = 0;
        }
    }
}

/// Writes as much of the queue as the socket takes without blocking.
pub(super) fn write_queued(socket: &OwnedWriteHalf, q: &mut Queue) -> io::Result<()> {
    while !q.items.is_empty() {
        let written = if q.items.len() == 1 {
            // One chunk (the common case at low rates): send(2), which
            // skips writev's VFS path.
            match q.items.front() {
                Some(Item::Wire(b)) => socket.try_write(b),
                _ => return Ok(()),
            }
        } else {
            let slices: Vec<IoSlice<'_>> = q
                .items
                .iter()
                .take(MAX_IOVECS)
                .filter_map(|i| match i {
                    Item::Wire(b) => Some(IoSlice::new(b)),
                    Item::Frame(_) => None,
                })
                .collect();
            socket.try_write_vectored(&slices)
        };
        match written {
            Ok(n) => advance(q, n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

impl Outbox {
    /// Writes everything queued (direct mode); resolves once the queue is
    /// empty, with the arrival time of the oldest message written.
    pub fn poll_flush(&self, cx: &mut Context<'_>) -> Poll<Result<Option<Instant>, FlushError>> {
        let Some(socket) = &self.socket else {
            return Poll::Ready(Ok(None));
        };
        loop {
            let mut q = self.lock();
            if q.broken {
                return Poll::Ready(Err(FlushError::Broken));
            }
            if write_queued(socket, &mut q).is_err() {
                q.broken = true;
                return Poll::Ready(Err(FlushError::Broken));
            }
            if q.items.is_empty() {
                return Poll::Ready(Ok(q.oldest.take()));
            }
            drop(q);
            match socket.as_ref().poll_write_ready(cx) {
                Poll::Ready(Ok(())) => continue,
                Poll::Ready(Err(_)) => {
                    self.lock().broken = true;
                    return Poll::Ready(Err(FlushError::Broken));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// [`Outbox::poll_flush`] as a future.
    pub async fn flush(&self) -> Result<Option<Instant>, FlushError> {
        std::future::poll_fn(|cx| self.poll_flush(cx)).await
    }

    /// Queues (or writes) bytes that tungstenite framed itself: pongs and
    /// close frames. They pass after an overflow or close, so that the
    /// close frame can still go out; only a broken socket, or a client
    /// flooding pings past twice the bound, refuses them.
    fn push_control(&self, bytes: Bytes) -> io::Result<()> {
        let Some(socket) = &self.socket else {
            return Ok(());
        };
        let mut q = self.lock();
        if q.broken || q.bytes > 2 * self.max_bytes {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        let rest = if q.items.is_empty() {
            try_send(socket, &bytes, &mut q)
        } else {
            Some(bytes)
        };
        let Some(rest) = rest else { return Ok(()) };
        q.bytes += rest.len() + FRAME_OVERHEAD;
        q.items.push_back(Item::Wire(rest));
        drop(q);
        self.notify.notify_one();
        Ok(())
    }
}

/// The connection as tungstenite sees it: reads from the socket, writes
/// through the outbox (so they stay ordered with direct writes).
pub struct WireIo {
    read: OwnedReadHalf,
    outbox: Arc<Outbox>,
}

impl WireIo {
    pub fn new(read: OwnedReadHalf, outbox: Arc<Outbox>) -> Self {
        Self { read, outbox }
    }
}

impl AsyncRead for WireIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.read).poll_read(cx, buf)
    }
}

impl AsyncWrite for WireIo {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(
            self.outbox
                .push_control(Bytes::copy_from_slice(buf))
                .map(|()| buf.len()),
        )
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.outbox
            .poll_flush(cx)
            .map(|r| r.map(|_| ()).map_err(|_| io::ErrorKind::BrokenPipe.into()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_flush(cx)
    }
}
