//! Direct mode over TLS: the shard encrypts a client's queued frames
//! itself and writes the records to the socket, as it writes plain ones.
//!
//! The connection's record layer ([`Records`], TLS 1.3 after the
//! handshake) sits behind a mutex shared by the writers (under the outbox
//! lock, so frames stay in order) and the session task, which reads and
//! decrypts the client's requests through [`TlsLink::poll_read`]. A write
//! hands up to [`super::direct::MAX_IOVECS`] queued frames to the record
//! layer in one call, so several frames share a TLS record (at most
//! 16 KiB each) and the records leave in one `send` or `writev`: no copy
//! per subscriber besides the encryption itself. Encrypted bytes the
//! socket did not take wait in the record layer (at most
//! [`super::records::OUT_LIMIT`]); nothing more is encrypted until they
//! are gone.

use super::direct::{advance, wire_slices};
use super::records::{Read, Records};
use super::Queue;
use bytes::Bytes;
use std::io::{self, IoSlice};
use std::sync::{Mutex, MutexGuard};
use std::task::{ready, Context, Poll};
use tokio::io::ReadBuf;
use tokio::net::TcpStream;

/// A TLS connection after its handshake, shared by its reader (the
/// session) and its writers (the shard, replies from the session).
pub struct TlsLink {
    tcp: TcpStream,
    records: Mutex<Records>,
}

impl TlsLink {
    /// Takes over a connection whose handshake is done.
    pub fn new(tcp: TcpStream, records: Records) -> Self {
        Self {
            tcp,
            records: Mutex::new(records),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Records> {
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Encrypts and writes `bytes` now as far as possible; returns what
    /// the record layer did not take (`None`: all of it). A failure marks
    /// `q` broken.
    pub(super) fn try_send(&self, bytes: &Bytes, q: &mut Queue) -> Option<Bytes> {
        let mut records = self.lock();
        let taken = records.encrypt(&[IoSlice::new(bytes)]).and_then(|n| {
            records.write_out(&self.tcp)?;
            Ok(n)
        });
        match taken {
            Ok(n) if n == bytes.len() => None,
            Ok(n) => {
                q.front_started = n > 0;
                Some(bytes.slice(n..))
            }
            Err(_) => {
                q.broken = true;
                Some(Bytes::new())
            }
        }
    }

    /// Encrypts and writes as much of the queue as the socket takes.
    pub(super) fn write_queued(&self, q: &mut Queue) -> io::Result<()> {
        let mut records = self.lock();
        loop {
            // Records already made go first: the stream stays in order.
            if !records.write_out(&self.tcp)? || q.items.is_empty() {
                return Ok(());
            }
            let taken = records.encrypt(&wire_slices(q))?;
            if taken == 0 {
                return Ok(());
            }
            advance(q, taken);
        }
    }

    /// Whether encrypted bytes wait for the socket.
    pub(super) fn pending(&self) -> bool {
        self.lock().wants_write()
    }

    /// Waits until the socket may take more.
    pub(super) fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.tcp.poll_write_ready(cx)
    }

    /// Reads the client's plaintext: decrypts what is buffered, else
    /// reads records from the socket.
    pub(super) fn poll_read(
        &self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            match self.lock().read(&self.tcp, buf.initialize_unfilled()) {
                Ok(Read::Data(n)) => buf.advance(n),
                Ok(Read::Closed) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready!(self.tcp.poll_read_ready(cx))?;
                    continue;
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
            return Poll::Ready(Ok(()));
        }
    }
}
