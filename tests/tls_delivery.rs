//! wss:// on the direct path: the fan-out shards encrypt and write TLS
//! clients' frames themselves, in order, whatever their size; requests
//! still come in; and TLS 1.3 session tickets let every client resume,
//! across a reload that rotates the ticket keys.

mod common;

use common::tls::*;
use common::*;
use futures_util::future::join_all;
use futures_util::SinkExt;
use rustls::client::Resumption;
use rustls::HandshakeKind;
use serde_json::json;
use std::sync::Arc;

/// A payload larger than one TLS record (16 KiB).
fn big(n: i64) -> String {
    format!("\"{}{}\"", n, "x".repeat(40_000))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_clients_get_every_message_in_order_through_the_shards() {
    let (redis, dir, cert) = tls_setup();
    let gw = tls_gateway_with(
        &redis,
        dir.path(),
        &[("REDCAST_SERVER__WORKER_THREADS", "3")],
    )
    .await;
    let mut clients = Vec::new();
    for _ in 0..12 {
        let (mut ws, _) = wss(&gw, &[&cert], "/ws?channel=a&channel=b").await;
        assert_eq!(recv_json(&mut ws).await["type"], "subscribed");
        clients.push(ws);
    }
    for i in 0..600i64 {
        let (ch, payload) = match i % 2 {
            0 => ("a", if i % 100 == 0 { big(i) } else { i.to_string() }),
            _ => ("b", i.to_string()),
        };
        redis.publish(ch, payload).await;
    }
    let checks = clients.into_iter().map(|mut ws| async move {
        let mut got = Vec::new();
        while got.len() < 600 {
            let m = recv_json(&mut ws).await;
            let n = match &m["data"] {
                serde_json::Value::String(s) => s.trim_end_matches('x').parse().unwrap(),
                v => v.as_i64().unwrap(),
            };
            assert_eq!(m["channel"], if n % 2 == 0 { "a" } else { "b" });
            got.push(n);
        }
        let (mut a, mut b): (Vec<i64>, Vec<i64>) = got.into_iter().partition(|n| n % 2 == 0);
        let want_a: Vec<i64> = (0..600).filter(|n| n % 2 == 0).collect();
        let want_b: Vec<i64> = (0..600).filter(|n| n % 2 == 1).collect();
        assert_eq!((&mut a, &mut b), (&mut want_a.clone(), &mut want_b.clone()));
        // Requests still come in through the shared TLS state.
        let ping = json!({"type":"ping","id":"p"}).to_string();
        ws.send(tungstenite::Message::Text(ping.into()))
            .await
            .unwrap();
        assert_eq!(recv_json(&mut ws).await, json!({"type":"pong","id":"p"}));
    });
    join_all(checks).await;
}

/// Connects, reads the ack (the client takes its ticket on the way), and
/// leaves; returns how the handshake went.
async fn visit(gw: &redcast::Gateway, config: &Arc<rustls::ClientConfig>) -> HandshakeKind {
    let (mut ws, kind, _) = wss_with(gw, config.clone(), "/ws?channel=t").await;
    assert_eq!(recv_json(&mut ws).await["type"], "subscribed");
    let _ = ws.close(None).await;
    kind.expect("handshake done")
}

/// Clients each with their own ticket store, as browsers are.
fn own_stores(cert: &Cert, n: usize) -> Vec<Arc<rustls::ClientConfig>> {
    let base = client_config(&[cert]);
    (0..n)
        .map(|_| {
            let mut c = (*base).clone();
            c.resumption = Resumption::in_memory_sessions(4);
            Arc::new(c)
        })
        .collect()
}

/// How many of `clients` resume on their second visit.
async fn resumed_on_return(gw: &redcast::Gateway, clients: &[Arc<rustls::ClientConfig>]) -> usize {
    for c in clients {
        assert_eq!(visit(gw, c).await, HandshakeKind::Full);
    }
    let mut resumed = 0;
    for c in clients {
        resumed += (visit(gw, c).await == HandshakeKind::Resumed) as usize;
    }
    resumed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls13_tickets_resume_every_client_and_survive_a_reload() {
    let (redis, dir, cert) = tls_setup();
    let gw = tls_gateway(&redis, dir.path()).await;
    // More clients than rustls's in-memory session cache holds (256).
    let clients = own_stores(&cert, 300);
    assert_eq!(resumed_on_return(&gw, &clients).await, 300);
    // A reload starts new ticket keys; tickets already out still resume.
    let again = tls_settings(&redis, dir.path());
    for _ in 0..2 {
        gw.reloader().apply(again.clone()).unwrap();
        assert_eq!(visit(&gw, &clients[0]).await, HandshakeKind::Resumed);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_tickets_only_the_session_cache_resumes() {
    let (redis, dir, cert) = tls_setup();
    let off = [("REDCAST_TLS__SESSION_TICKETS", "false")];
    let gw = tls_gateway_with(&redis, dir.path(), &off).await;
    let resumed = resumed_on_return(&gw, &own_stores(&cert, 300)).await;
    assert!(
        resumed < 300,
        "{resumed} of 300 resumed from a 256-entry cache"
    );
}
