//! wss:// for tests: self-signed certificates written as cert-manager
//! does, a TLS gateway, and a rustls client that reports resumption.

use super::{gateway, settings, Redis};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::HandshakeKind;
use std::path::Path;
use std::sync::Arc;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;

pub struct Cert {
    pub pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
}

pub fn new_cert() -> Cert {
    let c = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    Cert {
        pem: c.cert.pem(),
        key_pem: c.signing_key.serialize_pem(),
        der: c.cert.der().clone(),
    }
}

pub fn write(dir: &Path, cert: &Cert) {
    // Write to temp names and rename, as cert-manager and certbot do.
    std::fs::write(dir.join("cert.tmp"), &cert.pem).unwrap();
    std::fs::write(dir.join("key.tmp"), &cert.key_pem).unwrap();
    std::fs::rename(dir.join("key.tmp"), dir.join("key.pem")).unwrap();
    std::fs::rename(dir.join("cert.tmp"), dir.join("cert.pem")).unwrap();
}

pub async fn tls_gateway(redis: &Redis, dir: &Path) -> redcast::Gateway {
    tls_gateway_with(redis, dir, &[]).await
}

/// The same with more settings.
pub async fn tls_gateway_with(
    redis: &Redis,
    dir: &Path,
    more: &[(&str, &str)],
) -> redcast::Gateway {
    let cert = dir.join("cert.pem").display().to_string();
    let key = dir.join("key.pem").display().to_string();
    let mut env = vec![
        ("REDCAST_TLS__CERT", cert.as_str()),
        ("REDCAST_TLS__KEY", key.as_str()),
        ("REDCAST_TLS__WATCH_INTERVAL", "50ms"),
        ("REDCAST_SERVER__HANDSHAKE_TIMEOUT", "500ms"),
    ];
    env.extend_from_slice(more);
    gateway(redis, &env).await
}

type Wss = WebSocketStream<TlsStream<tokio::net::TcpStream>>;

/// Connects over TLS trusting `roots`; returns the socket and the served cert.
pub async fn wss(
    gw: &redcast::Gateway,
    roots: &[&Cert],
    path: &str,
) -> (Wss, CertificateDer<'static>) {
    let (ws, _, served) = wss_with(gw, client_config(roots), path).await;
    (ws, served)
}

/// A rustls client configuration trusting `roots` (with rustls's default
/// in-memory store of session tickets).
pub fn client_config(roots: &[&Cert]) -> Arc<rustls::ClientConfig> {
    let mut store = rustls::RootCertStore::empty();
    for r in roots {
        store.add(r.der.clone()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(store)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}

/// Connects with `config`; also says how the TLS handshake went (full or
/// resumed) and which certificate was served.
pub async fn wss_with(
    gw: &redcast::Gateway,
    config: Arc<rustls::ClientConfig>,
    path: &str,
) -> (Wss, Option<HandshakeKind>, CertificateDer<'static>) {
    let tcp = tokio::net::TcpStream::connect(gw.ws_addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .expect("tls handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let kind = tls.get_ref().1.handshake_kind();
    let served = tls.get_ref().1.peer_certificates().unwrap()[0]
        .clone()
        .into_owned();
    let url = format!("wss://localhost:{}{}", gw.ws_addr.port(), path);
    let (ws, _) = tokio_tungstenite::client_async(url, tls)
        .await
        .expect("websocket over tls");
    (ws, kind, served)
}

/// A Redis server and a directory holding a fresh certificate.
pub fn tls_setup() -> (Redis, tempfile::TempDir, Cert) {
    let dir = tempfile::tempdir().unwrap();
    let cert = new_cert();
    write(dir.path(), &cert);
    (Redis::start(), dir, cert)
}

/// Settings serving the certificate in `dir` (to reload with).
pub fn tls_settings(redis: &Redis, dir: &Path) -> redcast::config::Settings {
    let path = |name: &str| dir.join(name).display().to_string();
    settings(
        &redis.url(),
        &[
            ("REDCAST_TLS__CERT", &path("cert.pem")),
            ("REDCAST_TLS__KEY", &path("key.pem")),
        ],
    )
}
