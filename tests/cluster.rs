//! Redis Cluster, for real: 3 masters with a replica each, started and
//! broken by the tests. Sharded pub/sub (the default in cluster mode):
//! channels on every master deliver; a master killed mid-stream fails
//! over and delivery resumes (readiness 503 in between, the loss window
//! printed); a slot migrated to a new master and back keeps delivering
//! and leaves nothing subscribed where the slot no longer lives; a silent
//! shard link fails readiness and names the node. Classic pub/sub on a
//! cluster: one subscription on any node, moved when that node dies.

mod common;

use common::cluster::Cluster;
use common::proxy::Blackhole;
use common::stream::{payload, receive, report, Publishing, END};
use common::topology::{wait_for, FAILOVER_DEADLINE, FAST_REDIS};
use common::*;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

async fn cluster_gateway(cluster: &Cluster, extra: &[(&str, &str)]) -> redcast::Gateway {
    let mut env = vec![("REDCAST_REDIS__MODE", "cluster")];
    env.extend(FAST_REDIS);
    env.extend(extra);
    redcast::Gateway::start(settings(&cluster.seed_url(), &env))
        .await
        .expect("gateway starts")
}

/// 200 channels plus one named on each master: spread over every slot
/// range, so that subscribing batches per slot on every node.
async fn spread(cluster: &Cluster) -> Vec<String> {
    let mut names = Vec::new();
    for m in cluster.masters().await {
        names.push(cluster.channel_on(m, "on").await);
    }
    names.extend((0..200).map(|i| format!("spread-{i}")));
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_on_every_master_deliver_and_client_publishes_are_spublished() {
    let cluster = Cluster::start().await;
    let rules = r#"[{pattern = "*", subscribe = "anyone", publish = "anyone"}]"#;
    let env = [
        ("REDCAST_CHANNELS__RULES", rules),
        ("REDCAST_CLIENT__MAX_SUBSCRIPTIONS", "500"),
    ];
    let gw = cluster_gateway(&cluster, &env).await;
    let names = spread(&cluster).await;
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut ws = connect(&gw, "/ws").await;
    send_json(&mut ws, json!({"type":"subscribe","channels": refs[..100]})).await;
    assert_eq!(recv_json(&mut ws).await["type"], "subscribed");
    send_json(&mut ws, json!({"type":"subscribe","channels": refs[100..]})).await;
    assert_eq!(recv_json(&mut ws).await["type"], "subscribed");
    wait_until("ready", || ready(&gw)).await;
    assert_eq!(
        metric(&gw, "redcast_redis_pubsub_connections_up").await,
        3.0
    );

    // redcast holds each channel on the master that serves its slot.
    for (m, name) in cluster.masters().await.into_iter().zip(&names) {
        assert_eq!(cluster.shard_numsub_on(m, name).await, 1, "{name} on {m}");
    }
    for (i, name) in names.iter().enumerate() {
        assert_eq!(cluster.spublish(name, i).await, 1, "{name}");
    }
    let mut seen = std::collections::HashSet::new();
    for _ in 0..names.len() {
        let m = recv_json(&mut ws).await;
        assert_eq!(m["type"], "message", "{m}");
        seen.insert(m["channel"].as_str().unwrap().to_string());
    }
    assert_eq!(seen.len(), names.len());

    // A client's publish goes out as SPUBLISH: it reaches sharded subscribers.
    let mut publisher = connect(&gw, "/ws").await;
    let target = names[1].clone();
    send_json(
        &mut publisher,
        json!({"type":"publish","id":"p1","channel": target,"data":{"from":"client"}}),
    )
    .await;
    assert_eq!(
        recv_json(&mut publisher).await,
        json!({"type":"published","id":"p1"})
    );
    let m = recv_json(&mut ws).await;
    assert_eq!(
        m,
        json!({"type":"message","channel": target,"data":{"from":"client"}})
    );

    // Unsubscribing leaves nothing behind on the owner.
    send_json(&mut ws, json!({"type":"unsubscribe","channels":[target]})).await;
    wait_for("the owner drops the channel", DEADLINE, || async {
        match cluster.shard_numsub(&target).await {
            0 => Ok(()),
            n => Err(format!("{n} subscriber(s)")),
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_killed_mid_stream_fails_over_and_delivery_resumes() {
    let cluster = Cluster::start().await;
    let gw = cluster_gateway(&cluster, &[]).await;
    let master = cluster.masters().await[0];
    let channel = cluster.channel_on(master, "failover").await;
    let ws = subscribed_client(&gw, &[&channel]).await;
    wait_until("ready", || ready(&gw)).await;
    let got = receive(ws);
    let cluster = Arc::new(tokio::sync::RwLock::new(cluster));
    let (c, ch) = (cluster.clone(), channel.clone());
    let stream = Publishing::start(Duration::from_millis(20), move |n| {
        let (c, ch) = (c.clone(), ch.clone());
        async move {
            c.read().await.spublish(&ch, payload(n)).await;
        }
    });
    stream.flows(10).await;

    cluster.write().await.kill(master);
    let body = wait_readyz(&gw, 503, &format!("127.0.0.1:{master}")).await;
    eprintln!("readiness while the master is down: {body}");
    let promoted = cluster.read().await.wait_failover(master).await;
    wait_readyz(&gw, 200, "").await;
    stream.flows(25).await;
    let published = stream.stop().await;
    let cluster = cluster.read().await;
    assert_eq!(cluster.shard_numsub_on(promoted, &channel).await, 1);
    cluster.spublish(&channel, END).await;
    let got = got.await.unwrap();
    let outage = report("cluster master kill -9", &got, published);
    assert!(
        got.last().is_some_and(|(n, _)| *n + 1 == published),
        "the last messages arrive"
    );
    assert!(outage.lost < published / 2, "{outage:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_moved_to_a_new_master_and_back_keeps_delivering() {
    let mut cluster = Cluster::start().await;
    let gw = cluster_gateway(&cluster, &[]).await;
    let home = cluster.masters().await[1];
    let channel = cluster.channel_on(home, "moving").await;
    let slot = cluster.slot_of(&channel).await;
    let ws = subscribed_client(&gw, &[&channel]).await;
    wait_until("ready", || ready(&gw)).await;
    let added = cluster.add_master().await;
    let got = receive(ws);
    let cluster = Arc::new(cluster);
    let (c, ch) = (cluster.clone(), channel.clone());
    let stream = Publishing::start(Duration::from_millis(20), move |n| {
        let (c, ch) = (c.clone(), ch.clone());
        async move {
            c.spublish(&ch, payload(n)).await;
        }
    });

    for (to, from) in [(added, home), (home, added)] {
        cluster.migrate_slot(slot, to).await;
        wait_for("redcast follows the slot", DEADLINE, || async {
            let here = cluster.shard_numsub_on(to, &channel).await;
            let there = cluster.shard_numsub_on(from, &channel).await;
            (here == 1 && there == 0)
                .then_some(())
                .ok_or(format!("new owner {here}, old owner {there}"))
        })
        .await;
        wait_until("ready after the move", || ready(&gw)).await;
        stream.flows(10).await;
    }
    let published = stream.stop().await;
    cluster.spublish(&channel, END).await;
    let outage = report("slot migration (twice)", &got.await.unwrap(), published);
    assert!(outage.lost < 10, "{outage:?}");
    assert!(metric(&gw, "redcast_redis_dropped_subscriptions_total").await >= 2.0);

    // The added master serves nothing now: its feed stops, it can go.
    let mut cluster = Arc::try_unwrap(cluster).ok().expect("one owner");
    cluster.remove_node(added).await;
    wait_until("three feeds again", || async {
        metric(&gw, "redcast_redis_pubsub_connections").await == 3.0
    })
    .await;
    wait_until("ready", || ready(&gw)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_shard_link_fails_readiness_and_names_the_node() {
    let cluster = Cluster::start().await;
    let victim = cluster.masters().await[2];
    let channel = cluster.channel_on(victim, "quiet").await;
    // The node announces a blackhole proxy in front of itself, so that
    // every client (redcast too) reaches it through the proxy.
    let hole = Blackhole::start(format!("127.0.0.1:{victim}").parse().unwrap()).await;
    cluster.announce_port(victim, hole.addr.port()).await;
    let env = [("REDCAST_REDIS__PING_INTERVAL", "1h")];
    let gw = cluster_gateway(&cluster, &env).await;
    let mut ws = subscribed_client(&gw, &[&channel]).await;
    wait_until("ready", || ready(&gw)).await;

    hole.set(true);
    let proxied = format!("127.0.0.1:{}", hole.addr.port());
    wait_readyz(&gw, 503, &proxied).await;
    wait_until("the silent link is given up", || async {
        metric(&gw, "redcast_delivery_probe_failures_total").await >= 1.0
    })
    .await;
    hole.set(false);
    wait_until("ready again", || ready(&gw)).await;
    cluster.spublish(&channel, "1").await;
    let m = recv_json(&mut ws).await;
    assert_eq!(m, json!({"type":"message","channel": channel,"data":1}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classic_pubsub_on_a_cluster_uses_one_node_and_moves_when_it_dies() {
    let mut cluster = Cluster::start().await;
    let gw = cluster_gateway(&cluster, &[("REDCAST_REDIS__SHARDED", "false")]).await;
    let mut ws = subscribed_client(&gw, &["classic"]).await;
    wait_until("ready", || ready(&gw)).await;
    let holder = subscribed_node(&cluster).await;
    assert_eq!(metric(&gw, "redcast_redis_pubsub_connections").await, 1.0);
    cluster.publish("classic", "1").await;
    assert_eq!(recv_json(&mut ws).await["data"], 1);

    cluster.kill(holder);
    wait_for("subscribed on another node", FAILOVER_DEADLINE, || async {
        let now = subscribed_node(&cluster).await;
        (now != holder)
            .then_some(())
            .ok_or_else(|| "not yet".into())
    })
    .await;
    wait_until("ready", || ready(&gw)).await;
    cluster.publish("classic", "2").await;
    assert_eq!(recv_json(&mut ws).await["data"], 2);
}

/// The node where redcast's classic subscription is (0 when none).
async fn subscribed_node(cluster: &Cluster) -> u16 {
    for port in cluster.ports() {
        if cluster.numsub_on(port, "classic").await == 1 {
            return port;
        }
    }
    0
}
