//! Smoke tests of the Redis Cluster and Sentinel harnesses themselves:
//! real topologies start, break and report what they are. Timings are
//! printed (`-- --nocapture`) to keep an eye on what tests built on them
//! will cost.

mod common;

use common::cluster::{key_slot, Cluster};
use common::sentinel::SentinelSet;
use common::DEADLINE;
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A raw subscriber: sends `verb channel` (inline) to the node at `port`
/// and returns the connection once the confirmation arrived.
async fn subscriber(port: u16, verb: &str, channel: &str) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(format!("{verb} {channel}\r\n").as_bytes())
        .await
        .unwrap();
    let want = verb.to_lowercase();
    read_until(&mut s, &want).await;
    s
}

/// Reads from `s` until `needle` has been seen.
async fn read_until(s: &mut TcpStream, needle: &str) {
    let mut seen = Vec::new();
    tokio::time::timeout(DEADLINE, async {
        while !String::from_utf8_lossy(&seen).contains(needle) {
            let mut buf = [0u8; 1024];
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "connection closed before {needle:?}");
            seen.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {needle:?} in {:?}", String::from_utf8_lossy(&seen)));
}

#[tokio::test]
async fn cluster_starts_with_three_masters_serving_every_slot() {
    let t = Instant::now();
    let cluster = Cluster::start().await;
    eprintln!("cluster start: {:?}", t.elapsed());
    assert_eq!(cluster.node_addrs().len(), 6);
    assert!(cluster.seed_url().starts_with("redis://127.0.0.1:"));
    let masters = cluster.masters().await;
    assert_eq!(masters.len(), 3, "{masters:?}");
    for name in ["foo", "a{b}c", "{}x", "news-42"] {
        assert_eq!(key_slot(name), cluster.slot_of(name).await, "{name}");
    }
    for &m in &masters {
        let channel = cluster.channel_on(m, "news").await;
        assert!(channel.starts_with("news-") && !channel.contains('{'));
        assert_eq!(cluster.owner_of(&channel).await, m, "{channel}");
        assert_eq!(cluster.replicas_of(m).await.len(), 1);

        // A sharded subscriber on the owner is counted there and served.
        let mut sub = subscriber(m, "SSUBSCRIBE", &channel).await;
        assert_eq!(cluster.shard_numsub(&channel).await, 1);
        assert_eq!(cluster.spublish(&channel, "hello").await, 1);
        read_until(&mut sub, "hello").await;
        // A classic subscriber is counted on its own node only.
        let _classic = subscriber(m, "SUBSCRIBE", &channel).await;
        assert_eq!(cluster.numsub_on(m, &channel).await, 1);
        let other = masters.iter().find(|&&o| o != m).unwrap();
        assert_eq!(cluster.numsub_on(*other, &channel).await, 0);
        assert_eq!(cluster.shard_numsub_on(*other, &channel).await, 0);
        cluster.publish(&channel, "classic").await;
    }
}

#[tokio::test]
async fn cluster_promotes_the_replica_of_a_killed_master() {
    let mut cluster = Cluster::start().await;
    let victim = cluster.masters().await[0];
    let channel = cluster.channel_on(victim, "fo").await;
    let replica = cluster.replicas_of(victim).await[0];

    let t = Instant::now();
    cluster.kill(victim);
    let promoted = cluster.wait_failover(victim).await;
    eprintln!("cluster failover after kill -9: {:?}", t.elapsed());
    assert_eq!(promoted, replica);
    assert_eq!(cluster.owner_of(&channel).await, promoted);
    let masters = cluster.masters().await;
    assert!(
        masters.len() == 3 && !masters.contains(&victim),
        "{masters:?}"
    );
    assert_eq!(cluster.spublish(&channel, "after").await, 0);

    // The old master comes back as a replica of the promoted one.
    let t = Instant::now();
    cluster.restart(victim);
    cluster.wait_stable().await;
    eprintln!("cluster rejoin of the old master: {:?}", t.elapsed());
    assert_eq!(cluster.replicas_of(promoted).await, vec![victim]);
}

#[tokio::test]
async fn cluster_migrates_a_slot_and_grows_and_shrinks() {
    let mut cluster = Cluster::start().await;
    let slot = key_slot("moved-key");
    let from = cluster.owner_of_slot(slot).await;
    let mut conn = redis::Client::open(format!("redis://127.0.0.1:{from}"))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg("moved-key")
        .arg("v")
        .query_async(&mut conn)
        .await
        .unwrap();
    let to = *cluster
        .masters()
        .await
        .iter()
        .find(|&&m| m != from)
        .unwrap();

    let t = Instant::now();
    cluster.migrate_slot(slot, to).await;
    eprintln!("slot migration (1 key): {:?}", t.elapsed());
    assert_eq!(cluster.owner_of_slot(slot).await, to);
    let mut conn = redis::Client::open(format!("redis://127.0.0.1:{to}"))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let v: String = redis::cmd("GET")
        .arg("moved-key")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(v, "v");

    let t = Instant::now();
    let added = cluster.add_master().await;
    let empty_slot = key_slot("empty");
    cluster.migrate_slot(empty_slot, added).await;
    assert_eq!(cluster.masters().await.len(), 4);
    let channel = cluster.channel_on(added, "grown").await;
    assert_eq!(cluster.spublish(&channel, "x").await, 0);
    let back = *cluster
        .masters()
        .await
        .iter()
        .find(|&&m| m != added)
        .unwrap();
    cluster.migrate_slot(empty_slot, back).await;
    cluster.remove_node(added).await;
    assert_eq!(cluster.node_addrs().len(), 6);
    eprintln!(
        "add master, move a slot there and back, remove: {:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn sentinel_failover_switches_the_master() {
    let t = Instant::now();
    let set = SentinelSet::start().await;
    eprintln!("sentinel set start: {:?}", t.elapsed());
    assert_eq!(set.sentinel_addrs().len(), 3);
    assert_eq!(set.master_name(), "mymaster");
    let old = set.master_port().await;
    assert_eq!(old, set.data_ports()[0]);
    assert_eq!(set.role_of(old).await, "master");

    let t = Instant::now();
    let new = set.failover().await;
    eprintln!("SENTINEL FAILOVER: {:?}", t.elapsed());
    assert_eq!(new, set.data_ports()[1]);
    let _sub = subscriber(new, "SUBSCRIBE", "where").await;
    assert_eq!(set.publish("where", "x").await, 1);
    assert_eq!(set.numsub_by_node("where").await, vec![(old, 0), (new, 1)]);

    let t = Instant::now();
    set.wait_replica_of(old, new).await;
    eprintln!("old master turned replica: {:?}", t.elapsed());
}

#[tokio::test]
async fn sentinel_replaces_a_killed_master() {
    let mut set = SentinelSet::start().await;
    set.kill_sentinel(2);

    let t = Instant::now();
    let old = set.kill_master().await;
    let new = set.wait_new_master(old).await;
    eprintln!(
        "sentinel failover after kill -9 (2 of 3 sentinels): {:?}",
        t.elapsed()
    );
    assert_ne!(new, old);
    assert_eq!(set.role_of(new).await, "master");
    assert_eq!(set.publish("after", "x").await, 0);

    let t = Instant::now();
    set.restart(old);
    set.restart_sentinel(2);
    set.wait_replica_of(old, new).await;
    eprintln!("killed master back as replica: {:?}", t.elapsed());
    assert_eq!(set.wait_new_master(old).await, new);
}
