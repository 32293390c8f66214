//! The admin listener: health, readiness with a reason, metrics.

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_metrics() {
    let redis = Redis::start();
    let gw = gateway(&redis, &[]).await;
    assert_eq!(get(gw.admin_addr, "/healthz").await, (200, "ok".into()));
    wait_until("ready", || ready(&gw)).await;
    assert_eq!(get(gw.admin_addr, "/readyz").await.1, "ready");
    assert_eq!(get(gw.admin_addr, "/nope").await.0, 404);
    // The admin paths are not served on the public listener.
    assert_eq!(get(gw.ws_addr, "/metrics").await.0, 404);

    let mut ws = subscribed_client(&gw, &["m"]).await;
    redis.publish("m", "1").await;
    recv_json(&mut ws).await;
    let (status, body) = get(gw.admin_addr, "/metrics").await;
    assert_eq!(status, 200);
    for name in [
        "redcast_connections_open 1",
        "redcast_subscriptions 1",
        "redcast_channels_active 1",
        "redcast_redis_connected 1",
        "redcast_redis_messages_total 1",
        "redcast_frames_delivered_total 1",
        "# EOF",
    ] {
        assert!(body.contains(name), "missing `{name}` in\n{body}");
    }
    assert!(!body.contains("channel=\""), "no channel labels");
}
