//! Direct mode over TLS: the shard encrypts a client's queued frames
//! itself and writes the records to the socket, as it writes plain ones.
//!
//! The rustls connection sits behind a mutex shared by the writers (under
//! the outbox lock, so frames stay in order) and the session task, which
//! reads and decrypts the client's requests through [`TlsLink::poll_read`].
//! A write hands up to [`super::direct::MAX_IOVECS`] queued frames to
//! rustls in one vectored call, so several frames share a TLS record
//! (at most 16 KiB each) and the records leave in one `writev`: no copy per
//! subscriber besides the encryption itself. Encrypted bytes the socket
//! did not take wait inside rustls (bounded by its buffer limit); nothing
//! more is encrypted until they are gone.

use super::direct::{advance, wire_slices};
use super::{Outbox, Queue};
use bytes::Bytes;
use rustls::ServerConnection;
use std::io::{self, IoSlice, Read, Write};
use std::sync::{Mutex, MutexGuard};
use std::task::{ready, Context, Poll};
use tokio::io::ReadBuf;
use tokio::net::TcpStream;

/// Encrypted bytes rustls may hold for a client that does not read
/// (rustls's own default: 64 KiB); above it a write waits in the outbox.
pub const TLS_BUFFER_LIMIT: usize = 64 * 1024;

/// A TLS connection after its handshake, shared by its reader (the
/// session) and its writers (the shard, replies from the session).
pub struct TlsLink {
    tcp: TcpStream,
    conn: Mutex<ServerConnection>,
}

/// The socket as `std::io` sees it, never blocking (`WouldBlock` instead).
struct Nonblocking<'a>(&'a TcpStream);

impl Read for Nonblocking<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}

impl Write for Nonblocking<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.0.try_write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl TlsLink {
    /// Takes over a connection whose handshake is done.
    pub fn new(tcp: TcpStream, mut conn: ServerConnection) -> Self {
        conn.set_buffer_limit(Some(TLS_BUFFER_LIMIT));
        Self {
            tcp,
            conn: Mutex::new(conn),
        }
    }

    fn lock(&self) -> MutexGuard<'_, ServerConnection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes records rustls holds; `Ok(false)` when the socket is full.
    fn send_records(&self, conn: &mut ServerConnection) -> io::Result<bool> {
        while conn.wants_write() {
            match conn.write_tls(&mut Nonblocking(&self.tcp)) {
                Ok(0) => return Ok(false),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Encrypts and writes `bytes` now as far as possible; returns what
    /// rustls did not take (`None`: all of it). A failure marks `q` broken.
    pub(super) fn try_send(&self, bytes: &Bytes, q: &mut Queue) -> Option<Bytes> {
        let mut conn = self.lock();
        let taken = conn.writer().write(bytes).and_then(|n| {
            self.send_records(&mut conn)?;
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
        let mut conn = self.lock();
        loop {
            // Records already made go first: the stream stays in order.
            if !self.send_records(&mut conn)? || q.items.is_empty() {
                return Ok(());
            }
            let taken = conn.writer().write_vectored(&wire_slices(q))?;
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

    /// Reads the client's plaintext: decrypts what is buffered, else reads
    /// records from the socket. What rustls wants to send in reply (an
    /// alert, a key update) is written through `outbox`.
    pub(super) fn poll_read(
        &self,
        outbox: &Outbox,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let mut conn = self.lock();
            match conn.reader().read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
            match conn.read_tls(&mut Nonblocking(&self.tcp)) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    drop(conn);
                    ready!(self.tcp.poll_read_ready(cx))?;
                    continue;
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
            let state = conn.process_new_packets().map(|_| ());
            let reply = conn.wants_write();
            drop(conn);
            if reply {
                outbox.flush_now();
            }
            if let Err(e) = state {
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e)));
            }
        }
    }
}
