//! wss:// after the upgrade: redcast keeps only a TLS 1.3 connection's
//! record keys and reads and writes its records itself. Hostile or
//! unsupported records end only their own connection; close_notify ends a
//! session; requests larger than a record arrive whole; TLS 1.2 clients
//! keep rustls (the queued path) and work the same.

mod common;

use common::tls::*;
use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tungstenite::Message;

type Wss =
    tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

/// Waits (bounded) until the server has ended the connection.
async fn ended(ws: &mut Wss) -> bool {
    let end = async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => continue,
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), end)
        .await
        .is_ok()
}

async fn subscribed(gw: &redcast::Gateway, cert: &Cert) -> Wss {
    let (mut ws, _) = wss(gw, &[cert], "/ws?channel=a").await;
    assert_eq!(recv_json(&mut ws).await["type"], "subscribed");
    ws
}

/// Writes `bytes` under the TLS layer, straight to the socket.
async fn raw(ws: &mut Wss, bytes: &[u8]) {
    ws.get_mut().get_mut().0.write_all(bytes).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_records_end_only_their_connection() {
    let (redis, dir, cert) = tls_setup();
    let gw = tls_gateway(&redis, dir.path()).await;
    let mut good = subscribed(&gw, &cert).await;
    // A record that does not decrypt (forged or corrupted).
    let mut forged = subscribed(&gw, &cert).await;
    let mut record = vec![0x17, 0x03, 0x03, 0x00, 0x40];
    record.extend_from_slice(&[0x5a; 0x40]);
    raw(&mut forged, &record).await;
    // A record longer than TLS allows.
    let mut oversized = subscribed(&gw, &cert).await;
    raw(&mut oversized, &[0x17, 0x03, 0x03, 0x48, 0x00]).await;
    // A plaintext handshake record after the handshake.
    let mut plaintext = subscribed(&gw, &cert).await;
    raw(&mut plaintext, &[0x16, 0x03, 0x03, 0x00, 0x01, 0x00]).await;
    // A KeyUpdate (not supported after the hand-over: see outbox::records).
    let mut key_update = subscribed(&gw, &cert).await;
    key_update
        .get_mut()
        .get_mut()
        .1
        .refresh_traffic_keys()
        .unwrap();
    key_update
        .send(Message::Ping(vec![1].into()))
        .await
        .unwrap();
    for ws in [&mut forged, &mut oversized, &mut plaintext, &mut key_update] {
        assert!(ended(ws).await, "a hostile connection stayed open");
    }
    // The others go on as before.
    redis.publish("a", "1").await;
    assert_eq!(recv_json(&mut good).await["data"], 1);
    let ping = json!({"type":"ping","id":"p"}).to_string();
    good.send(Message::Text(ping.into())).await.unwrap();
    assert_eq!(recv_json(&mut good).await, json!({"type":"pong","id":"p"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_notify_ends_the_session() {
    let (redis, dir, cert) = tls_setup();
    let gw = tls_gateway(&redis, dir.path()).await;
    let mut ws = subscribed(&gw, &cert).await;
    ws.get_mut().shutdown().await.unwrap();
    assert!(ended(&mut ws).await);
    // The session is gone.
    wait_until("the session ended", || async {
        metric(&gw, "redcast_connections_open").await == 0.0
    })
    .await;
    let mut other = subscribed(&gw, &cert).await;
    redis.publish("a", "2").await;
    assert_eq!(recv_json(&mut other).await["data"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_larger_than_a_record_arrive_whole() {
    let (redis, dir, cert) = tls_setup();
    let echo = [("REDCAST_SERVER__CONFORMANCE_ECHO", "true")];
    let gw = tls_gateway_with(&redis, dir.path(), &echo).await;
    let (mut ws, _) = wss(&gw, &[&cert], "/echo").await;
    for size in [1, 16 * 1024 - 1, 16 * 1024 + 1, 60_000] {
        let text = "y".repeat(size);
        ws.send(Message::Text(text.clone().into())).await.unwrap();
        match ws.next().await {
            Some(Ok(Message::Text(got))) => assert!(got.as_str() == text, "{size} bytes"),
            other => panic!("echo of {size} bytes: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls12_clients_keep_working() {
    let (redis, dir, cert) = tls_setup();
    let gw = tls_gateway(&redis, dir.path()).await;
    let base = client_config(&[&cert]);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(root_store(&cert))
        .with_no_client_auth();
    config.alpn_protocols = base.alpn_protocols.clone();
    let (mut ws, _, _) = wss_with(&gw, Arc::new(config), "/ws?channel=a").await;
    assert_eq!(
        ws.get_ref().get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    assert_eq!(recv_json(&mut ws).await["type"], "subscribed");
    for i in 0..50 {
        redis.publish("a", i.to_string()).await;
    }
    for i in 0..50 {
        assert_eq!(recv_json(&mut ws).await["data"], i);
    }
    let ping = json!({"type":"ping","id":"q"}).to_string();
    ws.send(Message::Text(ping.into())).await.unwrap();
    assert_eq!(recv_json(&mut ws).await, json!({"type":"pong","id":"q"}));
}

fn root_store(cert: &Cert) -> rustls::RootCertStore {
    let mut store = rustls::RootCertStore::empty();
    store.add(cert.der.clone()).unwrap();
    store
}
