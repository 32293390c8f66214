//! A plain TCP connection during its HTTP handshake. Once an upgrade is
//! accepted for direct mode, the `101 Switching Protocols` that hyper
//! writes is sent with `MSG_MORE`: the kernel holds it until the session's
//! first frame (the `subscribed` ack of the URL's channels) follows, so both
//! leave in one segment, or until the session starts without one and
//! pushes it ([`crate::outbox::Outbox::push_held`]). In a connection storm
//! that is one transmit (and, on loopback, one receive) less per client.

use super::ConnState;
use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

/// A TCP stream whose writes can be held back (`MSG_MORE`) on request.
pub struct PlainTcp {
    stream: TcpStream,
    /// Its `hold` is set by the router when it answers an upgrade with 101.
    state: Arc<ConnState>,
}

impl PlainTcp {
    /// Wraps `stream`; writes are held while `state.hold` is set.
    pub(super) fn new(stream: TcpStream, state: Arc<ConnState>) -> Self {
        Self { stream, state }
    }

    /// The stream itself, once hyper hands the connection over.
    pub fn into_inner(self) -> TcpStream {
        self.stream
    }

    fn send_more(&self, buf: &[u8]) -> io::Result<usize> {
        self.stream.try_io(Interest::WRITABLE, || {
            socket2::SockRef::from(&self.stream).send_with_flags(buf, libc::MSG_MORE)
        })
    }
}

impl AsyncRead for PlainTcp {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for PlainTcp {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if !self.state.hold.load(Ordering::Acquire) {
            return Pin::new(&mut self.stream).poll_write(cx, buf);
        }
        loop {
            ready!(self.stream.poll_write_ready(cx))?;
            match self.send_more(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                r => return Poll::Ready(r),
            }
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
