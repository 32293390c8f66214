//! Redis going away and coming back, slow and silent clients, and
//! graceful shutdown.

mod common;

use common::raw::RawWs;
use common::*;
use futures_util::StreamExt;
use serde_json::json;
use std::time::Duration;
use tungstenite::Message;

const NO_DRAIN_WINDOW: [(&str, &str); 2] = [
    ("REDCAST_SERVER__DRAIN_WINDOW", "0s"),
    ("REDCAST_SERVER__DRAIN_TIMEOUT", "5s"),
];

const FAST_RECONNECT: [(&str, &str); 3] = [
    ("REDCAST_REDIS__RECONNECT_MIN", "20ms"),
    ("REDCAST_REDIS__RECONNECT_MAX", "200ms"),
    ("REDCAST_REDIS__PING_INTERVAL", "500ms"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_at_start_then_up_delivers() {
    let mut redis = Redis::not_started();
    let gw = gateway(&redis, &FAST_RECONNECT).await;
    let (status, reason) = get(gw.admin_addr, "/readyz").await;
    assert_eq!(status, 503);
    assert!(reason.contains("redis"), "{reason}");
    assert_eq!(get(gw.admin_addr, "/healthz").await.0, 200);

    let mut ws = connect(&gw, "/ws").await;
    send_json(
        &mut ws,
        json!({"type":"subscribe","channels":["later"],"id":"s"}),
    )
    .await;
    redis.launch();
    // The ack arrives only once Redis confirmed the subscription.
    assert_eq!(
        recv_json(&mut ws).await,
        json!({"type":"subscribed","id":"s","channels":["later"]})
    );
    wait_until("ready", || ready(&gw)).await;
    redis.publish("later", "1").await;
    assert_eq!(recv_json(&mut ws).await["data"], json!(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_mid_stream_resumes_delivery_on_open_connections() {
    let mut redis = Redis::start();
    let gw = gateway(&redis, &FAST_RECONNECT).await;
    let mut ws = subscribed_client(&gw, &["live", "also"]).await;
    wait_until("ready", || ready(&gw)).await;
    for i in 0..50 {
        redis.publish("live", i).await;
    }
    for i in 0..50 {
        assert_eq!(recv_json(&mut ws).await["data"], json!(i));
    }

    redis.kill();
    wait_until("not ready while redis is down", || async {
        !ready(&gw).await
    })
    .await;
    assert_eq!(metric(&gw, "redcast_redis_connected").await, 0.0);
    redis.launch();
    wait_until("ready again", || ready(&gw)).await;
    assert_eq!(redis.numsub("live").await, 1, "resubscribed");
    assert_eq!(redis.numsub("also").await, 1, "resubscribed");
    assert!(metric(&gw, "redcast_redis_reconnects_total").await >= 1.0);

    // The same connection receives again, in order.
    for i in 100..150 {
        redis.publish("live", i).await;
    }
    for i in 100..150 {
        assert_eq!(recv_json(&mut ws).await["data"], json!(i));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumer_is_closed_and_others_keep_everything() {
    let redis = Redis::start();
    // A long write timeout: the slow client reads its backlog only after
    // the fast one is done, and must then still find the close frame.
    let env = [
        ("REDCAST_CLIENT__QUEUE_MAX_BYTES", "1048576"),
        ("REDCAST_CLIENT__WRITE_TIMEOUT", "60s"),
    ];
    let gw = gateway(&redis, &env).await;
    let mut fast = subscribed_client(&gw, &["firehose"]).await;
    let mut slow = subscribed_client(&gw, &["firehose"]).await;
    // 40 MB in total: far beyond socket buffers and the 1 MiB queue. The
    // publisher stays at most 8 messages ahead of the fast reader, so only
    // the client that stopped reading can fall behind.
    const N: usize = 400;
    let (progress, mut seen) = tokio::sync::watch::channel(0usize);
    let reader = tokio::spawn(async move {
        for i in 1..=N {
            assert_eq!(
                recv_json(&mut fast).await["data"].as_str().map(str::len),
                Some(100_000)
            );
            progress.send_replace(i);
        }
        fast
    });
    let payload = "x".repeat(100_000);
    let mut conn = redis.conn().await;
    for i in 0..N {
        seen.wait_for(|n| n + 8 >= i).await.unwrap();
        let _: i64 = redis::cmd("PUBLISH")
            .arg("firehose")
            .arg(&payload)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    let mut fast = reader.await.expect("the fast client got every message");
    wait_until("slow consumer detected", || async {
        metric(&gw, "redcast_slow_consumers_total").await >= 1.0
    })
    .await;
    // The slow client now reads: some messages, then close 4008.
    let mut got = 0;
    let code = loop {
        match tokio::time::timeout(DEADLINE, slow.next())
            .await
            .expect("frame")
        {
            Some(Ok(Message::Text(_))) => got += 1,
            Some(Ok(Message::Close(f))) => {
                let _ = slow.next().await; // sends the close reply
                break f.map(|f| u16::from(f.code));
            }
            Some(Ok(_)) => {}
            _ => break None,
        }
    };
    assert!(got < N, "the slow client was cut off");
    assert_eq!(code, Some(4008));
    wait_until("released", || async {
        metric(&gw, "redcast_connections_open").await == 1.0
    })
    .await;
    redis.publish("firehose", "1").await;
    assert_eq!(recv_json(&mut fast).await["data"], json!(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_pings_and_closes_silent_clients() {
    let redis = Redis::start();
    let env = [
        ("REDCAST_CLIENT__PING_INTERVAL", "100ms"),
        ("REDCAST_CLIENT__IDLE_TIMEOUT", "350ms"),
    ];
    let gw = gateway(&redis, &env).await;
    // A client that reads but never answers pings is closed with 4001.
    let mut raw = RawWs::connect(gw.ws_addr, "/ws").await;
    let (op, _) = raw.read().await.expect("a frame");
    assert_eq!(op, 0x9, "server ping");
    assert_eq!(raw.close_code().await, Some(4001));
    // A library client answers pings and stays.
    let mut ws = connect(&gw, "/ws").await;
    let mut pings = 0;
    while pings < 6 {
        if let Some(Ok(Message::Ping(_))) = ws.next().await {
            pings += 1;
        }
    }
    send_json(&mut ws, json!({"type":"ping","id":"still"})).await;
    assert_eq!(
        recv_json(&mut ws).await,
        json!({"type":"pong","id":"still"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_fails_readiness_closes_clients_with_1001_and_ends() {
    let redis = Redis::start();
    let gw = gateway(&redis, &NO_DRAIN_WINDOW).await;
    let mut clients = Vec::new();
    for _ in 0..20 {
        clients.push(subscribed_client(&gw, &["bye"]).await);
    }
    wait_until("ready", || ready(&gw)).await;
    let (ws_addr, admin_addr) = (gw.ws_addr, gw.admin_addr);
    let token = gw.shutdown_token();
    let done = tokio::spawn(gw.run_until_shutdown());
    token.cancel();
    for ws in &mut clients {
        assert_eq!(close_code(ws).await, Some(1001));
    }
    tokio::time::timeout(Duration::from_secs(10), done)
        .await
        .expect("exits within the drain deadline")
        .unwrap();
    assert!(
        tokio::net::TcpStream::connect(ws_addr).await.is_err(),
        "listener closed"
    );
    assert!(
        tokio::net::TcpStream::connect(admin_addr).await.is_err(),
        "admin closed"
    );
    wait_until("redis subscription released", || async {
        redis.numsub("bye").await == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_fails_during_drain() {
    let redis = Redis::start();
    let gw = gateway(&redis, &NO_DRAIN_WINDOW).await;
    // A client that never answers the close keeps the drain open.
    let mut raw = RawWs::connect(gw.ws_addr, "/ws?channel=x").await;
    wait_until("ready", || ready(&gw)).await;
    let admin = gw.admin_addr;
    let token = gw.shutdown_token();
    let done = tokio::spawn(gw.run_until_shutdown());
    token.cancel();
    let (status, body) = get(admin, "/readyz").await;
    assert_eq!((status, body.trim()), (503, "shutting down"));
    assert_eq!(raw.close_code().await, Some(1001));
    done.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_spreads_closes_over_the_window_while_still_delivering() {
    let redis = Redis::start();
    let env = [
        ("REDCAST_SERVER__DRAIN_WINDOW", "2s"),
        ("REDCAST_SERVER__DRAIN_TIMEOUT", "6s"),
    ];
    let gw = gateway(&redis, &env).await;
    let mut clients = Vec::new();
    for _ in 0..20 {
        clients.push(subscribed_client(&gw, &["drain"]).await);
    }
    let admin = gw.admin_addr;
    let token = gw.shutdown_token();
    let done = tokio::spawn(gw.run_until_shutdown());
    let start = tokio::time::Instant::now();
    token.cancel();
    assert_eq!(get(admin, "/readyz").await.0, 503, "readiness fails first");
    // Clients still waiting for their turn keep receiving.
    redis.publish("drain", "1").await;
    let mut closed_at = Vec::new();
    for mut ws in clients {
        closed_at.push(tokio::spawn(async move {
            loop {
                match ws.next().await {
                    Some(Ok(Message::Close(f))) => {
                        let _ = ws.next().await;
                        return (f.map(|f| u16::from(f.code)), tokio::time::Instant::now());
                    }
                    Some(Ok(_)) => continue,
                    _ => return (None, tokio::time::Instant::now()),
                }
            }
        }));
    }
    let mut times = Vec::new();
    for h in closed_at {
        let (code, at) = h.await.unwrap();
        assert_eq!(code, Some(1001));
        times.push(at.duration_since(start));
    }
    times.sort();
    let spread = times[times.len() - 1] - times[0];
    assert!(
        spread > Duration::from_millis(500),
        "closes spread over the window, got {times:?}"
    );
    assert!(
        times[times.len() - 1] < Duration::from_secs(4),
        "all closed within the window: {times:?}"
    );
    done.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_reader_gets_its_backlog_whole_and_in_order() {
    let redis = Redis::start();
    // 20 MB: beyond the kernel's socket buffers, within the 32 MiB queue.
    let gw = gateway(&redis, &[("REDCAST_CLIENT__QUEUE_MAX_BYTES", "33554432")]).await;
    let mut ws = subscribed_client(&gw, &["backlog"]).await;
    let mut conn = redis.conn().await;
    for i in 0..200 {
        let payload = format!("{{\"i\":{i},\"pad\":\"{}\"}}", "x".repeat(100_000));
        let _: i64 = redis::cmd("PUBLISH")
            .arg("backlog")
            .arg(payload)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    for i in 0..200 {
        assert_eq!(recv_json(&mut ws).await["data"]["i"], json!(i));
    }
    assert_eq!(metric(&gw, "redcast_slow_consumers_total").await, 0.0);
}
