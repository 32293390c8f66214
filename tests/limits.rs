//! Bad input gets a clear answer (error frame, close code or HTTP status)
//! and disturbs nothing else: the same connection, or another one, keeps
//! working afterwards.

mod common;

use common::raw::RawWs;
use common::*;
use futures_util::SinkExt;
use serde_json::json;
use tungstenite::Message;

const UPGRADE_HEADERS: &str =
    "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n";

async fn assert_still_works(ws: &mut Ws) {
    send_json(ws, json!({"type":"ping","id":"alive"})).await;
    assert_eq!(recv_json(ws).await, json!({"type":"pong","id":"alive"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_error_frames_and_keep_the_connection() {
    let redis = Redis::start();
    let gw = gateway(&redis, &[("REDCAST_CLIENT__MAX_SUBSCRIPTIONS", "2")]).await;
    let mut ws = connect(&gw, "/ws").await;
    let cases = [
        ("{not json", None, "invalid_json"),
        ("[1,2]", None, "invalid_json"),
        (r#"{"type":"dance","id":"1"}"#, Some("1"), "unknown_type"),
        (r#"{"id":"2"}"#, Some("2"), "invalid_field"),
        (r#"{"type":7,"id":"3"}"#, Some("3"), "invalid_field"),
        (
            r#"{"type":"subscribe","channels":"a","id":"4"}"#,
            Some("4"),
            "invalid_field",
        ),
        (
            r#"{"type":"subscribe","channels":[1],"id":"5"}"#,
            Some("5"),
            "invalid_field",
        ),
        (
            r#"{"type":"subscribe","channels":[],"id":"6"}"#,
            Some("6"),
            "invalid_field",
        ),
        (
            r#"{"type":"subscribe","channels":["bad name!"],"id":"7"}"#,
            Some("7"),
            "invalid_channel",
        ),
        (
            r#"{"type":"subscribe","channels":["a","b","c"],"id":"8"}"#,
            Some("8"),
            "too_many_subscriptions",
        ),
        (r#"{"type":"ping","id":9}"#, None, "invalid_field"),
    ];
    for (frame, id, code) in cases {
        ws.send(Message::Text(frame.into())).await.unwrap();
        let reply = recv_json(&mut ws).await;
        assert_eq!(reply["type"], "error", "{frame}: {reply}");
        assert_eq!(reply["code"], code, "{frame}: {reply}");
        assert_eq!(
            reply.get("id").and_then(|v| v.as_str()),
            id,
            "{frame}: {reply}"
        );
        assert!(reply["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    assert_still_works(&mut ws).await;
    // Nothing was subscribed by the rejected requests.
    assert_eq!(redis.numsub("a").await, 0);
    assert!(metric(&gw, "redcast_inbound_errors_total").await >= cases.len() as f64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_limit_counts_existing_channels() {
    let redis = Redis::start();
    let gw = gateway(&redis, &[("REDCAST_CLIENT__MAX_SUBSCRIPTIONS", "2")]).await;
    let mut ws = subscribed_client(&gw, &["a", "b"]).await;
    send_json(
        &mut ws,
        json!({"type":"subscribe","channels":["a"],"id":"again"}),
    )
    .await;
    assert_eq!(
        recv_json(&mut ws).await,
        json!({"type":"subscribed","id":"again","channels":["a"]})
    );
    send_json(
        &mut ws,
        json!({"type":"subscribe","channels":["c"],"id":"x"}),
    )
    .await;
    let reply = recv_json(&mut ws).await;
    assert_eq!(
        (reply["code"].as_str(), reply["channels"].clone()),
        (Some("too_many_subscriptions"), json!(["c"]))
    );
    redis.publish("a", "1").await;
    assert_eq!(recv_json(&mut ws).await["data"], json!(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_frame_closes_with_1009_and_others_are_unaffected() {
    let redis = Redis::start();
    let gw = gateway(&redis, &[("REDCAST_CLIENT__MAX_MESSAGE_BYTES", "1024")]).await;
    let mut bystander = subscribed_client(&gw, &["n"]).await;
    let mut ws = connect(&gw, "/ws").await;
    let big = format!(r#"{{"type":"ping","id":"{}"}}"#, "x".repeat(2000));
    ws.send(Message::Text(big.into())).await.unwrap();
    assert_eq!(close_code(&mut ws).await, Some(1009));
    redis.publish("n", "1").await;
    assert_eq!(recv_json(&mut bystander).await["data"], json!(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_frame_from_client_closes_with_1003() {
    let redis = Redis::start();
    let gw = gateway(&redis, &[]).await;
    let mut ws = connect(&gw, "/ws").await;
    ws.send(Message::Binary(vec![1u8, 2, 3].into()))
        .await
        .unwrap();
    assert_eq!(close_code(&mut ws).await, Some(1003));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_mode_is_receive_only() {
    let redis = Redis::start();
    let gw = gateway(&redis, &[]).await;
    let (status, _) = get(gw.ws_addr, "/ws?format=raw").await;
    assert_eq!(status, 426, "no upgrade headers: 426 first");
    let mut ws = connect(&gw, "/ws?channel=r&format=raw").await;
    send_json(&mut ws, json!({"type":"ping"})).await;
    assert_eq!(close_code(&mut ws).await, Some(1008));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc6455_violations_get_the_rfc_close_codes() {
    let redis = Redis::start();
    let gw = gateway(&redis, &[]).await;
    // Unmasked client frame: 1002.
    let mut raw = RawWs::connect(gw.ws_addr, "/ws").await;
    raw.send(0x81, br#"{"type":"ping"}"#, false).await;
    assert_eq!(raw.close_code().await, Some(1002));
    // Reserved bit set: 1002.
    let mut raw = RawWs::connect(gw.ws_addr, "/ws").await;
    raw.send(0x81 | 0x40, br#"{"type":"ping"}"#, true).await;
    assert_eq!(raw.close_code().await, Some(1002));
    // Unknown opcode: 1002.
    let mut raw = RawWs::connect(gw.ws_addr, "/ws").await;
    raw.send(0x83, b"x", true).await;
    assert_eq!(raw.close_code().await, Some(1002));
    // Invalid UTF-8 in a text frame: 1007.
    let mut raw = RawWs::connect(gw.ws_addr, "/ws").await;
    raw.send(0x81, &[0xc3, 0x28], true).await;
    assert_eq!(raw.close_code().await, Some(1007));
    // A client close gets a close reply echoing its code.
    let mut raw = RawWs::connect(gw.ws_addr, "/ws").await;
    raw.send(0x88, &1000u16.to_be_bytes(), true).await;
    assert_eq!(raw.close_code().await, Some(1000));
    // The server still serves others.
    let mut ws = connect(&gw, "/ws").await;
    assert_still_works(&mut ws).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_close_releases_subscriptions_at_once() {
    let redis = Redis::start();
    let gw = gateway(&redis, &[]).await;
    let mut ws = subscribed_client(&gw, &["bye"]).await;
    ws.close(None).await.unwrap();
    assert_eq!(
        close_code(&mut ws).await,
        None,
        "close reply without a code echoes none"
    );
    wait_until("released", || async { redis.numsub("bye").await == 0 }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_handshakes_get_http_errors() {
    let redis = Redis::start();
    let gw = gateway(&redis, &[("REDCAST_CLIENT__MAX_SUBSCRIPTIONS", "2")]).await;
    let key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    let cases = [
        ("GET /ws HTTP/1.1\r\nHost: x\r\n\r\n".to_string(), 426),
        ("GET /nope HTTP/1.1\r\nHost: x\r\n\r\n".to_string(), 404),
        (format!("GET /ws HTTP/1.1\r\nHost: x\r\n{UPGRADE_HEADERS}\r\n"), 400),
        (format!("GET /ws HTTP/1.1\r\nHost: x\r\n{UPGRADE_HEADERS}Sec-WebSocket-Key: short\r\n\r\n"), 400),
        (format!("POST /ws HTTP/1.1\r\nHost: x\r\n{UPGRADE_HEADERS}{key}Content-Length: 0\r\n\r\n"), 400),
        (format!("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 8\r\n{key}\r\n"), 426),
        (format!("GET /ws?channel=bad%20name HTTP/1.1\r\nHost: x\r\n{UPGRADE_HEADERS}{key}\r\n"), 400),
        (format!("GET /ws?channel=a&format=xml HTTP/1.1\r\nHost: x\r\n{UPGRADE_HEADERS}{key}\r\n"), 400),
        (format!("GET /ws?channel=a&channel=b&channel=c HTTP/1.1\r\nHost: x\r\n{UPGRADE_HEADERS}{key}\r\n"), 400),
        (format!("GET /ws?format=raw HTTP/1.1\r\nHost: x\r\n{UPGRADE_HEADERS}{key}\r\n"), 400),
        ("garbage\r\n\r\n".to_string(), 400),
    ];
    for (req, want) in cases {
        let (status, body) = http(gw.ws_addr, &req).await;
        assert_eq!(status, want, "{req:?} -> {body}");
    }
    let mut ws = connect(&gw, "/ws").await;
    assert_still_works(&mut ws).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_limit_answers_503_before_upgrade() {
    let redis = Redis::start();
    let gw = gateway(&redis, &[("REDCAST_SERVER__MAX_CONNECTIONS", "2")]).await;
    let mut a = connect(&gw, "/ws").await;
    let _b = connect(&gw, "/ws").await;
    let err = tokio_tungstenite::connect_async(format!("ws://{}/ws", gw.ws_addr))
        .await
        .unwrap_err();
    match err {
        tungstenite::Error::Http(resp) => assert_eq!(resp.status(), 503),
        other => panic!("expected HTTP 503, got {other:?}"),
    }
    assert_still_works(&mut a).await;
    a.close(None).await.unwrap();
    close_code(&mut a).await;
    wait_until("a slot frees up", || async {
        tokio_tungstenite::connect_async(format!("ws://{}/ws", gw.ws_addr))
            .await
            .is_ok()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_handshake_is_dropped_after_the_timeout() {
    let redis = Redis::start();
    let gw = gateway(&redis, &[("REDCAST_SERVER__HANDSHAKE_TIMEOUT", "300ms")]).await;
    let mut silent = tokio::net::TcpStream::connect(gw.ws_addr).await.unwrap();
    let mut half = tokio::net::TcpStream::connect(gw.ws_addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    half.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // Meanwhile the accept loop serves others.
    let mut ws = connect(&gw, "/ws").await;
    assert_still_works(&mut ws).await;
    for s in [&mut silent, &mut half] {
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(DEADLINE, s.read(&mut buf))
            .await
            .expect("dropped")
            .unwrap_or(0);
        assert_eq!(n, 0, "connection closed without a response");
    }
    assert!(metric(&gw, "redcast_connections_rejected_total").await >= 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_pending_handshakes_are_closed_at_once() {
    use tokio::io::AsyncReadExt;
    let redis = Redis::start();
    let gw = gateway(
        &redis,
        &[
            ("REDCAST_SERVER__MAX_PENDING_HANDSHAKES", "2"),
            ("REDCAST_SERVER__HANDSHAKE_TIMEOUT", "30s"),
        ],
    )
    .await;
    // Two silent peers hold both handshake places (for up to 30 s).
    let _a = tokio::net::TcpStream::connect(gw.ws_addr).await.unwrap();
    let _b = tokio::net::TcpStream::connect(gw.ws_addr).await.unwrap();
    wait_until("both places taken", || async {
        metric(&gw, "redcast_handshakes_pending").await == 2.0
    })
    .await;
    let mut third = tokio::net::TcpStream::connect(gw.ws_addr).await.unwrap();
    let mut buf = [0u8; 8];
    let n = tokio::time::timeout(DEADLINE, third.read(&mut buf))
        .await
        .expect("closed, not held")
        .unwrap_or(0);
    assert_eq!(n, 0);
    wait_until("counted", || async {
        metric(&gw, "redcast_connections_rejected_total").await >= 1.0
    })
    .await;
    // Established sessions are not handshakes: they are not limited by it.
    drop((_a, _b));
    wait_until("places free", || async {
        metric(&gw, "redcast_handshakes_pending").await == 0.0
    })
    .await;
    let mut ws = connect(&gw, "/ws").await;
    assert_still_works(&mut ws).await;
}
