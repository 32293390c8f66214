//! Durable channels over SSE: every event with a position carries an
//! `id:` naming the positions of all durable channels of the stream, and
//! `Last-Event-ID` (or `?last_event_id=`) resumes them all or nothing;
//! plus the library's own code paths through a real Redis.

mod common;

use common::durable::{fcall, library_loaded, rules};
use common::sse::SseClient;
use common::*;
use serde_json::{json, Value};

/// The next event block's id line (if any) and data.
async fn event(s: &mut SseClient) -> (Option<String>, Value) {
    let block = tokio::time::timeout(DEADLINE, s.next_block())
        .await
        .unwrap()
        .unwrap();
    let id = block
        .lines()
        .find_map(|l| l.strip_prefix("id: "))
        .map(str::to_string);
    let data: String = block
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    (id, serde_json::from_str(&data).unwrap_or(Value::Null))
}

/// The next event that carries data (skips `retry:` and comments).
async fn data_event(s: &mut SseClient) -> (Option<String>, Value) {
    loop {
        let e = event(s).await;
        if !e.1.is_null() {
            return e;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_event_id_resumes_every_durable_channel_of_the_stream() {
    let redis = Redis::start();
    let rules = rules(100, "10m");
    let gw = gateway(&redis, &[("REDCAST_CHANNELS__RULES", &rules)]).await;
    library_loaded(&redis).await;
    let path = "/sse?channel=d.a&channel=d.b&channel=p.c";
    let mut s = SseClient::open(gw.ws_addr, path, &[]).await;
    let (id, ack) = data_event(&mut s).await;
    assert_eq!(ack["type"], "subscribed", "{ack}");
    let epoch_a = ack["positions"]["d.a"]["epoch"]
        .as_str()
        .unwrap()
        .to_string();
    let epoch_b = ack["positions"]["d.b"]["epoch"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(id.unwrap(), format!("d.a=0%3A{epoch_a}&d.b=0%3A{epoch_b}"));
    fcall(&redis, "d.a", "1").await;
    let (id, m) = data_event(&mut s).await;
    assert_eq!(m["offset"], 1);
    assert_eq!(
        id.clone().unwrap(),
        format!("d.a=1%3A{epoch_a}&d.b=0%3A{epoch_b}")
    );
    drop(s);
    // Missed while away: two on d.a, one on d.b.
    fcall(&redis, "d.a", "2").await;
    fcall(&redis, "d.a", "3").await;
    fcall(&redis, "d.b", "1").await;
    let last = id.unwrap();
    let mut s = SseClient::open(gw.ws_addr, path, &[("Last-Event-ID", &last)]).await;
    let (_, ack) = data_event(&mut s).await;
    assert_eq!(ack["recovered"], json!({"d.a": true, "d.b": true}), "{ack}");
    let mut got = Vec::new();
    for _ in 0..3 {
        let (_, m) = data_event(&mut s).await;
        got.push((
            m["channel"].as_str().unwrap().to_string(),
            m["offset"].as_u64().unwrap(),
        ));
    }
    got.sort();
    assert_eq!(
        got,
        [("d.a".into(), 2), ("d.a".into(), 3), ("d.b".to_string(), 1)]
    );
    // The same answer through the query parameter; a stale epoch is
    // refused whole (no history sent), the others recovered.
    let stale = format!("d.a=1%3Aother&d.b=1%3A{epoch_b}");
    let q = form_urlencoded::byte_serialize(stale.as_bytes()).collect::<String>();
    let mut s = SseClient::open(gw.ws_addr, &format!("{path}&last_event_id={q}"), &[]).await;
    let (_, ack) = data_event(&mut s).await;
    assert_eq!(
        ack["recovered"],
        json!({"d.a": false, "d.b": true}),
        "{ack}"
    );
    fcall(&redis, "d.a", "4").await;
    assert_eq!(data_event(&mut s).await.1["offset"], 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_last_event_id_is_a_bad_request() {
    let redis = Redis::start();
    let rules = rules(100, "10m");
    let gw = gateway(&redis, &[("REDCAST_CHANNELS__RULES", &rules)]).await;
    for bad in ["d.a=x", "d.a=1%3A", "d.a=1%3Ab%20c"] {
        let s = SseClient::open(gw.ws_addr, "/sse?channel=d.a", &[("Last-Event-ID", bad)]).await;
        assert_eq!(s.status, 400, "{bad}");
    }
    let s = SseClient::open(gw.ws_addr, "/sse?channel=d.a&last_event_id=zz", &[]).await;
    assert_eq!(s.status, 400);
    // Nothing else was disturbed.
    let s = SseClient::open(gw.ws_addr, "/sse?channel=d.a", &[]).await;
    assert_eq!(s.status, 200);
}
