//! A PUBLISH on a Redis channel reaches every WebSocket subscriber of it,
//! once, in order, encoded as documented; Redis holds one subscription per
//! channel per process, released after the last subscriber.

mod common;

use common::*;
use serde_json::json;
use tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_message_reaches_subscriber_as_envelope() {
    let redis = Redis::start();
    let gw = gateway(&redis, &[]).await;
    let mut ws = subscribed_client(&gw, &["news"]).await;
    assert_eq!(redis.publish("news", r#"{"hello":"world"}"#).await, 1);
    assert_eq!(
        recv_json(&mut ws).await,
        json!({"type":"message","channel":"news","data":{"hello":"world"}})
    );
    redis.publish("news", "plain text").await;
    assert_eq!(
        recv_json(&mut ws).await,
        json!({"type":"message","channel":"news","data":"plain text"})
    );
    redis.publish("news", "42").await;
    assert_eq!(recv_json(&mut ws).await["data"], json!(42));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_frame_is_acked_with_id_after_redis_confirms() {
    let redis = Redis::start();
    let gw = gateway(&redis, &[]).await;
    let mut ws = connect(&gw, "/ws").await;
    send_json(
        &mut ws,
        json!({"type":"subscribe","channels":["a","b","a"],"id":"1"}),
    )
    .await;
    assert_eq!(
        recv_json(&mut ws).await,
        json!({"type":"subscribed","id":"1","channels":["a","b"]})
    );
    // The ack means Redis has the subscription now.
    assert_eq!(redis.numsub("a").await, 1);
    assert_eq!(redis.numsub("b").await, 1);
    redis.publish("b", "\"x\"").await;
    assert_eq!(
        recv_json(&mut ws).await,
        json!({"type":"message","channel":"b","data":"x"})
    );
    send_json(&mut ws, json!({"type":"ping","id":"3"})).await;
    assert_eq!(recv_json(&mut ws).await, json!({"type":"pong","id":"3"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_redis_subscription_per_channel_released_after_last_leaves() {
    let redis = Redis::start();
    let gw = gateway(&redis, &[]).await;
    let mut a = subscribed_client(&gw, &["shared"]).await;
    let mut b = subscribed_client(&gw, &["shared"]).await;
    assert_eq!(
        redis.numsub("shared").await,
        1,
        "one pub/sub connection per process"
    );
    assert_eq!(redis.publish("shared", "1").await, 1);
    assert_eq!(recv_json(&mut a).await["data"], json!(1));
    assert_eq!(recv_json(&mut b).await["data"], json!(1));

    send_json(
        &mut a,
        json!({"type":"unsubscribe","channels":["shared"],"id":"u"}),
    )
    .await;
    assert_eq!(
        recv_json(&mut a).await,
        json!({"type":"unsubscribed","id":"u","channels":["shared"]})
    );
    assert_eq!(redis.numsub("shared").await, 1, "b still listens");
    redis.publish("shared", "2").await;
    assert_eq!(recv_json(&mut b).await["data"], json!(2));

    drop(b); // vanishes without a close frame
    wait_until(
        "redis unsubscribed after the last subscriber left",
        || async { redis.numsub("shared").await == 0 },
    )
    .await;
    wait_until("hub map emptied", || async {
        metric(&gw, "redcast_channels_active").await == 0.0
    })
    .await;
    assert_eq!(metric(&gw, "redcast_subscriptions").await, 0.0);
    // a is still connected and no longer receives anything for `shared`.
    send_json(&mut a, json!({"type":"ping"})).await;
    assert_eq!(recv_json(&mut a).await, json!({"type":"pong"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_subscriber_gets_every_message_once_in_order() {
    every_message_once_in_order(&[]).await;
}

/// The same with `server.direct_writes` off: plain TCP through the
/// session's writer task, as TLS connections always are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_once_in_order_without_direct_writes() {
    every_message_once_in_order(&[("REDCAST_SERVER__DIRECT_WRITES", "false")]).await;
}

async fn every_message_once_in_order(env: &[(&str, &str)]) {
    let redis = Redis::start();
    let gw = gateway(&redis, env).await;
    let mut clients = Vec::new();
    for _ in 0..5 {
        clients.push(subscribed_client(&gw, &["seq", "other"]).await);
    }
    let mut conn = redis.conn().await;
    for i in 0..2000 {
        let ch = if i % 3 == 0 { "other" } else { "seq" };
        let _: i64 = redis::cmd("PUBLISH")
            .arg(ch)
            .arg(i)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    for ws in &mut clients {
        let (mut seq, mut other) = (Vec::new(), Vec::new());
        while seq.len() + other.len() < 2000 {
            let m = recv_json(ws).await;
            let n = m["data"].as_i64().unwrap();
            if m["channel"] == "seq" {
                seq.push(n)
            } else {
                other.push(n)
            }
        }
        let want_seq: Vec<i64> = (0..2000).filter(|i| i % 3 != 0).collect();
        let want_other: Vec<i64> = (0..2000).filter(|i| i % 3 == 0).collect();
        assert_eq!(seq, want_seq);
        assert_eq!(other, want_other);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_mode_sends_payload_verbatim_text_or_binary() {
    let redis = Redis::start();
    let gw = gateway(&redis, &[]).await;
    let mut ws = connect(&gw, "/ws?channel=raw&format=raw").await;
    wait_until("subscribed in redis", || async {
        redis.numsub("raw").await == 1
    })
    .await;
    redis.publish("raw", r#"{"a":1}"#).await;
    assert_eq!(next_data(&mut ws).await, Message::Text(r#"{"a":1}"#.into()));
    redis.publish("raw", vec![0xffu8, 0x00, 0x01]).await;
    assert_eq!(
        next_data(&mut ws).await,
        Message::Binary(vec![0xffu8, 0x00, 0x01].into())
    );
    redis.publish("raw", "not json").await;
    assert_eq!(next_data(&mut ws).await, Message::Text("not json".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_prefix_maps_names_to_redis_channels() {
    let redis = Redis::start();
    let gw = gateway(&redis, &[("REDCAST_REDIS__CHANNEL_PREFIX", "app:")]).await;
    let mut ws = subscribed_client(&gw, &["orders"]).await;
    assert_eq!(redis.numsub("app:orders").await, 1);
    assert_eq!(
        redis.publish("orders", "1").await,
        0,
        "unprefixed channel is not ours"
    );
    redis.publish("app:orders", "2").await;
    assert_eq!(
        recv_json(&mut ws).await,
        json!({"type":"message","channel":"orders","data":2})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_payload_becomes_a_json_string() {
    let redis = Redis::start();
    let gw = gateway(&redis, &[]).await;
    let mut ws = subscribed_client(&gw, &["bin"]).await;
    redis.publish("bin", vec![b'a', 0xff]).await;
    assert_eq!(recv_json(&mut ws).await["data"], json!("a\u{fffd}"));
}

/// When Redis has already confirmed the URL's channels, their `subscribed`
/// ack leaves together with the 101 (held with MSG_MORE, pushed by the
/// session's setup): the client's first read holds both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_ack_leaves_together_with_the_upgrade_response() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let redis = Redis::start();
    let gw = gateway(&redis, &[]).await;
    // Redis now holds `warm`: the next subscriber is acked at once.
    let _first = subscribed_client(&gw, &["warm"]).await;
    let mut stream = tokio::net::TcpStream::connect(gw.ws_addr).await.unwrap();
    let req = format!(
        "GET /ws?channel=warm HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\n\r\n",
        gw.ws_addr,
        common::raw::KEY
    );
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(DEADLINE, stream.read(&mut buf))
        .await
        .expect("a response")
        .unwrap();
    let got = &buf[..n];
    assert!(
        got.starts_with(b"HTTP/1.1 101"),
        "{:?}",
        String::from_utf8_lossy(got)
    );
    let end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let frame = &got[end..];
    assert!(frame.len() > 2, "the ack came in the same read: {frame:?}");
    assert_eq!(frame[0], 0x81, "one final text frame");
    let text = String::from_utf8_lossy(&frame[2..]);
    assert!(text.contains(r#""type":"subscribed""#), "{text}");
}
