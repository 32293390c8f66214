//! TLS 1.3 records after the handshake, kept with the least state.
//!
//! rustls's buffered connection keeps a 4 KiB receive buffer, the
//! handshake's state machine and its plaintext queues for the life of a
//! connection: over half of an idle wss:// connection's memory. Once the
//! WebSocket upgrade is done, redcast takes the traffic keys out of it
//! (`dangerous_extract_secrets`, the hand-over rustls offers for kTLS) and
//! keeps only what the record layer needs: rustls's own AEAD encrypter and
//! decrypter (ring), two sequence numbers, and buffers that exist only
//! while bytes are in them. Framing and checks follow RFC 8446 §5; the
//! cryptography and the inner-plaintext checks stay rustls's.
//!
//! Not supported after the hand-over, by design: TLS 1.2 (such clients
//! keep rustls and the queued path), and KeyUpdate. A client's KeyUpdate
//! ends its connection (browsers do not send one); before this side's
//! records reach the cipher suite's confidentiality limit (2^24 records
//! for AES-GCM) the connection is ended too, and the client reconnects.

use rustls::crypto::cipher::{
    AeadKey, InboundOpaqueMessage, Iv, MessageDecrypter, MessageEncrypter, OutboundChunks,
    OutboundPlainMessage,
};
use rustls::{ConnectionTrafficSecrets, ContentType, ProtocolVersion, ServerConnection};
use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::ops::Range;
use tokio::net::TcpStream;

/// A socket that never blocks (`WouldBlock` instead): TCP, or bytes in
/// memory for tests and fuzzing.
pub trait Wire {
    /// Appends what the socket has to `buf`.
    fn try_read_buf(&self, buf: &mut Vec<u8>) -> io::Result<usize>;
    /// Writes what the socket takes of `buf`.
    fn try_write(&self, buf: &[u8]) -> io::Result<usize>;
    /// Writes what the socket takes of `bufs`.
    fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize>;
}

impl Wire for TcpStream {
    fn try_read_buf(&self, buf: &mut Vec<u8>) -> io::Result<usize> {
        TcpStream::try_read_buf(self, buf)
    }

    fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        TcpStream::try_write(self, buf)
    }

    fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        TcpStream::try_write_vectored(self, bufs)
    }
}

/// Largest plaintext of one record (RFC 8446 §5.1).
const MAX_FRAGMENT: usize = 16 * 1024;
/// Largest record on the wire: header, fragment, content type byte,
/// padding and tag may add at most 256 bytes (RFC 8446 §5.2).
const MAX_RECORD: usize = HEADER + MAX_FRAGMENT + 256;
const HEADER: usize = 5;
/// Bytes asked of the socket per read when no record says more.
const READ_CHUNK: usize = 4096;
/// Encrypted bytes waiting for the socket above which nothing more is
/// encrypted (the writer waits in the outbox instead).
pub const OUT_LIMIT: usize = 64 * 1024;
/// Records kept below the confidentiality limit, so the end comes first.
const LIMIT_MARGIN: u64 = 1024;

/// What a read produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Read {
    /// Plaintext bytes copied out.
    Data(usize),
    /// The client sent close_notify, or closed the socket.
    Closed,
}

/// A TLS 1.3 connection's record layer once its handshake is over.
pub struct Records {
    tx: Box<dyn MessageEncrypter>,
    tx_seq: u64,
    tx_limit: u64,
    rx: Box<dyn MessageDecrypter>,
    rx_seq: u64,
    /// Encrypted records not yet written; the front's first `out_sent`
    /// bytes are gone already.
    out: VecDeque<Vec<u8>>,
    out_sent: usize,
    out_bytes: usize,
    /// Bytes read from the socket, freed whenever all are used.
    input: Vec<u8>,
    /// Decrypted plaintext not yet read, inside `input`.
    plain: Range<usize>,
    /// Where the records not yet decrypted start in `input`.
    next: usize,
}

impl Records {
    /// Whether [`Records::take_over`] applies: a TLS 1.3 connection done
    /// with its handshake, with nothing left to send.
    pub fn can_take_over(conn: &ServerConnection) -> bool {
        conn.protocol_version() == Some(ProtocolVersion::TLSv1_3)
            && !conn.is_handshaking()
            && !conn.wants_write()
    }

    /// Takes the keys out of a connection that [`Records::can_take_over`];
    /// plaintext it had decrypted but not handed on comes back with them.
    pub fn take_over(mut conn: ServerConnection) -> Result<(Self, Vec<u8>), rustls::Error> {
        let suite = conn.negotiated_cipher_suite().and_then(|s| s.tls13());
        let suite = suite.ok_or(rustls::Error::HandshakeNotComplete)?;
        let tx_limit = suite.common.confidentiality_limit;
        let mut early = Vec::new();
        let _ = io::Read::read_to_end(&mut conn.reader(), &mut early);
        let keys = conn.dangerous_extract_secrets().and_then(|secrets| {
            let (tx_seq, tx) = secrets.tx;
            let (rx_seq, rx) = secrets.rx;
            Ok(((tx_seq, keys(tx)?), (rx_seq, keys(rx)?)))
        });
        keys.map(|((tx_seq, (tx_key, tx_iv)), (rx_seq, (rx_key, rx_iv)))| {
            let records = Self {
                tx: suite.aead_alg.encrypter(tx_key, tx_iv),
                tx_seq,
                tx_limit: tx_limit.saturating_sub(LIMIT_MARGIN),
                rx: suite.aead_alg.decrypter(rx_key, rx_iv),
                rx_seq,
                out: VecDeque::new(),
                out_sent: 0,
                out_bytes: 0,
                input: Vec::new(),
                plain: 0..0,
                next: 0,
            };
            (records, early)
        })
    }

    /// Encrypts as much of `data` as the output limit allows, at most
    /// [`MAX_FRAGMENT`] bytes per record; returns the bytes taken.
    pub fn encrypt(&mut self, data: &[IoSlice<'_>]) -> io::Result<usize> {
        let mut slices: [&[u8]; super::direct::MAX_IOVECS] = [&[]; super::direct::MAX_IOVECS];
        let n = data.len().min(slices.len());
        for (slot, s) in slices.iter_mut().zip(data) {
            *slot = s;
        }
        let chunks = OutboundChunks::new(&slices[..n]);
        let room = OUT_LIMIT.saturating_sub(self.out_bytes);
        let (mut rest, _) = chunks.split_at(room.min(chunks.len()));
        let taken = rest.len();
        while !rest.is_empty() {
            let (fragment, after) = rest.split_at(MAX_FRAGMENT.min(rest.len()));
            self.seal(ContentType::ApplicationData, fragment)?;
            rest = after;
        }
        Ok(taken)
    }

    fn seal(&mut self, typ: ContentType, payload: OutboundChunks<'_>) -> io::Result<()> {
        if self.tx_seq >= self.tx_limit {
            return Err(io::Error::other("TLS record limit of the keys reached"));
        }
        let message = OutboundPlainMessage {
            typ,
            version: ProtocolVersion::TLSv1_2,
            payload,
        };
        let record = self
            .tx
            .encrypt(message, self.tx_seq)
            .map_err(io::Error::other)?
            .encode();
        self.tx_seq += 1;
        self.out_bytes += record.len();
        self.out.push_back(record);
        Ok(())
    }

    /// Whether encrypted records wait for the socket.
    pub fn wants_write(&self) -> bool {
        !self.out.is_empty()
    }

    /// Writes waiting records; `Ok(false)` when the socket is full.
    pub fn write_out(&mut self, tcp: &impl Wire) -> io::Result<bool> {
        while let Some(front) = self.out.front() {
            let written = if self.out.len() == 1 {
                // One record (the common case below saturation): send(2),
                // which skips writev's VFS path, as plain writes do.
                tcp.try_write(&front[self.out_sent..])
            } else {
                tcp.try_write_vectored(&self.out_slices())
            };
            match written {
                Ok(0) => return Ok(false),
                Ok(n) => self.consume_out(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        // Idle connections keep no buffer.
        self.out = VecDeque::new();
        Ok(true)
    }

    /// The waiting records, as slices for one vectored write.
    fn out_slices(&self) -> Vec<IoSlice<'_>> {
        let skip = |i: usize| if i == 0 { self.out_sent } else { 0 };
        let records = self.out.iter().take(super::direct::MAX_IOVECS).enumerate();
        records.map(|(i, r)| IoSlice::new(&r[skip(i)..])).collect()
    }

    fn consume_out(&mut self, mut n: usize) {
        self.out_bytes -= n;
        while let Some(front) = self.out.front() {
            let left = front.len() - self.out_sent;
            if n < left {
                self.out_sent += n;
                return;
            }
            n -= left;
            self.out_sent = 0;
            self.out.pop_front();
        }
    }

    /// Reads the client's plaintext into `dst`: decrypted bytes waiting
    /// first, then records already read, then the socket (`WouldBlock`
    /// when it has nothing).
    pub fn read(&mut self, tcp: &impl Wire, dst: &mut [u8]) -> io::Result<Read> {
        loop {
            if !self.plain.is_empty() {
                let n = dst.len().min(self.plain.len());
                dst[..n].copy_from_slice(&self.input[self.plain.start..][..n]);
                self.plain.start += n;
                self.release_input();
                return Ok(Read::Data(n));
            }
            match self.open_record()? {
                Some(Opened::Data) => continue,
                Some(Opened::Closed) => return Ok(Read::Closed),
                None => {}
            }
            if !self.fill(tcp)? {
                return Ok(Read::Closed);
            }
        }
    }

    /// Drops the input buffer once everything in it is used.
    fn release_input(&mut self) {
        if self.plain.is_empty() && self.next == self.input.len() {
            self.input = Vec::new();
            self.plain = 0..0;
            self.next = 0;
        }
    }

    /// Reads from the socket; `Ok(false)` at end of stream.
    fn fill(&mut self, tcp: &impl Wire) -> io::Result<bool> {
        if self.next > 0 {
            // Keep only the partial record, at the start.
            self.input.drain(..self.next);
            self.plain = 0..0;
            self.next = 0;
        }
        let want = record_len(&self.input).map_or(READ_CHUNK, |len| len - self.input.len());
        self.input.reserve(want.max(READ_CHUNK));
        match tcp.try_read_buf(&mut self.input) {
            Ok(0) => Ok(false),
            Ok(_) => Ok(true),
            Err(e) => {
                self.release_input();
                Err(e)
            }
        }
    }

    /// Decrypts the next whole record in `input`, if there is one.
    fn open_record(&mut self) -> io::Result<Option<Opened>> {
        let rest = &mut self.input[self.next..];
        let Some(len) = record_len(rest) else {
            return Ok(None);
        };
        if len > MAX_RECORD || rest[0] != u8::from(ContentType::ApplicationData) {
            return Err(invalid("unexpected TLS record"));
        }
        if rest.len() < len {
            return Ok(None);
        }
        let base = self.input.as_ptr() as usize;
        let payload = &mut self.input[self.next + HEADER..self.next + len];
        let message = InboundOpaqueMessage::new(
            ContentType::ApplicationData,
            ProtocolVersion::TLSv1_2,
            payload,
        );
        let plain = self.rx.decrypt(message, self.rx_seq).map_err(invalid)?;
        self.rx_seq += 1;
        self.next += len;
        let start = plain.payload.as_ptr() as usize - base;
        let range = start..start + plain.payload.len();
        match plain.typ {
            ContentType::ApplicationData => {
                self.plain = range;
                Ok(Some(Opened::Data))
            }
            // close_notify (level, description 0); the level is ignored
            // in TLS 1.3 (RFC 8446 §6).
            ContentType::Alert if plain.payload.len() == 2 && plain.payload[1] == 0 => {
                Ok(Some(Opened::Closed))
            }
            ContentType::Alert => Err(invalid("TLS alert from the client")),
            // A KeyUpdate (or any other post-handshake message): see the
            // module docs.
            _ => Err(invalid("TLS handshake message after the upgrade")),
        }
    }
}

/// What one record held.
enum Opened {
    Data,
    Closed,
}

/// The length of the record starting `buf` (header included), once its
/// header is there.
fn record_len(buf: &[u8]) -> Option<usize> {
    let header = buf.get(..HEADER)?;
    Some(HEADER + usize::from(u16::from_be_bytes([header[3], header[4]])))
}

/// The key and IV of one direction (every TLS 1.3 suite rustls has).
fn keys(secrets: ConnectionTrafficSecrets) -> Result<(AeadKey, Iv), rustls::Error> {
    match secrets {
        ConnectionTrafficSecrets::Aes128Gcm { key, iv }
        | ConnectionTrafficSecrets::Aes256Gcm { key, iv }
        | ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => Ok((key, iv)),
        _ => Err(rustls::Error::General(
            "cipher suite without record keys".into(),
        )),
    }
}

fn invalid(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

#[cfg(any(test, feature = "fuzzing"))]
pub mod memory;

#[cfg(test)]
mod tests;
