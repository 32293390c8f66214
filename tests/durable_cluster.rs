//! Durable channels on a real Redis Cluster with sharded pub/sub: the
//! library on every master, each channel's history in its own slot, and
//! a client that comes back recovers channels of every master.

mod common;

use common::cluster::Cluster;
use common::topology::FAST_REDIS;
use common::*;
use redis::Value;
use serde_json::json;

/// `FCALL redcast_publish` on the master of the channel's slot.
async fn fcall(cluster: &Cluster, channel: &str, payload: &str) -> (u64, String) {
    let owner = cluster.owner_of(channel).await;
    let cmd = redis::cmd("FCALL")
        .arg("redcast_publish")
        .arg(1)
        .arg(channel)
        .arg(payload)
        .to_owned();
    match cluster.query_on::<Value>(owner, &cmd).await.unwrap() {
        Value::Array(v) => match v.as_slice() {
            [Value::Int(o), Value::BulkString(e)] => {
                (*o as u64, String::from_utf8(e.clone()).unwrap())
            }
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_channels_recover_on_every_master() {
    let cluster = Cluster::start().await;
    let rules = r#"[{pattern = "*", subscribe = "anyone", history_size = 100}]"#;
    let mut env = vec![
        ("REDCAST_REDIS__MODE", "cluster"),
        ("REDCAST_CHANNELS__RULES", rules),
    ];
    env.extend(FAST_REDIS);
    let gw = redcast::Gateway::start(settings(&cluster.seed_url(), &env))
        .await
        .unwrap();
    let masters = cluster.masters().await;
    let mut names = Vec::new();
    for m in &masters {
        names.push(cluster.channel_on(*m, "durable").await);
    }
    let version = redis::cmd("FCALL").arg("redcast_version").arg(0).to_owned();
    for m in &masters {
        wait_until("the library on every master", || async {
            cluster.query_on::<Value>(*m, &version).await.is_ok()
        })
        .await;
    }
    let mut ws = connect(&gw, "/ws").await;
    send_json(&mut ws, json!({"type":"subscribe","channels":names})).await;
    let ack = recv_json(&mut ws).await;
    assert_eq!(ack["positions"].as_object().unwrap().len(), 3, "{ack}");
    let mut since = serde_json::Map::new();
    for name in &names {
        let (offset, epoch) = fcall(&cluster, name, "1").await;
        assert_eq!(offset, 1);
        since.insert(name.clone(), json!({"offset": 1, "epoch": epoch}));
    }
    for _ in &names {
        assert_eq!(recv_json(&mut ws).await["offset"], 1);
    }
    drop(ws);
    for name in &names {
        fcall(&cluster, name, "2").await;
        fcall(&cluster, name, "3").await;
    }
    let mut ws = connect(&gw, "/ws").await;
    send_json(
        &mut ws,
        json!({"type":"subscribe","channels":names,"since":since}),
    )
    .await;
    let ack = recv_json(&mut ws).await;
    let all_true: serde_json::Map<_, _> = names.iter().map(|n| (n.clone(), json!(true))).collect();
    assert_eq!(ack["recovered"], json!(all_true), "{ack}");
    let mut got: Vec<(String, u64)> = Vec::new();
    for _ in 0..6 {
        let m = recv_json(&mut ws).await;
        got.push((
            m["channel"].as_str().unwrap().into(),
            m["offset"].as_u64().unwrap(),
        ));
    }
    for name in &names {
        let offsets: Vec<u64> = got
            .iter()
            .filter(|(c, _)| c == name)
            .map(|(_, o)| *o)
            .collect();
        assert_eq!(offsets, [2, 3], "{name}");
    }
}
