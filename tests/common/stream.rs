//! A steady message stream through a topology that is being broken: a
//! task publishes `{"seq":n}` at a fixed pace, another records when each
//! arrives at a client, and the report says how long delivery stopped
//! (the loss window) and what was lost. Both tasks are bounded: the
//! publisher by its stop flag, the receiver by an end marker or DEADLINE.

use super::{Ws, DEADLINE};
use futures_util::StreamExt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use tungstenite::Message;

/// The publishing side.
pub struct Publishing {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Publishing {
    /// Calls `publish(n)` for n = 0, 1, ... every `every` until stopped
    /// (a slow publish, e.g. retried through a failover, delays the next).
    pub fn start<F, Fut>(every: Duration, publish: F) -> Publishing
    where
        F: Fn(u64) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        let (stop, sent) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(0)),
        );
        let (s, n) = (stop.clone(), sent.clone());
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            // After a publish that waited out a failover, go on at the
            // same pace: a burst of catch-up publishes would all land in
            // the moment before redcast resubscribed and inflate the loss.
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            while !s.load(Ordering::SeqCst) {
                tick.tick().await;
                publish(n.load(Ordering::SeqCst)).await;
                n.fetch_add(1, Ordering::SeqCst);
            }
        });
        Publishing { stop, sent, task }
    }

    /// Messages published so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::SeqCst)
    }

    /// Waits until `more` messages were published after this call.
    pub async fn flows(&self, more: u64) {
        let target = self.sent() + more;
        let start = Instant::now();
        while self.sent() < target {
            assert!(
                start.elapsed() < DEADLINE,
                "publishing stalled at {}",
                self.sent()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops; returns how many were published.
    pub async fn stop(self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.unwrap();
        self.sent.load(Ordering::SeqCst)
    }
}

/// The payload of message `n`.
pub fn payload(n: u64) -> String {
    format!("{{\"seq\":{n}}}")
}

/// The end marker: the receiver stops when it sees it.
pub const END: &str = "{\"end\":true}";

/// Records `(seq, arrival)` of every message on `ws` until the end marker.
pub fn receive(mut ws: Ws) -> JoinHandle<Vec<(u64, Instant)>> {
    tokio::spawn(async move {
        let mut got = Vec::new();
        let deadline = Instant::now() + DEADLINE * 8;
        while Instant::now() < deadline {
            let frame = tokio::time::timeout(DEADLINE * 4, ws.next()).await;
            let Ok(Some(Ok(Message::Text(text)))) = frame else {
                match frame {
                    Ok(Some(Ok(_))) => continue,
                    _ => break,
                }
            };
            let v: serde_json::Value = serde_json::from_str(text.as_str()).unwrap();
            if v["data"]["end"] == true {
                break;
            }
            if let Some(n) = v["data"]["seq"].as_u64() {
                got.push((n, Instant::now()));
            }
        }
        got
    })
}

/// What a stream through an outage showed.
#[derive(Debug)]
pub struct Outage {
    /// The longest time between two consecutive deliveries.
    pub window: Duration,
    /// Messages published but never delivered.
    pub lost: u64,
}

/// Checks order and duplicates, prints the loss window, returns it.
pub fn report(what: &str, got: &[(u64, Instant)], published: u64) -> Outage {
    let seqs: Vec<u64> = got.iter().map(|(n, _)| *n).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "{what}: out of order or duplicated: {seqs:?}"
    );
    let window = got
        .windows(2)
        .map(|w| w[1].1 - w[0].1)
        .max()
        .unwrap_or_default();
    let lost = published - got.len() as u64;
    let missing: Vec<u64> = (0..published).filter(|n| !seqs.contains(n)).collect();
    eprintln!(
        "{what}: loss window {} ms (longest gap between deliveries), {lost} of {published} messages lost {missing:?}",
        window.as_millis()
    );
    Outage { window, lost }
}
