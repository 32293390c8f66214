//! TLS termination for the public listener (rustls, TLS 1.2 and 1.3 only,
//! ALPN `http/1.1`) with live certificate reload.
//!
//! The served certificate sits behind a [`CertStore`] that a reload swaps
//! atomically: new handshakes get the new certificate, open connections
//! keep theirs. A reload is triggered by a change of the files (polled
//! every `tls.watch_interval`, which also catches the symlink swaps of
//! Kubernetes secret volumes and cert-manager) or by SIGHUP. A file that
//! does not load (unreadable, not PEM, key not matching the certificate)
//! is refused with a logged error and the old certificate stays.
//!
//! TLS 1.3 resumption (`tls.session_tickets`, on by default): stateless
//! tickets, encrypted with keys only this process holds (rustls's ring
//! `Ticketer`: ChaCha20-Poly1305, a new key every 6 hours, the previous
//! one still accepted), so every client can resume, however many there
//! are. A reload (SIGHUP) starts a new key too, keeping the last one for
//! the tickets already out ([`Tickets`]).

use crate::config::TlsSettings;
use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ProducesTickets, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;
use tokio_util::sync::CancellationToken;

/// A certificate or key that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("tls.cert: cannot read {path}: {message}")]
    Cert { path: PathBuf, message: String },
    #[error("tls.key: cannot read {path}: {message}")]
    Key { path: PathBuf, message: String },
    #[error("tls.key does not match tls.cert, or the key type is unsupported: {0}")]
    Mismatch(String),
    #[error("tls: {0}")]
    Config(String),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Loads and checks a certificate chain and its key.
pub fn load(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let cert_err = |message: String| TlsError::Cert {
        path: cert.to_owned(),
        message,
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| cert_err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_err(e.to_string()))?;
    if chain.is_empty() {
        return Err(cert_err("no certificate in the file".into()));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.to_owned(),
        message: e.to_string(),
    })?;
    CertifiedKey::from_der(chain, key_der, &provider())
        .map_err(|e| TlsError::Mismatch(e.to_string()))
}

/// Tickets sent after each full handshake: one is enough for the next
/// reconnect, and a resumed handshake brings a fresh one.
const TICKETS_PER_HANDSHAKE: usize = 1;

/// A ticket key set, and the one it replaced.
type KeyPair = (Arc<dyn ProducesTickets>, Option<Arc<dyn ProducesTickets>>);

/// Session ticket keys that a reload rotates: new tickets use the newest
/// key; tickets from before the last rotation still open.
#[derive(Debug)]
pub struct Tickets {
    /// The current key set and the one it replaced.
    keys: ArcSwap<KeyPair>,
}

impl Tickets {
    fn new() -> Result<Arc<Self>, TlsError> {
        Ok(Arc::new(Tickets {
            keys: ArcSwap::from_pointee((ticketer()?, None)),
        }))
    }

    /// Starts a new key; the current one stays for tickets already out.
    pub fn rotate(&self) -> Result<(), TlsError> {
        let fresh = ticketer()?;
        let current = self.keys.load().0.clone();
        self.keys.store(Arc::new((fresh, Some(current))));
        Ok(())
    }
}

fn ticketer() -> Result<Arc<dyn ProducesTickets>, TlsError> {
    rustls::crypto::ring::Ticketer::new().map_err(|e| TlsError::Config(e.to_string()))
}

impl ProducesTickets for Tickets {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        self.keys.load().0.lifetime()
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        self.keys.load().0.encrypt(plain)
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        let keys = self.keys.load();
        keys.0
            .decrypt(cipher)
            .or_else(|| keys.1.as_ref()?.decrypt(cipher))
    }
}

/// The certificate in use; swapped whole on reload.
#[derive(Debug)]
pub struct CertStore {
    current: ArcSwap<CertifiedKey>,
    settings: TlsSettings,
    /// `tls.session_tickets`: the ticket keys.
    tickets: Option<Arc<Tickets>>,
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

impl CertStore {
    /// Loads the configured files; fails when they are not usable.
    pub fn new(settings: TlsSettings) -> Result<Arc<CertStore>, TlsError> {
        let key = load(&settings.cert, &settings.key)?;
        let tickets = settings.session_tickets.then(Tickets::new).transpose()?;
        Ok(Arc::new(CertStore {
            current: ArcSwap::from_pointee(key),
            settings,
            tickets,
        }))
    }

    /// Starts new session ticket keys (on reload), if tickets are on.
    pub fn rotate_tickets(&self) -> Result<(), TlsError> {
        self.tickets.as_ref().map_or(Ok(()), |t| t.rotate())
    }

    /// Re-reads the files; on error the old certificate stays in use.
    pub fn reload(&self) -> Result<(), TlsError> {
        let key = load(&self.settings.cert, &self.settings.key)?;
        self.current.store(Arc::new(key));
        Ok(())
    }

    /// A rustls server configuration serving from this store.
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<ServerConfig>, TlsError> {
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        // After a WebSocket upgrade redcast keeps only the record keys of a
        // TLS 1.3 connection (`outbox::Records`): a third of the memory.
        config.enable_secret_extraction = true;
        if let Some(tickets) = &self.tickets {
            config.ticketer = tickets.clone();
            config.send_tls13_tickets = TICKETS_PER_HANDSHAKE;
        }
        Ok(Arc::new(config))
    }

    /// Reloads and logs the outcome.
    pub fn reload_logged(&self, why: &str) {
        match self.reload() {
            Ok(()) => tracing::info!(why, "tls certificate reloaded"),
            Err(e) => {
                tracing::error!(why, error = %e, "tls certificate reload refused; keeping the old one")
            }
        }
    }

    /// Polls the files and reloads when they change, until `stop`.
    pub async fn watch(self: Arc<Self>, stop: CancellationToken) {
        let mut last = self.fingerprint();
        let mut tick = tokio::time::interval(self.settings.watch_interval);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let now = self.fingerprint();
            if now != last {
                last = now;
                self.reload_logged("certificate files changed");
            }
        }
    }

    /// What identifies the files' current content cheaply.
    fn fingerprint(&self) -> [Option<(SystemTime, u64)>; 2] {
        let stat = |p: &Path| {
            std::fs::metadata(p)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())))
        };
        [stat(&self.settings.cert), stat(&self.settings.key)]
    }
}
