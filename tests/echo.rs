//! `server.conformance_echo`: `GET /echo` echoes text and binary messages
//! through the production session stack, on the direct path (plain TCP)
//! and the queued path (`server.direct_writes = false`); off, it is a 404.

mod common;

use common::*;
use futures_util::SinkExt;
use tungstenite::Message;

const ECHO_ON: (&str, &str) = ("REDCAST_SERVER__CONFORMANCE_ECHO", "true");

/// Sends a text, a binary, an empty and a large (multi-segment) message and
/// expects each back as it went, in order.
async fn echoes_everything(gw: &redcast::Gateway) {
    let mut ws = connect(gw, "/echo?channel=ignored").await;
    // 60,000 bytes: many TCP segments, under client.max_message_bytes.
    let big = "é".repeat(30_000);
    let sent = [
        Message::Text("hello".into()),
        Message::Binary(vec![0u8, 159, 146, 150].into()),
        Message::Text("".into()),
        Message::Text(big.into()),
    ];
    for m in &sent {
        ws.send(m.clone()).await.unwrap();
    }
    for (i, m) in sent.into_iter().enumerate() {
        assert!(
            next_data(&mut ws).await == m,
            "message {i} came back changed"
        );
    }
    ws.close(None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_route_on_the_direct_path() {
    let redis = Redis::start();
    let gw = gateway(&redis, &[ECHO_ON]).await;
    echoes_everything(&gw).await;
    // An echo session joins no channel, even one named in its URL.
    assert_eq!(metric(&gw, "redcast_subscriptions").await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_route_on_the_queued_path() {
    let redis = Redis::start();
    let gw = gateway(
        &redis,
        &[ECHO_ON, ("REDCAST_SERVER__DIRECT_WRITES", "false")],
    )
    .await;
    echoes_everything(&gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_route_is_not_found_when_off() {
    let redis = Redis::start();
    let gw = gateway(&redis, &[]).await;
    assert_eq!(refused_status(&gw, "/echo", &[]).await, 404);
    // The gateway route is unchanged.
    let _ws = subscribed_client(&gw, &["still"]).await;
}

#[test]
fn echo_route_is_a_loud_warning() {
    let s = settings("redis://127.0.0.1:1", &[ECHO_ON]);
    assert!(
        s.warnings().iter().any(|w| w.contains("conformance_echo")),
        "{:?}",
        s.warnings()
    );
}
