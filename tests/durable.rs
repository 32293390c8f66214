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

/// Reads `n` messages of `channel`; asserts offsets follow `from + 1`.
async fn expect_run(ws: &mut Ws, channel: &str, from: u64, n: u64) {
    for i in 1..=n {
        let m = recv_json(ws).await;
        assert_eq!(
            (m["channel"].as_str(), m["offset"].as_u64()),
            (Some(channel), Some(from + i)),
            "{m}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_cut_off_for_5s_gets_every_message_once_in_order() {
    let redis = Redis::start();
    let gw = durable_gateway(&redis, 2000, "10m").await;
    let cutter = Cutter::start(gw.ws_addr).await;
    let url = format!("ws://{}/ws", cutter.addr);
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let ack = subscribe(&mut ws, &["d.cut"], None).await;
    let epoch = ack["positions"]["d.cut"]["epoch"].clone();
    // A backend publishes 1,000 messages at 200/s with FCALL.
    let backend = {
        let url = redis.url();
        tokio::spawn(async move {
            let client = redis::Client::open(url).unwrap();
            let mut conn = client.get_multiplexed_async_connection().await.unwrap();
            let mut tick = tokio::time::interval(std::time::Duration::from_millis(5));
            for i in 1..=1000u32 {
                tick.tick().await;
                let _: Value = redis::cmd("FCALL")
                    .arg("redcast_publish")
                    .arg(1)
                    .arg("d.cut")
                    .arg(i.to_string())
                    .query_async(&mut conn)
                    .await
                    .map(|_: redis::Value| Value::Null)
                    .unwrap();
            }
        })
    };
    // Read some live, then the proxy drops the client for 5 s.
    expect_run(&mut ws, "d.cut", 0, 50).await;
    let mut last = 50;
    cutter.cut();
    while let Some(Ok(m)) = futures_util::StreamExt::next(&mut ws).await {
        if let tungstenite::Message::Text(t) = m {
            let v: Value = serde_json::from_str(t.as_str()).unwrap();
            assert_eq!(v["offset"].as_u64(), Some(last + 1));
            last += 1;
        }
    }
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let since = json!({"d.cut": {"offset": last, "epoch": epoch}});
    let ack = subscribe(&mut ws, &["d.cut"], Some(since)).await;
    assert_eq!(ack["recovered"], json!({"d.cut": true}), "{ack}");
    // Everything missed, then live, each exactly once and in order.
    expect_run(&mut ws, "d.cut", last, 1000 - last).await;
    backend.await.unwrap();
    send_json(&mut ws, json!({"type":"ping","id":"p"})).await;
    assert_eq!(recv_json(&mut ws).await, json!({"type":"pong","id":"p"}));
    assert!(metric(&gw, "redcast_history_replayed_messages_total").await > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_more_than_history_size_is_not_recovered() {
    let redis = Redis::start();
    let gw = durable_gateway(&redis, 5, "10m").await;
    let (_, epoch) = fcall(&redis, "d.s", "1").await.unwrap();
    for i in 2..=200 {
        fcall(&redis, "d.s", &i.to_string()).await;
    }
    let mut ws = connect(&gw, "/ws").await;
    // 7 missed > 5 kept, though the approximately trimmed stream holds more.
    let since = json!({"d.s": {"offset": 193, "epoch": epoch}});
    let ack = subscribe(&mut ws, &["d.s"], Some(since)).await;
    assert_eq!(ack["recovered"], json!({"d.s": false}));
    assert_eq!(ack["positions"]["d.s"]["offset"], 200);
    // No stale history follows: the next frame is a live message.
    fcall(&redis, "d.s", "201").await;
    expect_run(&mut ws, "d.s", 200, 1).await;
    // Exactly history_size missed is recovered.
    let since = json!({"d.s": {"offset": 196, "epoch": epoch}});
    let mut ws = connect(&gw, "/ws").await;
    let ack = subscribe(&mut ws, &["d.s"], Some(since)).await;
    assert_eq!(ack["recovered"], json!({"d.s": true}));
    expect_run(&mut ws, "d.s", 196, 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_without_persistence_starts_a_new_epoch() {
    let mut redis = Redis::start();
    let gw = durable_gateway(&redis, 100, "10m").await;
    let (offset, epoch) = fcall(&redis, "d.r", "1").await.unwrap();
    redis.kill();
    redis.launch();
    // redcast reloads its library into the empty Redis on reconnect.
    library_loaded(&redis).await;
    let (offset2, epoch2) = fcall(&redis, "d.r", "again").await.unwrap();
    assert_eq!(offset2, 1);
    assert_ne!(epoch2, epoch);
    wait_until("ready again", || ready(&gw)).await;
    let mut ws = connect(&gw, "/ws").await;
    let since = json!({"d.r": {"offset": offset, "epoch": epoch}});
    let ack = subscribe(&mut ws, &["d.r"], Some(since)).await;
    assert_eq!(ack["recovered"], json!({"d.r": false}));
    assert_eq!(
        ack["positions"]["d.r"],
        json!({"offset": 1, "epoch": epoch2})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_expires_after_its_ttl_without_publishes() {
    let redis = Redis::start();
    let gw = durable_gateway(&redis, 100, "300ms").await;
    let (offset, epoch) = fcall(&redis, "d.t", "1").await.unwrap();
    let mut conn = redis.conn().await;
    let ttl: i64 = redis::cmd("PTTL")
        .arg("rc:{d.t}:s")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(ttl > 0 && ttl <= 300, "{ttl}");
    wait_until("the history expired", || {
        let mut conn = conn.clone();
        async move {
            let n: i64 = redis::cmd("EXISTS")
                .arg("rc:{d.t}:s")
                .arg("rc:{d.t}:m")
                .query_async(&mut conn)
                .await
                .unwrap();
            n == 0
        }
    })
    .await;
    let mut ws = connect(&gw, "/ws").await;
    let since = json!({"d.t": {"offset": offset, "epoch": epoch}});
    let ack = subscribe(&mut ws, &["d.t"], Some(since)).await;
    assert_eq!(ack["recovered"], json!({"d.t": false}));
    assert_eq!(ack["positions"]["d.t"]["offset"], 0);
    assert_ne!(ack["positions"]["d.t"]["epoch"], json!(epoch));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_requests_answer_the_latest_oldest_first() {
    let redis = Redis::start();
    let gw = durable_gateway(&redis, 10, "10m").await;
    for i in 1..=15 {
        fcall(&redis, "d.h", &format!(r#"{{"i":{i}}}"#)).await;
    }
    let mut ws = connect(&gw, "/ws").await;
    send_json(
        &mut ws,
        json!({"type":"history","id":"h1","channel":"d.h","limit":3}),
    )
    .await;
    let reply = recv_json(&mut ws).await;
    assert_eq!(reply["type"], "history");
    assert_eq!(reply["id"], "h1");
    assert_eq!(reply["position"]["offset"], 15);
    assert_eq!(
        reply["messages"],
        json!([{"offset":13,"data":{"i":13}},{"offset":14,"data":{"i":14}},{"offset":15,"data":{"i":15}}])
    );
    // Never more than history_size, even when the stream holds more.
    send_json(
        &mut ws,
        json!({"type":"history","id":"h2","channel":"d.h","limit":100}),
    )
    .await;
    let reply = recv_json(&mut ws).await;
    let offsets: Vec<u64> = reply["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(offsets, (6..=15).collect::<Vec<_>>());
    // An empty channel answers its position and no messages.
    send_json(
        &mut ws,
        json!({"type":"history","id":"h3","channel":"d.empty"}),
    )
    .await;
    let reply = recv_json(&mut ws).await;
    assert_eq!(
        (
            reply["messages"].clone(),
            reply["position"]["offset"].clone()
        ),
        (json!([]), json!(0))
    );
}

/// Sends `req` and expects an error frame with `code`.
async fn refused(ws: &mut Ws, req: Value, code: &str) {
    send_json(ws, req.clone()).await;
    let e = recv_json(ws).await;
    assert_eq!(
        (e["type"].as_str(), e["code"].as_str(), e["id"].as_str()),
        (Some("error"), Some(code), Some("x")),
        "{req} -> {e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_positions_and_history_requests_get_clear_errors() {
    let redis = Redis::start();
    let gw = durable_gateway(&redis, 10, "10m").await;
    let (_, epoch) = fcall(&redis, "d.e", "1").await.unwrap();
    let mut ws = connect(&gw, "/ws").await;
    let sub =
        |since: Value| json!({"type":"subscribe","id":"x","channels":["d.e","p.e"],"since":since});
    refused(
        &mut ws,
        sub(json!({"d.e": {"offset": "1", "epoch": epoch}})),
        "invalid_field",
    )
    .await;
    refused(&mut ws, sub(json!({"d.e": 5})), "invalid_field").await;
    refused(&mut ws, sub(json!([])), "invalid_field").await;
    refused(
        &mut ws,
        sub(json!({"d.other": {"offset": 1, "epoch": epoch}})),
        "invalid_field",
    )
    .await;
    refused(
        &mut ws,
        sub(json!({"p.e": {"offset": 1, "epoch": epoch}})),
        "not_durable",
    )
    .await;
    let hist = |extra: Value| {
        let mut h = json!({"type":"history","id":"x","channel":"d.e"});
        h.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        h
    };
    refused(&mut ws, hist(json!({"limit": 0})), "invalid_field").await;
    refused(&mut ws, hist(json!({"limit": 1001})), "invalid_field").await;
    refused(&mut ws, hist(json!({"limit": -1})), "invalid_field").await;
    refused(&mut ws, hist(json!({"channel": "p.e"})), "not_durable").await;
    refused(&mut ws, hist(json!({"channel": "secret.x"})), "forbidden").await;
    refused(
        &mut ws,
        hist(json!({"channel": "bad name"})),
        "invalid_channel",
    )
    .await;
    refused(&mut ws, hist(json!({"channel": 7})), "invalid_field").await;
    // A position ahead of the channel: an error, and not recovered.
    let ahead = json!({"type":"subscribe","id":"x","channels":["d.e"],"since":{"d.e":{"offset":99,"epoch":epoch}}});
    refused(&mut ws, ahead, "invalid_position").await;
    let ack = recv_json(&mut ws).await;
    assert_eq!(ack["recovered"], json!({"d.e": false}));
    // Nothing else was disturbed: the connection still delivers.
    fcall(&redis, "d.e", "2").await;
    expect_run(&mut ws, "d.e", 1, 1).await;
    let (_, body) = get(gw.admin_addr, "/metrics").await;
    let errors: Vec<&str> = body
        .lines()
        .filter(|l| l.starts_with("redcast_inbound_errors"))
        .collect();
    assert_eq!(
        metric(&gw, "redcast_inbound_errors_total").await,
        13.0,
        "{errors:?}"
    );
}
