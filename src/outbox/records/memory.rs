//! [`Records`] without sockets: an in-memory [`Wire`] and a handshake
//! between rustls peers in memory, for the unit tests and the `records`
//! fuzz target (built with the `fuzzing` feature).

use super::{Records, Wire};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, ClientConnection, ServerConfig, ServerConnection};
use rustls::{RootCertStore, SupportedProtocolVersion};
use std::cell::{Cell, RefCell};
use std::io::{self, IoSlice};
use std::sync::Arc;

/// Bytes in memory as a socket: reads take from `incoming` (at most
/// `read_limit` bytes per read, `WouldBlock` when empty, end of stream
/// once `eof` is set), writes append to `outgoing` (at most `write_room`
/// bytes in all, then `WouldBlock`).
pub struct Memory {
    pub incoming: RefCell<Vec<u8>>,
    pub outgoing: RefCell<Vec<u8>>,
    pub read_limit: Cell<usize>,
    pub write_room: Cell<usize>,
    pub eof: Cell<bool>,
}

impl Default for Memory {
    fn default() -> Self {
        Self {
            incoming: RefCell::default(),
            outgoing: RefCell::default(),
            read_limit: Cell::new(usize::MAX),
            write_room: Cell::new(usize::MAX),
            eof: Cell::new(false),
        }
    }
}

impl Wire for Memory {
    fn try_read_buf(&self, buf: &mut Vec<u8>) -> io::Result<usize> {
        let mut incoming = self.incoming.borrow_mut();
        if incoming.is_empty() {
            return match self.eof.get() {
                true => Ok(0),
                false => Err(io::ErrorKind::WouldBlock.into()),
            };
        }
        let n = incoming.len().min(self.read_limit.get()).max(1);
        buf.extend(incoming.drain(..n));
        Ok(n)
    }

    fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        self.try_write_vectored(&[IoSlice::new(buf)])
    }

    fn try_write_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let mut out = self.outgoing.borrow_mut();
        let start = out.len();
        for b in bufs {
            let room = self.write_room.get().saturating_sub(out.len() - start);
            out.extend_from_slice(&b[..b.len().min(room)]);
        }
        let n = out.len() - start;
        self.write_room.set(self.write_room.get().saturating_sub(n));
        match n {
            0 if bufs.iter().any(|b| !b.is_empty()) => Err(io::ErrorKind::WouldBlock.into()),
            n => Ok(n),
        }
    }
}

/// Runs a handshake between `client` and a server made from `server`
/// (which must allow secret extraction) and takes the server's record
/// layer over, as redcast does after an upgrade. `None` where
/// [`Records::can_take_over`] says no (TLS 1.2).
pub fn handshake(
    server: Arc<ServerConfig>,
    mut client: ClientConnection,
) -> Option<(Records, ClientConnection)> {
    let mut server = ServerConnection::new(server).ok()?;
    let busy = |c: &ClientConnection, s: &ServerConnection| {
        c.is_handshaking() || s.is_handshaking() || c.wants_write() || s.wants_write()
    };
    while busy(&client, &server) {
        let mut bytes = Vec::new();
        client.write_tls(&mut bytes).ok()?;
        server.read_tls(&mut &bytes[..]).ok()?;
        server.process_new_packets().ok()?;
        bytes.clear();
        server.write_tls(&mut bytes).ok()?;
        client.read_tls(&mut &bytes[..]).ok()?;
        client.process_new_packets().ok()?;
    }
    if !Records::can_take_over(&server) {
        return None;
    }
    let (records, _) = Records::take_over(server).ok()?;
    Some((records, client))
}

/// A server configuration for `cert` and `key` that allows the hand-over
/// (as redcast's), and a client configuration trusting `cert`; both
/// limited to `versions`.
pub fn configs(
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
    versions: &[&'static SupportedProtocolVersion],
) -> Result<(Arc<ServerConfig>, Arc<ClientConfig>), rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)?
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)?;
    server.enable_secret_extraction = true;
    let mut roots = RootCertStore::empty();
    roots.add(cert)?;
    let client = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok((Arc::new(server), Arc::new(client)))
}
