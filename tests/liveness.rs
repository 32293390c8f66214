//! Readiness tells the truth about delivery: a pub/sub connection that is
//! open but silent, a killed pub/sub client, and the probe channel's
//! privacy.

mod common;

use common::proxy::Blackhole;
use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_pubsub_connection_fails_readiness_and_recovers() {
    let redis = Redis::start();
    let hole = Blackhole::start(format!("127.0.0.1:{}", redis.port).parse().unwrap()).await;
    // PINGs rarely, so that only the delivery probe can notice.
    let env = [
        ("REDCAST_REDIS__PING_INTERVAL", "1h"),
        ("REDCAST_REDIS__PROBE_INTERVAL", "200ms"),
        ("REDCAST_REDIS__PROBE_TIMEOUT", "600ms"),
        ("REDCAST_REDIS__TIMEOUT", "500ms"),
        ("REDCAST_REDIS__RECONNECT_MIN", "50ms"),
        ("REDCAST_REDIS__RECONNECT_MAX", "300ms"),
    ];
    let gw = redcast::Gateway::start(settings(&hole.url(), &env))
        .await
        .unwrap();
    let mut ws = subscribed_client(&gw, &["watched"]).await;
    wait_until("ready", || ready(&gw)).await;
    wait_until("probes come back", || async {
        metric(&gw, "redcast_delivery_probe_ok").await == 1.0
    })
    .await;

    hole.set(true);
    wait_until("readiness fails on the silent connection", || async {
        let (status, body) = get(gw.admin_addr, "/readyz").await;
        status == 503 && (body.contains("probe") || body.contains("redis"))
    })
    .await;
    wait_until("the silent connection is given up", || async {
        metric(&gw, "redcast_delivery_probe_failures_total").await >= 1.0
    })
    .await;
    hole.set(false);
    wait_until("ready again", || ready(&gw)).await;
    redis.publish("watched", "1").await;
    assert_eq!(
        recv_json(&mut ws).await,
        json!({"type":"message","channel":"watched","data":1})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_pubsub_client_is_replaced() {
    let redis = Redis::start();
    let env = [
        ("REDCAST_REDIS__RECONNECT_MIN", "20ms"),
        ("REDCAST_REDIS__RECONNECT_MAX", "100ms"),
    ];
    let gw = gateway(&redis, &env).await;
    let mut ws = subscribed_client(&gw, &["kill"]).await;
    wait_until("ready", || ready(&gw)).await;
    let killed = redis.kill_pubsub_clients().await;
    assert_eq!(killed, 1, "one pub/sub connection per process");
    wait_until("resubscribed", || async { redis.numsub("kill").await == 1 }).await;
    wait_until("ready", || ready(&gw)).await;
    redis.publish("kill", "2").await;
    assert_eq!(recv_json(&mut ws).await["data"], json!(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_channels_are_private() {
    let redis = Redis::start();
    let gw = gateway(&redis, &[]).await;
    let mut ws = connect(&gw, "/ws").await;
    send_json(
        &mut ws,
        json!({"type":"subscribe","channels":["__redcast.probe.x"],"id":"p"}),
    )
    .await;
    assert_eq!(recv_json(&mut ws).await["code"], "invalid_channel");
    assert_eq!(
        refused_status(&gw, "/ws?channel=__redcast.anything", &[]).await,
        400
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_stays_down_while_probes_cannot_come_back() {
    // The subscription works, but this user may not PUBLISH: delivery
    // cannot be verified, so the instance must not claim to be ready.
    let redis = Redis::start_with(
        free_port(),
        &["--user", "gw", "on", ">pw", "~*", "&*", "+@all", "-publish"],
    );
    let env = [
        ("REDCAST_REDIS__USERNAME", "gw"),
        ("REDCAST_REDIS__PASSWORD", "pw"),
        ("REDCAST_REDIS__PROBE_INTERVAL", "100ms"),
        ("REDCAST_REDIS__PROBE_TIMEOUT", "300ms"),
        ("REDCAST_REDIS__RECONNECT_MIN", "20ms"),
        ("REDCAST_REDIS__RECONNECT_MAX", "100ms"),
    ];
    let gw = gateway(&redis, &env).await;
    wait_until("subscribed in redis", || async {
        metric(&gw, "redcast_redis_connected").await == 1.0
    })
    .await;
    for _ in 0..20 {
        let (status, body) = get(gw.admin_addr, "/readyz").await;
        assert_eq!(status, 503, "never ready: {body}");
        assert!(body.contains("probe") || body.contains("redis"), "{body}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
