//! Fan-out shards: with sessions spread over several shards (one per
//! worker thread), every client of a channel still gets every message,
//! once, in publish order, whatever its format and shard.

mod common;

use common::*;
use futures_util::future::join_all;
use tungstenite::Message;

/// Messages per channel.
const MESSAGES: i64 = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_clients_over_four_shards_get_everything_in_order() {
    let redis = Redis::start();
    let gw = gateway(&redis, &[("REDCAST_SERVER__WORKER_THREADS", "4")]).await;
    assert_eq!(metric(&gw, "redcast_fanout_waits_total").await, 0.0);
    let mut envelopes = Vec::new();
    for _ in 0..60 {
        envelopes.push(subscribed_client(&gw, &["left", "right"]).await);
    }
    // Raw clients get no ack: wait until Redis counts them in.
    let mut raws = Vec::new();
    for _ in 0..20 {
        raws.push(connect(&gw, "/ws?channel=left&format=raw").await);
    }
    wait_until("raw clients joined", || async {
        metric(&gw, "redcast_subscriptions").await >= 140.0
    })
    .await;
    let mut conn = redis.conn().await;
    for i in 0..2 * MESSAGES {
        let ch = if i % 2 == 0 { "left" } else { "right" };
        let _: i64 = redis::cmd("PUBLISH")
            .arg(ch)
            .arg(i / 2)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    let want: Vec<i64> = (0..MESSAGES).collect();
    let checks = envelopes.into_iter().map(|mut ws| {
        let want = want.clone();
        async move {
            let (mut left, mut right) = (Vec::new(), Vec::new());
            while left.len() + right.len() < 2 * MESSAGES as usize {
                let m = recv_json(&mut ws).await;
                let n = m["data"].as_i64().unwrap();
                match m["channel"].as_str() {
                    Some("left") => left.push(n),
                    _ => right.push(n),
                }
            }
            assert_eq!((left, right), (want.clone(), want));
        }
    });
    join_all(checks).await;
    for mut ws in raws {
        for n in 0..MESSAGES {
            assert_eq!(
                next_data(&mut ws).await,
                Message::Text(n.to_string().into())
            );
        }
    }
    assert_eq!(
        metric(&gw, "redcast_frames_delivered_total").await,
        (60 * 2 * MESSAGES + 20 * MESSAGES) as f64
    );
}
