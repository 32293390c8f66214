//! Direct mode: writes from any task straight to the socket (plain TCP,
//! or TLS encrypted by the writer: [`super::tls`]), all under the outbox
//! lock so that frames never interleave. What the socket does not take at
//! once is queued; the session flushes it with vectored writes when the
//! socket is writable again ([`Outbox::poll_flush`]). tungstenite reads
//! the connection through [`WireIo`], whose writes (its pongs and close
//! frames) join the same ordered path.

use super::tls::TlsLink;
use super::{Item, Outbox, Queue, FRAME_OVERHEAD};
use bytes::Bytes;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::time::Instant;

/// Chunks written (or encrypted) per vectored call.
pub(super) const MAX_IOVECS: usize = 64;

/// Where a direct-mode outbox writes.
pub enum Socket {
    /// Plain TCP: the wire bytes as they are.
    Plain(OwnedWriteHalf),
    /// TLS: encrypted by the writer first.
    Tls(Arc<TlsLink>),
}

impl Socket {
    pub(super) fn try_send(&self, bytes: &Bytes, q: &mut Queue) -> Option<Bytes> {
        match self {
            Socket::Plain(s) => try_send(s, bytes, q),
            Socket::Tls(t) => t.try_send(bytes, q),
        }
    }

    pub(super) fn write_queued(&self, q: &mut Queue) -> io::Result<()> {
        match self {
            Socket::Plain(s) => write_queued(s, q),
            Socket::Tls(t) => t.write_queued(q),
        }
    }

    /// Whether bytes wait below the queue (encrypted, not yet sent).
    pub(super) fn pending(&self) -> bool {
        match self {
            Socket::Plain(_) => false,
            Socket::Tls(t) => t.pending(),
        }
    }

    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Socket::Plain(s) => s.as_ref().poll_write_ready(cx),
            Socket::Tls(t) => t.poll_write_ready(cx),
        }
    }
}

/// Why a flush cannot finish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushError {
    /// The socket failed: the peer is gone.
    Broken,
}

/// Writes `bytes` now if the socket takes them; returns what is left
/// (`None` when all of it went out). A failed socket is marked broken.
fn try_send(socket: &OwnedWriteHalf, bytes: &Bytes, q: &mut Queue) -> Option<Bytes> {
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
pub(super) fn advance(q: &mut Queue, mut n: usize) {
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

/// The front of the queue, as slices for one vectored call.
pub(super) fn wire_slices(q: &Queue) -> Vec<IoSlice<'_>> {
    q.items
        .iter()
        .take(MAX_IOVECS)
        .filter_map(|i| match i {
            Item::Wire(b) => Some(IoSlice::new(b)),
            Item::Frame(_) => None,
        })
        .collect()
}

/// Writes as much of the queue as the socket takes without blocking.
fn write_queued(socket: &OwnedWriteHalf, q: &mut Queue) -> io::Result<()> {
    while !q.items.is_empty() {
        let written = if q.items.len() == 1 {
            // One chunk (the common case at low rates): send(2), which
            // skips writev's VFS path.
            match q.items.front() {
                Some(Item::Wire(b)) => socket.try_write(b),
                _ => return Ok(()),
            }
        } else {
            socket.try_write_vectored(&wire_slices(q))
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
            if socket.write_queued(&mut q).is_err() {
                q.broken = true;
                return Poll::Ready(Err(FlushError::Broken));
            }
            if q.items.is_empty() && !socket.pending() {
                return Poll::Ready(Ok(q.oldest.take()));
            }
            drop(q);
            match socket.poll_write_ready(cx) {
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
            socket.try_send(&bytes, &mut q)
        } else {
            Some(bytes)
        };
        let Some(rest) = rest else {
            let pending = socket.pending();
            drop(q);
            if pending {
                // Encrypted bytes the socket did not take: the session
                // flushes them once it is writable.
                self.notify.notify_one();
            }
            return Ok(());
        };
        q.bytes += rest.len() + FRAME_OVERHEAD;
        q.items.push_back(Item::Wire(rest));
        drop(q);
        self.notify.notify_one();
        Ok(())
    }
}

/// Where a [`WireIo`] reads from.
enum Source {
    Plain(OwnedReadHalf),
    Tls(Arc<TlsLink>),
}

/// The connection as tungstenite sees it: reads from the socket
/// (decrypting over TLS), writes through the outbox (so they stay ordered
/// with direct writes).
pub struct WireIo {
    read: Source,
    outbox: Arc<Outbox>,
}

impl WireIo {
    /// Plain TCP: reads from `read`.
    pub fn new(read: OwnedReadHalf, outbox: Arc<Outbox>) -> Self {
        Self {
            read: Source::Plain(read),
            outbox,
        }
    }

    /// TLS: reads through `link`, which `outbox` writes to.
    pub fn tls(link: Arc<TlsLink>, outbox: Arc<Outbox>) -> Self {
        Self {
            read: Source::Tls(link),
            outbox,
        }
    }
}

impl AsyncRead for WireIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match &mut this.read {
            Source::Plain(read) => Pin::new(read).poll_read(cx, buf),
            Source::Tls(link) => link.poll_read(cx, buf),
        }
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
