//! Gaps in live delivery on durable channels are filled from the history,
//! for every subscriber at once: messages live delivery missed (seen from
//! the next message's offset), and messages published while the pub/sub
//! link was being re-made (filled as soon as it is back, without waiting
//! for a next message). A lost live message is made deterministic here by
//! writing it into the channel's history exactly as the Function does,
//! without publishing it.

mod common;

use common::durable::{fcall, library_loaded, rules};
use common::*;
use serde_json::json;

async fn durable() -> (Redis, redcast::Gateway) {
    let redis = Redis::start();
    let rules = rules(100, "10m");
    let gw = gateway(&redis, &[("REDCAST_CHANNELS__RULES", rules.as_str())]).await;
    library_loaded(&redis).await;
    (redis, gw)
}

/// A message that went into the history but never reached redcast live.
async fn lost(redis: &Redis, channel: &str, payload: &str) {
    let (stream, meta) = (format!("rc:{{{channel}}}:s"), format!("rc:{{{channel}}}:m"));
    let mut conn = redis.conn().await;
    let offset: i64 = redis::cmd("HINCRBY")
        .arg(&meta)
        .arg("o")
        .arg(1)
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: String = redis::cmd("XADD")
        .arg(&stream)
        .arg(format!("{offset}-0"))
        .arg("d")
        .arg(payload)
        .query_async(&mut conn)
        .await
        .unwrap();
}

async fn expect_offsets(ws: &mut Ws, range: std::ops::RangeInclusive<u64>) {
    for want in range {
        let m = recv_json(ws).await;
        assert_eq!(m["offset"].as_u64(), Some(want), "{m}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_live_delivery_missed_are_filled_in_order() {
    let (redis, gw) = durable().await;
    let mut a = subscribed_client(&gw, &["d.g"]).await;
    let mut b = subscribed_client(&gw, &["d.g"]).await;
    fcall(&redis, "d.g", "1").await;
    expect_offsets(&mut a, 1..=1).await;
    expect_offsets(&mut b, 1..=1).await;
    for i in 2..=20 {
        lost(&redis, "d.g", &i.to_string()).await;
    }
    fcall(&redis, "d.g", "21").await;
    // The jump from 1 to 21 is seen: both clients get 2..=21 once each,
    // in order.
    expect_offsets(&mut a, 2..=21).await;
    expect_offsets(&mut b, 2..=21).await;
    assert_eq!(metric(&gw, "redcast_history_catch_ups_total").await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_published_while_the_link_was_down_arrive_when_it_is_back() {
    let (redis, gw) = durable().await;
    let mut ws = subscribed_client(&gw, &["d.l"]).await;
    fcall(&redis, "d.l", "1").await;
    expect_offsets(&mut ws, 1..=1).await;
    for i in 2..=5 {
        lost(&redis, "d.l", &i.to_string()).await;
    }
    // Cut redcast's pub/sub connection: it resubscribes, and the catch-up
    // fills 2..=5 with no further publish.
    redis.kill_pubsub_clients().await;
    expect_offsets(&mut ws, 2..=5).await;
    send_json(&mut ws, json!({"type":"ping","id":"p"})).await;
    assert_eq!(recv_json(&mut ws).await, json!({"type":"pong","id":"p"}));
}
