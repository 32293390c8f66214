//! Durable channels: positions in frames and acks, recovery after a cut,
//! all-or-nothing answers, history requests, and the Function itself,
//! against a real Redis.

mod common;

use common::durable::{fcall, library_loaded, rules, Cutter};
use common::*;
use serde_json::{json, Value};

async fn durable_gateway(redis: &Redis, size: usize, ttl: &str) -> redcast::Gateway {
    let rules = rules(size, ttl);
    let gw = gateway(redis, &[("REDCAST_CHANNELS__RULES", &rules)]).await;
    library_loaded(redis).await;
    gw
}

/// Subscribes (with `since` when given) and returns the ack.
async fn subscribe(ws: &mut Ws, channels: &[&str], since: Option<Value>) -> Value {
    let mut req = json!({"type":"subscribe","id":"s","channels":channels});
    if let Some(since) = since {
        req["since"] = since;
    }
    send_json(ws, req).await;
    let ack = recv_json(ws).await;
    assert_eq!(ack["type"], "subscribed", "{ack}");
    ack
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_report_positions_and_messages_carry_them() {
    let redis = Redis::start();
    let gw = durable_gateway(&redis, 100, "10m").await;
    let mut ws = connect(&gw, "/ws").await;
    let ack = subscribe(&mut ws, &["d.a", "p.a"], None).await;
    let epoch = ack["positions"]["d.a"]["epoch"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        ack["positions"],
        json!({"d.a": {"offset": 0, "epoch": epoch}})
    );
    assert_eq!(
        fcall(&redis, "d.a", r#"{"n":1}"#).await,
        Some((1, epoch.clone()))
    );
    assert_eq!(
        recv_json(&mut ws).await,
        json!({"type":"message","channel":"d.a","data":{"n":1},"offset":1,"epoch":epoch})
    );
    // A plain PUBLISH still arrives, live, without a position.
    redis.publish("d.a", "plain").await;
    assert_eq!(
        recv_json(&mut ws).await,
        json!({"type":"message","channel":"d.a","data":"plain"})
    );
    assert_eq!(
        metric(&gw, "redcast_history_unpositioned_messages_total").await,
        1.0
    );
    // On a channel without history the Function just publishes.
    assert_eq!(fcall(&redis, "p.a", "\"x\"").await, None);
    assert_eq!(
        recv_json(&mut ws).await,
        json!({"type":"message","channel":"p.a","data":"x"})
    );
}
