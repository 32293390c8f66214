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
        "redcast_frames_delivered_total 1",
        "# TYPE redcast_redis_messages_total counter",
    ] {
        assert!(body.contains(name), "missing `{name}` in\n{body}");
    }
    assert!(!body.contains("channel=\""), "no channel labels");
    // The delivery probe is counted among Redis messages too.
    assert!(metric(&gw, "redcast_redis_messages_total").await >= 1.0);
    assert!(metric(&gw, "redcast_delivery_latency_seconds_count").await >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_tasks_come_back_to_the_accept_loop_when_clients_leave() {
    let redis = Redis::start();
    let gw = gateway(&redis, &[]).await;
    // Idle: only the accept loop.
    assert_eq!(metric(&gw, "redcast_connection_tasks").await, 1.0);
    let clients = [
        subscribed_client(&gw, &["t"]).await,
        subscribed_client(&gw, &["t", "u"]).await,
    ];
    assert!(metric(&gw, "redcast_connection_tasks").await >= 3.0);
    drop(clients);
    wait_until("tasks back to the accept loop", || async {
        metric(&gw, "redcast_connection_tasks").await == 1.0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_speak_openmetrics_on_request_and_pass_promtool() {
    let redis = Redis::start();
    let gw = gateway(&redis, &[]).await;
    let mut ws = subscribed_client(&gw, &["p"]).await;
    redis.publish("p", "1").await;
    recv_json(&mut ws).await;
    let req = "GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: application/openmetrics-text;version=1.0.0\r\nConnection: close\r\n\r\n";
    let (status, body) = http(gw.admin_addr, req).await;
    assert_eq!(status, 200);
    assert!(
        body.trim_end().ends_with("# EOF"),
        "OpenMetrics ends with # EOF"
    );
    let (_, text) = get(gw.admin_addr, "/metrics").await;
    let Some(promtool) = which("promtool") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have promtool (apt-get install prometheus)"
        );
        eprintln!("SKIPPED promtool check: promtool is not installed (apt-get install prometheus)");
        return;
    };
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && report.trim().is_empty(),
        "promtool: {report}"
    );
}

fn which(name: &str) -> Option<std::path::PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|p| p.join(name))
        .find(|p| p.is_file())
}
