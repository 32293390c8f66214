//! TLS termination over real sockets: wss connects with ALPN http/1.1,
//! certificate reload swaps the served certificate without dropping open
//! connections, a corrupt certificate is refused and the old one kept,
//! and a silent or plain-text peer costs nothing but its own task.

mod common;

use common::*;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::json;
use std::path::Path;
use std::sync::Arc;
use tokio::io::AsyncReadExt;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;

struct Cert {
    pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

fn new_cert() -> Cert {
    let c = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    Cert {
        pem: c.cert.pem(),
        key_pem: c.signing_key.serialize_pem(),
        der: c.cert.der().clone(),
    }
}

fn write(dir: &Path, cert: &Cert) {
    // Write to temp names and rename, as cert-manager and certbot do.
    std::fs::write(dir.join("cert.tmp"), &cert.pem).unwrap();
    std::fs::write(dir.join("key.tmp"), &cert.key_pem).unwrap();
    std::fs::rename(dir.join("key.tmp"), dir.join("key.pem")).unwrap();
    std::fs::rename(dir.join("cert.tmp"), dir.join("cert.pem")).unwrap();
}

async fn tls_gateway(redis: &Redis, dir: &Path) -> redcast::Gateway {
    let cert = dir.join("cert.pem").display().to_string();
    let key = dir.join("key.pem").display().to_string();
    gateway(
        redis,
        &[
            ("REDCAST_TLS__CERT", &cert),
            ("REDCAST_TLS__KEY", &key),
            ("REDCAST_TLS__WATCH_INTERVAL", "50ms"),
            ("REDCAST_SERVER__HANDSHAKE_TIMEOUT", "500ms"),
        ],
    )
    .await
}

type Wss = WebSocketStream<TlsStream<tokio::net::TcpStream>>;

/// Connects over TLS trusting `roots`; returns the socket and the served cert.
async fn wss(gw: &redcast::Gateway, roots: &[&Cert], path: &str) -> (Wss, CertificateDer<'static>) {
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
    let tcp = tokio::net::TcpStream::connect(gw.ws_addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("tls handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let served = tls.get_ref().1.peer_certificates().unwrap()[0]
        .clone()
        .into_owned();
    let url = format!("wss://localhost:{}{}", gw.ws_addr.port(), path);
    let (ws, _) = tokio_tungstenite::client_async(url, tls)
        .await
        .expect("websocket over tls");
    (ws, served)
}

async fn ping<S>(ws: &mut WebSocketStream<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use futures_util::{SinkExt, StreamExt};
    ws.send(tungstenite::Message::Text(
        json!({"type":"ping","id":"t"}).to_string().into(),
    ))
    .await
    .unwrap();
    loop {
        match ws.next().await {
            Some(Ok(tungstenite::Message::Text(t))) => {
                assert_eq!(
                    serde_json::from_str::<serde_json::Value>(&t).unwrap(),
                    json!({"type":"pong","id":"t"})
                );
                return;
            }
            Some(Ok(_)) => continue,
            other => panic!("connection lost: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_delivers_and_reload_swaps_certificate_without_dropping() {
    let redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (new_cert(), new_cert());
    write(dir.path(), &first);
    let gw = tls_gateway(&redis, dir.path()).await;
    let (mut open, served) = wss(&gw, &[&first, &second], "/ws?channel=secure").await;
    assert_eq!(served, first.der);
    // Publish only once Redis has confirmed the subscription (the ack).
    assert_eq!(recv_json(&mut open).await["type"], "subscribed");
    redis.publish("secure", "1").await;
    assert_eq!(
        recv_json(&mut open).await,
        json!({"type":"message","channel":"secure","data":1})
    );

    write(dir.path(), &second);
    wait_until("new connections get the new certificate", || async {
        wss(&gw, &[&first, &second], "/ws").await.1 == second.der
    })
    .await;
    ping(&mut open).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_certificate_is_refused_and_old_one_kept() {
    let redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let first = new_cert();
    write(dir.path(), &first);
    let gw = tls_gateway(&redis, dir.path()).await;
    let (mut open, _) = wss(&gw, &[&first], "/ws").await;
    std::fs::write(
        dir.path().join("cert.pem"),
        "-----BEGIN CERTIFICATE-----\ngarbage\n",
    )
    .unwrap();
    let settings = settings(
        &redis.url(),
        &[
            (
                "REDCAST_TLS__CERT",
                &dir.path().join("cert.pem").display().to_string(),
            ),
            (
                "REDCAST_TLS__KEY",
                &dir.path().join("key.pem").display().to_string(),
            ),
        ],
    );
    let err = gw
        .reloader()
        .apply(settings)
        .expect_err("a corrupt certificate is refused");
    assert!(err.to_string().contains("tls.cert"), "{err}");
    // A key that does not match the certificate is refused too.
    let other = new_cert();
    std::fs::write(dir.path().join("cert.pem"), &first.pem).unwrap();
    std::fs::write(dir.path().join("key.pem"), &other.key_pem).unwrap();
    assert!(redcast::tls::load(&dir.path().join("cert.pem"), &dir.path().join("key.pem")).is_err());
    let (_, served) = wss(&gw, &[&first], "/ws").await;
    assert_eq!(served, first.der, "old certificate still served");
    ping(&mut open).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_plaintext_peers_are_dropped() {
    let redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let cert = new_cert();
    write(dir.path(), &cert);
    let gw = tls_gateway(&redis, dir.path()).await;
    let mut silent = tokio::net::TcpStream::connect(gw.ws_addr).await.unwrap();
    let (status, _) = get(gw.ws_addr, "/ws").await;
    assert_eq!(status, 0, "plain HTTP gets no HTTP answer from a TLS port");
    let (mut ws, _) = wss(&gw, &[&cert], "/ws").await;
    ping(&mut ws).await;
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(DEADLINE, silent.read(&mut buf))
        .await
        .expect("dropped")
        .unwrap_or(0);
    assert_eq!(n, 0);
    assert!(metric(&gw, "redcast_connections_rejected_total").await >= 2.0);
}

#[test]
fn check_config_refuses_unreadable_certificates() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_redcast"))
        .args(["check-config"])
        .env("REDCAST_TLS__CERT", "/nonexistent/cert.pem")
        .env("REDCAST_TLS__KEY", "/nonexistent/key.pem")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("tls.cert"));
}
