//! Fan-out on every core: sessions are split into shards (one per runtime
//! worker thread, by session id), and each shard is a task that queues
//! the messages of its own sessions and writes their sockets.
//!
//! A feed looks each Redis message up in the hub, encodes its frame once
//! per format ([`Outgoing`], shared by every shard), and adds a [`Job`] to
//! the plan of each shard with subscribers on that channel. After a burst
//! (every message the feed had at hand) it hands each shard its share as
//! one [`Burst`]. The shard pushes each job into its subscribers' outboxes
//! and, after the burst (and any bursts that queued behind it), writes
//! each touched direct-mode outbox once: one write per client per burst,
//! several frames per write under load, no task wake-up per delivery. A
//! client belongs to one shard, and a shard handles bursts in the order
//! the feed sent them, so per-client order holds.
//!
//! Limits: each shard's queue holds at most [`SHARD_QUEUE_BURSTS`] bursts
//! of at most [`crate::broker::MAX_BATCH`] messages. Overflow policy: a
//! feed that finds a shard's queue full waits for room (counted in
//! `redcast_fanout_waits_total`), so it stops reading Redis and the
//! back-pressure lands on its pub/sub connection, exactly as when one task
//! wrote every socket itself. Per-client limits stay in the outboxes.

use crate::history::Position;
use crate::hub::{Format, Part};
use crate::metrics::Metrics;
use crate::outbox::{Outbox, Outgoing, Push};
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Bursts waiting per shard before a feed waits for room.
pub const SHARD_QUEUE_BURSTS: usize = 64;

/// Bursts a shard takes from its queue before it writes: bounds the delay
/// a backlog adds to the first message of the first burst.
const MAX_BURSTS_PER_WRITE: usize = 16;

/// One message for one shard's part of a channel.
pub struct Job {
    /// The channel's subscribers, one part per shard.
    pub parts: Arc<[Part]>,
    /// The envelope frame, when the channel has envelope subscribers.
    pub envelope: Option<Arc<Outgoing>>,
    /// The raw frame, when the channel has raw subscribers.
    pub raw: Option<Arc<Outgoing>>,
    /// Durable channels: the message's position, for subscribers' gates.
    pub position: Option<Position>,
    /// When the message arrived from Redis.
    pub received: Instant,
}

/// A shard's share of one burst of messages, in arrival order.
pub type Burst = Vec<Job>;

/// What a feed builds during a burst: one list of jobs per shard.
pub struct Plan {
    per_shard: Vec<Burst>,
}

impl Plan {
    /// Adds a job for shard `shard`.
    pub fn add(&mut self, shard: usize, job: Job) {
        if let Some(list) = self.per_shard.get_mut(shard) {
            list.push(job);
        }
    }
}

/// The sending side of every shard's queue.
pub struct Shards {
    queues: Vec<mpsc::Sender<Burst>>,
    metrics: Arc<Metrics>,
}

/// The receiving side of one shard, for [`run_shard`].
pub struct ShardQueue {
    index: usize,
    queue: mpsc::Receiver<Burst>,
}

impl Shards {
    /// `count` shards (at least one) and their queues.
    pub fn new(count: usize, metrics: Arc<Metrics>) -> (Shards, Vec<ShardQueue>) {
        let (queues, receivers): (Vec<_>, Vec<_>) = (0..count.max(1))
            .map(|index| {
                let (tx, rx) = mpsc::channel(SHARD_QUEUE_BURSTS);
                (tx, ShardQueue { index, queue: rx })
            })
            .unzip();
        (Shards { queues, metrics }, receivers)
    }

    /// How many shards there are.
    pub fn count(&self) -> usize {
        self.queues.len()
    }

    /// The shard that serves session `id`.
    pub fn of(&self, id: u64) -> usize {
        (id % self.queues.len() as u64) as usize
    }

    /// An empty plan for one burst.
    pub fn plan(&self) -> Plan {
        Plan {
            per_shard: (0..self.queues.len()).map(|_| Vec::new()).collect(),
        }
    }

    /// Hands each shard its share of the burst; waits while a shard's
    /// queue is full (see the module docs). A stopped shard's share is
    /// dropped: the process is shutting down.
    pub async fn dispatch(&self, plan: &mut Plan) {
        for (queue, jobs) in self.queues.iter().zip(plan.per_shard.iter_mut()) {
            if jobs.is_empty() {
                continue;
            }
            let burst = std::mem::take(jobs);
            match queue.try_send(burst) {
                Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
                Err(mpsc::error::TrySendError::Full(burst)) => {
                    self.metrics.fanout_waits.inc();
                    let _ = queue.send(burst).await;
                }
            }
        }
    }
}

/// Runs one shard until `stop`: queues each burst into its sessions'
/// outboxes, then writes each touched direct-mode outbox once.
pub async fn run_shard(mut shard: ShardQueue, metrics: Arc<Metrics>, stop: CancellationToken) {
    let mut dirty: Vec<Arc<Outbox>> = Vec::new();
    loop {
        let first = tokio::select! {
            _ = stop.cancelled() => return,
            b = shard.queue.recv() => b,
        };
        let Some(first) = first else { return };
        let mut tally = Tally::default();
        let oldest = first.first().map(|j| j.received);
        tally.burst(shard.index, first, &mut dirty);
        // Bursts that queued while this shard was busy go out in the same
        // writes: under load a client gets several frames per write.
        for _ in 1..MAX_BURSTS_PER_WRITE {
            let Ok(next) = shard.queue.try_recv() else {
                break;
            };
            tally.burst(shard.index, next, &mut dirty);
        }
        dirty.drain(..).for_each(|outbox| outbox.flush_now());
        tally.record(&metrics);
        if let Some(received) = oldest {
            // One observation per write round: until its oldest message
            // was written (direct) or queued for the client's writer.
            let waited = received.elapsed().as_secs_f64();
            metrics.delivery_latency.0.observe(waited);
        }
    }
}

/// Deliveries counted over one write round, added to the metrics once.
#[derive(Default)]
struct Tally {
    queued: u64,
    slow: u64,
    bytes: u64,
}

impl Tally {
    fn burst(&mut self, shard: usize, burst: Burst, dirty: &mut Vec<Arc<Outbox>>) {
        for job in burst {
            let Some(part) = job.parts.get(shard) else {
                continue;
            };
            let subscribers = part.lock();
            for member in subscribers.values() {
                let msg = match member.format {
                    Format::Envelope => job.envelope.as_deref(),
                    Format::Raw => job.raw.as_deref(),
                };
                let Some(msg) = msg else { continue };
                // A durable channel's joining subscriber may hold it.
                if let Some(gate) = &member.gate {
                    if !gate.admit(job.position.as_ref(), &msg.frame) {
                        continue;
                    }
                }
                self.push(&member.outbox, msg, job.received, dirty);
            }
        }
    }

    fn push(
        &mut self,
        outbox: &Arc<Outbox>,
        msg: &Outgoing,
        received: Instant,
        dirty: &mut Vec<Arc<Outbox>>,
    ) {
        match outbox.push_message(msg, received) {
            (Push::Queued, first) => {
                self.queued += 1;
                self.bytes += msg.frame.len() as u64;
                if first {
                    dirty.push(outbox.clone());
                }
            }
            (Push::Overflow, _) => self.slow += 1,
            (Push::Closed, _) => {}
        }
    }

    fn record(&self, metrics: &Metrics) {
        metrics.frames_delivered.inc_by(self.queued);
        metrics.bytes_out.inc_by(self.bytes);
        metrics.slow_consumers.inc_by(self.slow);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_shard_queue_makes_the_feed_wait_and_counts_it() {
        let metrics = Arc::new(Metrics::default());
        let (shards, mut queues) = Shards::new(1, metrics.clone());
        let job = || Job {
            parts: Arc::from(Vec::new()),
            envelope: None,
            raw: None,
            position: None,
            received: Instant::now(),
        };
        for _ in 0..SHARD_QUEUE_BURSTS {
            let mut plan = shards.plan();
            plan.add(0, job());
            shards.dispatch(&mut plan).await;
        }
        assert_eq!(metrics.fanout_waits.get(), 0);
        let mut plan = shards.plan();
        plan.add(0, job());
        let waiting = shards.dispatch(&mut plan);
        tokio::pin!(waiting);
        assert!(futures_util::FutureExt::now_or_never(waiting.as_mut()).is_none());
        assert_eq!(metrics.fanout_waits.get(), 1);
        // The shard takes one burst: the feed goes on.
        assert!(queues[0].queue.recv().await.is_some());
        waiting.await;
        assert_eq!(shards.of(7), 0);
    }
}
