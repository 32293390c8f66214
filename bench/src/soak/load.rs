//! The load: a publisher at a fixed rate, and client slots that connect,
//! subscribe, subscribe to one more channel and leave it again, and
//! close, over and over. Every payload is `<phase>:<seq>` with a sequence
//! per channel; phases are odd while Redis is left alone and even around
//! a restart, so a gap in the sequence of one channel within one odd
//! phase is a lost message.

use futures_util::{SinkExt, StreamExt};
use rand::Rng;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

/// Counters shared by every task of the load.
#[derive(Default)]
pub struct Tally {
    /// The current phase (odd: stable; even: a Redis restart is under way).
    pub phase: AtomicU64,
    pub published: AtomicU64,
    pub publish_errors: AtomicU64,
    pub sessions: AtomicU64,
    pub connect_errors: AtomicU64,
    pub delivered: AtomicU64,
    /// Messages missing from a channel's sequence within a stable phase.
    pub lost: AtomicU64,
    pub duplicates: AtomicU64,
}

fn channel_name(i: usize) -> String {
    format!("soak.{i}")
}

/// Publishes `rate` messages per second round-robin over `channels`,
/// reconnecting to Redis whenever it is gone, until `stop`.
pub async fn publish(
    url: String,
    rate: f64,
    channels: usize,
    tally: Arc<Tally>,
    stop: CancellationToken,
) {
    let client = match redis::Client::open(url) {
        Ok(c) => c,
        Err(_) => return,
    };
    let mut seq = vec![0u64; channels];
    let mut failed = vec![0u64; channels];
    let mut conn = None;
    // A reply may be late on a loaded machine: only a dead link fails.
    let config =
        redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(10)));
    let tick = Duration::from_millis(10);
    let per_tick = rate * tick.as_secs_f64();
    let mut owed = 0.0;
    let mut next = 0usize;
    let mut timer = tokio::time::interval(tick);
    while !stop.is_cancelled() {
        timer.tick().await;
        owed += per_tick;
        while owed >= 1.0 {
            owed -= 1.0;
            if conn.is_none() {
                conn = client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
                    .ok();
            }
            let c = next % channels;
            next += 1;
            seq[c] += 1;
            let phase = tally.phase.load(Ordering::SeqCst);
            let payload = format!("{phase}:{}:{}", seq[c], failed[c]);
            let Some(link) = conn.as_mut() else {
                failed[c] += 1;
                tally.publish_errors.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            let r: redis::RedisResult<i64> = redis::cmd("PUBLISH")
                .arg(channel_name(c))
                .arg(payload)
                .query_async(link)
                .await;
            match r {
                Ok(_) => tally.published.fetch_add(1, Ordering::Relaxed),
                Err(_) => {
                    conn = None;
                    failed[c] += 1;
                    tally.publish_errors.fetch_add(1, Ordering::Relaxed)
                }
            };
        }
    }
}

/// What one client slot does.
#[derive(Clone, Copy)]
pub struct Slot {
    pub ws: SocketAddr,
    pub channels: usize,
    pub hold_min: Duration,
    pub hold_max: Duration,
}

/// Runs sessions one after another until `stop`.
pub async fn client(slot: Slot, tally: Arc<Tally>, stop: CancellationToken) {
    while !stop.is_cancelled() {
        if session(slot, &tally, &stop).await.is_err() {
            tally.connect_errors.fetch_add(1, Ordering::Relaxed);
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
        }
    }
}

/// One connection: subscribe by URL, add a channel, drop it, close.
async fn session(slot: Slot, tally: &Tally, stop: &CancellationToken) -> anyhow::Result<()> {
    let (main, extra, hold) = {
        let mut rng = rand::rng();
        let hold = rng.random_range(slot.hold_min..=slot.hold_max);
        (
            rng.random_range(0..slot.channels),
            rng.random_range(0..slot.channels),
            hold,
        )
    };
    let url = format!("ws://{}/ws?channel={}", slot.ws, channel_name(main));
    let (mut ws, _) = tokio::time::timeout(
        Duration::from_secs(15),
        tokio_tungstenite::connect_async(url),
    )
    .await??;
    tally.sessions.fetch_add(1, Ordering::Relaxed);
    let extra = channel_name(extra);
    let start = tokio::time::Instant::now();
    let requests = [
        (
            hold / 3,
            format!(r#"{{"type":"subscribe","channels":["{extra}"]}}"#),
        ),
        (
            hold * 2 / 3,
            format!(r#"{{"type":"unsubscribe","channels":["{extra}"]}}"#),
        ),
    ];
    let mut sent = 0;
    let mut seen: HashMap<String, Mark> = HashMap::new();
    let end = start + hold;
    loop {
        let due = requests.get(sent).map_or(end, |(at, _)| start + *at);
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep_until(due) => {
                let Some((_, text)) = requests.get(sent) else { break };
                ws.send(Message::Text(text.clone().into())).await?;
                sent += 1;
            }
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(t))) => note(&t, &mut seen, tally),
                Some(Ok(_)) => {}
                _ => anyhow::bail!("connection ended early"),
            },
        }
    }
    let _ = ws.close(None).await;
    let drain = async { while let Some(Ok(_)) = ws.next().await {} };
    let _ = tokio::time::timeout(Duration::from_secs(5), drain).await;
    Ok(())
}

/// Checks one frame's place in its channel's sequence.
fn note(text: &str, seen: &mut HashMap<String, Mark>, tally: &Tally) {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else {
        return;
    };
    match v["type"].as_str() {
        Some("message") => {}
        // Leaving a channel ends its sequence: a later subscription starts anew.
        Some("unsubscribed") => {
            for c in v["channels"].as_array().into_iter().flatten() {
                seen.remove(c.as_str().unwrap_or_default());
            }
            return;
        }
        _ => return,
    }
    tally.delivered.fetch_add(1, Ordering::Relaxed);
    let channel = v["channel"].as_str().unwrap_or_default().to_string();
    let data = v["data"].as_str().unwrap_or_default();
    let mut fields = data.split(':').map(|f| f.parse::<u64>().ok());
    let (Some(Some(phase)), Some(Some(seq)), Some(Some(failed))) =
        (fields.next(), fields.next(), fields.next())
    else {
        return;
    };
    let now = Mark { phase, seq, failed };
    if let Some(last) = seen.get(&channel) {
        if last.phase == phase && phase % 2 == 1 {
            // Messages the publisher failed to send are not redcast's loss.
            let unsent = failed.saturating_sub(last.failed);
            if seq <= last.seq {
                tally.duplicates.fetch_add(1, Ordering::Relaxed);
            } else if seq > last.seq + 1 + unsent {
                tally
                    .lost
                    .fetch_add(seq - last.seq - 1 - unsent, Ordering::Relaxed);
            }
        }
    }
    seen.insert(channel, now);
}

/// Where a channel's sequence stood at the last message seen.
pub struct Mark {
    phase: u64,
    seq: u64,
    failed: u64,
}
