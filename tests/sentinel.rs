//! Sentinel mode, for real: 1 master, 1 replica, 3 sentinels. redcast
//! asks the sentinels for the master, follows `SENTINEL FAILOVER` and a
//! master killed with SIGKILL (readiness 503 in between, the loss window
//! printed), and is checked by where its subscription is, since PUBLISH
//! also reaches replicas. A sentinel that is down is skipped; all down is
//! a readiness reason; a node the sentinels name but that is not a
//! master is refused.

mod common;

use common::sentinel::SentinelSet;
use common::stream::{payload, receive, report, Publishing, END};
use common::topology::{wait_for, FAILOVER_DEADLINE, FAST_REDIS};
use common::*;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

async fn sentinel_gateway(sentinels: &[String], master: &str) -> redcast::Gateway {
    let list = format!(
        "[{}]",
        sentinels
            .iter()
            .map(|s| format!("\"{s}\""))
            .collect::<Vec<_>>()
            .join(",")
    );
    let mut env = vec![
        ("REDCAST_REDIS__MODE", "sentinel"),
        ("REDCAST_REDIS__SENTINELS", list.as_str()),
        ("REDCAST_REDIS__SENTINEL_MASTER", master),
    ];
    env.extend(FAST_REDIS);
    // The URL's host is not used in sentinel mode: the sentinels name it.
    redcast::Gateway::start(settings("redis://unused.invalid:1", &env))
        .await
        .expect("gateway starts")
}

/// Waits until redcast's subscription to `channel` is on `port` alone.
async fn subscribed_on(set: &SentinelSet, port: u16, channel: &str) {
    wait_for(
        &format!("subscribed on {port} only"),
        FAILOVER_DEADLINE,
        || async {
            let seen = set.numsub_by_node(channel).await;
            let ok = seen.iter().all(|(p, n)| *n == i64::from(*p == port));
            ok.then_some(()).ok_or(format!("{seen:?}"))
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_sentinel_failover_and_leaves_the_old_master() {
    let set = SentinelSet::start().await;
    let gw = sentinel_gateway(&set.sentinel_addrs(), set.master_name()).await;
    let mut ws = subscribed_client(&gw, &["news"]).await;
    wait_until("ready", || ready(&gw)).await;
    let old = set.master_port().await;
    subscribed_on(&set, old, "news").await;
    set.publish("news", "1").await;
    assert_eq!(
        recv_json(&mut ws).await,
        json!({"type":"message","channel":"news","data":1})
    );

    let new = set.failover().await;
    // The old master still serves for a while: only where redcast is
    // subscribed proves that it followed the switch.
    subscribed_on(&set, new, "news").await;
    wait_until("ready on the new master", || ready(&gw)).await;
    set.publish("news", "2").await;
    assert_eq!(recv_json(&mut ws).await["data"], 2);
    assert!(metric(&gw, "redcast_redis_master_switches_total").await >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_a_master_killed_mid_stream() {
    let set = SentinelSet::start().await;
    let gw = sentinel_gateway(&set.sentinel_addrs(), set.master_name()).await;
    let ws = subscribed_client(&gw, &["stream"]).await;
    wait_until("ready", || ready(&gw)).await;
    let got = receive(ws);
    let set = Arc::new(tokio::sync::RwLock::new(set));
    let s = set.clone();
    let stream = Publishing::start(Duration::from_millis(20), move |n| {
        let s = s.clone();
        async move {
            s.read().await.publish("stream", payload(n)).await;
        }
    });
    stream.flows(10).await;

    let old = set.write().await.kill_master().await;
    wait_readyz(&gw, 503, "redis pub/sub connection").await;
    let new = set.read().await.wait_new_master(old).await;
    subscribed_on(&*set.read().await, new, "stream").await;
    wait_until("ready again", || ready(&gw)).await;
    stream.flows(25).await;
    let published = stream.stop().await;
    set.read().await.publish("stream", END).await;
    let outage = report("sentinel master kill -9", &got.await.unwrap(), published);
    assert!(outage.lost < published / 2, "{outage:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_sentinel_is_skipped_and_all_down_is_a_readiness_reason() {
    let set = SentinelSet::start().await;
    let dead = format!("127.0.0.1:{}", free_port());
    let mut list = vec![dead.clone()];
    list.extend(set.sentinel_addrs());
    let gw = sentinel_gateway(&list, set.master_name()).await;
    let mut ws = subscribed_client(&gw, &["skip"]).await;
    wait_until("ready past a dead sentinel", || ready(&gw)).await;
    set.publish("skip", "1").await;
    assert_eq!(recv_json(&mut ws).await["data"], 1);

    let nowhere = sentinel_gateway(&[dead], set.master_name()).await;
    wait_readyz(&nowhere, 503, "sentinel").await;
    let unknown = sentinel_gateway(&set.sentinel_addrs(), "no-such-master").await;
    wait_readyz(&unknown, 503, "no-such-master").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_named_as_master_is_refused() {
    let set = SentinelSet::start().await;
    let replica = set.data_ports()[1];
    set.monitor_as("stale", replica).await;
    let gw = sentinel_gateway(&set.sentinel_addrs(), "stale").await;
    wait_readyz(&gw, 503, "not the master").await;
}
