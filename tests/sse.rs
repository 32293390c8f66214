//! The SSE transport: same envelopes, admission, limits and fan-out as
//! WebSocket; plus the served JavaScript client and demo page.

mod common;

use common::sse::SseClient;
use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_streams_envelopes_and_raw_payloads() {
    let redis = Redis::start();
    let gw = gateway(&redis, &[]).await;
    let mut s = SseClient::open(gw.ws_addr, "/sse?channel=a&channel=b", &[]).await;
    assert_eq!(s.status, 200);
    assert_eq!(s.header("content-type"), Some("text/event-stream"));
    assert_eq!(s.next_block().await.as_deref(), Some("retry: 3000"));
    assert_eq!(
        s.next_json().await,
        json!({"type":"subscribed","channels":["a","b"]})
    );
    redis.publish("a", r#"{"x":1}"#).await;
    assert_eq!(
        s.next_json().await,
        json!({"type":"message","channel":"a","data":{"x":1}})
    );
    // A multi-line JSON payload arrives whole.
    redis.publish("b", "{\n  \"y\": 2\n}").await;
    assert_eq!(
        s.next_json().await,
        json!({"type":"message","channel":"b","data":{"y":2}})
    );
    assert_eq!(redis.numsub("a").await, 1);

    let mut raw = SseClient::open(gw.ws_addr, "/sse?channel=r&format=raw", &[]).await;
    wait_until("raw subscribed", || async { redis.numsub("r").await == 1 }).await;
    redis.publish("r", "plain\ntext").await;
    redis.publish("r", vec![0xffu8]).await; // binary: skipped, counted
    redis.publish("r", "after").await;
    assert_eq!(raw.next_data().await.as_deref(), Some("plain\ntext"));
    assert_eq!(raw.next_data().await.as_deref(), Some("after"));
    assert_eq!(metric(&gw, "redcast_sse_binary_dropped_total").await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_keepalives_and_release_on_disconnect() {
    let redis = Redis::start();
    let gw = gateway(
        &redis,
        &[
            ("REDCAST_CLIENT__PING_INTERVAL", "100ms"),
            ("REDCAST_CLIENT__IDLE_TIMEOUT", "1s"),
        ],
    )
    .await;
    let mut s = SseClient::open(gw.ws_addr, "/sse?channel=k", &[]).await;
    let mut comments = 0;
    while comments < 3 {
        if s.next_block().await.expect("open").starts_with(": ping") {
            comments += 1;
        }
    }
    assert_eq!(metric(&gw, "redcast_connections_open").await, 1.0);
    drop(s);
    wait_until("stream released", || async { redis.numsub("k").await == 0 }).await;
    wait_until("connection count", || async {
        metric(&gw, "redcast_connections_open").await == 0.0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_admission_matches_websocket() {
    let redis = Redis::start();
    let secret = "0123456789abcdef0123456789abcdef-test";
    let rules = r#"[{pattern = "public.*", subscribe = "anyone"}, {pattern = "user.{sub}", subscribe = "authenticated"}]"#;
    let gw = gateway(
        &redis,
        &[
            ("REDCAST_AUTH__ALGORITHMS", r#"["HS256"]"#),
            ("REDCAST_AUTH__HMAC_SECRET", secret),
            ("REDCAST_CHANNELS__RULES", rules),
            (
                "REDCAST_CLIENT__ALLOWED_ORIGINS",
                r#"["https://app.example.com"]"#,
            ),
        ],
    )
    .await;
    let token = jwt("HS256", secret.as_bytes(), None, json!({"sub":"7"}));
    let cases = [
        ("/sse", vec![], 400),
        ("/sse?channel=bad%20name", vec![], 400),
        ("/sse?channel=other", vec![], 401),
        ("/sse?channel=user.7", vec![], 401),
        (&*format!("/sse?channel=user.8&token={token}"), vec![], 403),
        (
            "/sse?channel=public.x",
            vec![("Origin", "https://evil.test")],
            403,
        ),
        ("/sse?channel=public.x&token=garbage", vec![], 401),
    ];
    for (path, headers, want) in cases {
        let s = SseClient::open(gw.ws_addr, path, &headers).await;
        assert_eq!(s.status, want, "{path}");
    }
    let mut ok = SseClient::open(
        gw.ws_addr,
        &format!("/sse?channel=user.7&token={token}"),
        &[],
    )
    .await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.next_json().await["type"], "subscribed");
    let mut cookie = SseClient::open(
        gw.ws_addr,
        "/sse?channel=user.7",
        &[("Cookie", &format!("redcast_token={token}"))],
    )
    .await;
    assert_eq!(cookie.status, 200);
    let cors = SseClient::open(
        gw.ws_addr,
        "/sse?channel=public.x",
        &[("Origin", "https://app.example.com")],
    )
    .await;
    assert_eq!(
        cors.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(
        cors.header("access-control-allow-credentials"),
        Some("true")
    );
    assert_eq!(cookie.next_json().await["type"], "subscribed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_slow_consumer_is_cut_off_and_drain_ends_streams() {
    let redis = Redis::start();
    let env = [
        ("REDCAST_CLIENT__QUEUE_MAX_BYTES", "65536"),
        ("REDCAST_SERVER__DRAIN_WINDOW", "0s"),
    ];
    let gw = gateway(&redis, &env).await;
    let _slow = SseClient::open(gw.ws_addr, "/sse?channel=flood", &[]).await;
    let mut fine = SseClient::open(gw.ws_addr, "/sse?channel=calm", &[]).await;
    wait_until("subscribed", || async { redis.numsub("flood").await == 1 }).await;
    let payload = "x".repeat(100_000);
    let mut conn = redis.conn().await;
    for _ in 0..300 {
        let _: i64 = redis::cmd("PUBLISH")
            .arg("flood")
            .arg(&payload)
            .query_async(&mut conn)
            .await
            .unwrap();
        if metric(&gw, "redcast_slow_consumers_total").await >= 1.0 {
            break;
        }
    }
    wait_until("slow stream closed", || async {
        redis.numsub("flood").await == 0
    })
    .await;
    assert_eq!(fine.next_json().await["type"], "subscribed");
    let token = gw.shutdown_token();
    let done = tokio::spawn(gw.run_until_shutdown());
    token.cancel();
    assert_eq!(fine.next_data().await, None, "stream ends on shutdown");
    done.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_script_is_served_with_etag_and_demo_only_when_enabled() {
    let redis = Redis::start();
    let gw = gateway(&redis, &[]).await;
    let resp = http(
        gw.ws_addr,
        "GET /redcast.js HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(resp.0, 200);
    assert!(resp.1.contains("Redcast"));
    let raw = raw_head(&gw, "/redcast.js", "").await;
    let etag = raw
        .lines()
        .find_map(|l| l.strip_prefix("etag: "))
        .expect("etag")
        .to_string();
    assert!(raw.contains("cache-control: public, max-age=3600"), "{raw}");
    let again = raw_head(&gw, "/redcast.js", &format!("If-None-Match: {etag}\r\n")).await;
    assert!(again.starts_with("HTTP/1.1 304"), "{again}");
    assert_eq!(
        get(gw.ws_addr, "/demo").await.0,
        404,
        "demo is off by default"
    );

    let demo = gateway(&redis, &[("REDCAST_SERVER__DEMO", "true")]).await;
    let (status, body) = get(demo.ws_addr, "/demo").await;
    assert_eq!(status, 200);
    assert!(body.contains("/redcast.js"));
}

async fn raw_head(gw: &redcast::Gateway, path: &str, extra: &str) -> String {
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{extra}\r\n");
    let mut s = tokio::net::TcpStream::connect(gw.ws_addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    String::from_utf8_lossy(&buf)
        .split("\r\n\r\n")
        .next()
        .unwrap_or("")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_lived_streams_end_cleanly() {
    // Any panic in a server task of this test binary is recorded.
    static PANICS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if info.to_string().contains("resumed after completion") {
            PANICS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        previous(info);
    }));
    let redis = Redis::start();
    let gw = gateway(&redis, &[]).await;
    for _ in 0..5 {
        let mut s = SseClient::open(gw.ws_addr, "/sse?channel=brief", &[]).await;
        assert_eq!(s.next_json().await["type"], "subscribed");
        drop(s);
        wait_until("stream gone", || async {
            metric(&gw, "redcast_connections_open").await == 0.0
        })
        .await;
    }
    // The connection task notices the end right after the stream task.
    wait_until("handshake slots free", || async {
        metric(&gw, "redcast_handshakes_pending").await == 0.0
    })
    .await;
    assert_eq!(PANICS.load(std::sync::atomic::Ordering::SeqCst), 0);
}
