//! TLS termination over real sockets: wss connects with ALPN http/1.1,
//! certificate reload swaps the served certificate without dropping open
//! connections, a corrupt certificate is refused and the old one kept,
//! and a silent or plain-text peer costs nothing but its own task.

mod common;

use common::tls::*;
use common::*;
use serde_json::json;
use tokio::io::AsyncReadExt;
use tokio_tungstenite::WebSocketStream;

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
    let settings = tls_settings(&redis, dir.path());
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
