//! The hub: which local sessions listen to which channel.
//!
//! It is the single source of truth for what Redis should be subscribed
//! to. Sessions add and remove themselves; every change marks the channel
//! dirty and wakes the broker, which reconciles Redis with the hub
//! (SUBSCRIBE on a first subscriber, UNSUBSCRIBE after the last) and then
//! calls [`Hub::confirm`]. For each Redis message the broker calls
//! [`Hub::publish`], which encodes the frame once per format and plans a
//! job for each fan-out shard with subscribers on the channel; the shards
//! push the shared bytes into their subscribers' [`Outbox`]es
//! ([`crate::fanout`]).
//!
//! Limits: channels per session are capped by `client.max_subscriptions`
//! and sessions by `server.max_connections`, so the map is bounded by
//! their product; an entry is removed as soon as its last subscriber goes.

use crate::fanout::{Job, Plan, Shards};
use crate::metrics::Metrics;
use crate::outbox::{Outbox, Outgoing};
use crate::protocol;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use tokio::sync::Notify;
use tokio::time::Instant;

/// Identifies one session in the hub.
pub type SessionId = u64;

/// How a subscriber wants its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `{"type":"message","channel":..,"data":..}` envelopes.
    Envelope,
    /// The payload verbatim, nothing else.
    Raw,
}

/// A `subscribed` acknowledgement waiting for Redis to confirm channels.
struct PendingAck {
    /// Raw-mode sessions get no acks (nothing but payloads).
    send: bool,
    id: Option<String>,
    channels: Vec<String>,
    remaining: AtomicUsize,
    outbox: Arc<Outbox>,
}

impl PendingAck {
    fn complete_one(&self) {
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 && self.send {
            self.outbox.push(protocol::encode_subscribed(
                self.id.as_deref(),
                &self.channels,
            ));
        }
    }
}

/// One shard's subscribers of a channel: the hub changes it under its
/// own lock, the shard reads it while queueing a message.
#[derive(Default)]
pub struct Part(Mutex<HashMap<SessionId, (Arc<Outbox>, Format)>>);

impl Part {
    /// The subscribers (a poisoned lock still holds a consistent map).
    pub fn lock(&self) -> MutexGuard<'_, HashMap<SessionId, (Arc<Outbox>, Format)>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

struct Channel {
    /// Subscribers, one part per fan-out shard.
    parts: Arc<[Part]>,
    /// Subscribers per part, kept under the hub's lock so that a message
    /// goes only to the shards that have some.
    sizes: Vec<usize>,
    /// Subscribers per format: which frames a message needs.
    envelope: usize,
    raw: usize,
    confirmed: bool,
    waiters: Vec<Arc<PendingAck>>,
}

impl Channel {
    fn new(shards: usize) -> Self {
        Self {
            parts: (0..shards).map(|_| Part::default()).collect(),
            sizes: vec![0; shards],
            envelope: 0,
            raw: 0,
            confirmed: false,
            waiters: Vec::new(),
        }
    }

    fn count(&mut self, shard: usize, format: Format, added: bool) {
        let step = |n: &mut usize| {
            *n = if added { *n + 1 } else { n.saturating_sub(1) };
        };
        if let Some(size) = self.sizes.get_mut(shard) {
            step(size);
        }
        match format {
            Format::Envelope => step(&mut self.envelope),
            Format::Raw => step(&mut self.raw),
        }
    }

    fn insert(
        &mut self,
        shard: usize,
        session: SessionId,
        outbox: &Arc<Outbox>,
        format: Format,
    ) -> bool {
        let Some(part) = self.parts.get(shard) else {
            return false;
        };
        let old = part.lock().insert(session, (outbox.clone(), format));
        if let Some((_, was)) = old {
            self.count(shard, was, false);
        }
        self.count(shard, format, true);
        old.is_none()
    }

    fn remove(&mut self, shard: usize, session: SessionId) -> bool {
        let old = self
            .parts
            .get(shard)
            .and_then(|p| p.lock().remove(&session));
        let Some((_, format)) = old else { return false };
        self.count(shard, format, false);
        true
    }

    fn is_empty(&self) -> bool {
        self.envelope + self.raw == 0
    }
}

/// A session's request to join channels.
pub struct Join<'a> {
    pub session: SessionId,
    pub outbox: &'a Arc<Outbox>,
    pub format: Format,
    /// Channels to join; ones the session already has are kept as they are,
    /// but the ack still waits until Redis has confirmed every one.
    pub channels: Vec<String>,
    /// The request id, echoed in the ack.
    pub id: Option<String>,
}

/// Channels whose Redis subscription may need changing, and a wake-up
/// for whoever brings Redis in line: the hub has one (its consumer is the
/// broker), and so has each cluster feed (filled by the cluster's router).
/// Bounded by the channels the hub holds.
#[derive(Default)]
pub struct Inbox {
    dirty: Mutex<HashSet<String>>,
    /// Everything the consumer holds must be looked at again (the cluster
    /// topology changed).
    recheck: AtomicBool,
    wake: Notify,
}

impl Inbox {
    /// Adds channels and wakes the consumer.
    pub fn mark<I: IntoIterator<Item = String>>(&self, channels: I) {
        let mut d = self.dirty.lock().unwrap_or_else(|e| e.into_inner());
        let before = d.len();
        d.extend(channels);
        let grew = d.len() > before;
        drop(d);
        if grew {
            self.wake.notify_one();
        }
    }

    /// Asks the consumer to look at everything it holds again.
    pub fn mark_all(&self) {
        self.recheck.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    /// Takes the marked channels, and whether everything needs a look.
    pub fn take(&self) -> (HashSet<String>, bool) {
        let d = std::mem::take(&mut *self.dirty.lock().unwrap_or_else(|e| e.into_inner()));
        (d, self.recheck.swap(false, Ordering::AcqRel))
    }

    /// Resolves when something was marked.
    pub async fn changed(&self) {
        self.wake.notified().await
    }
}

/// Channel to local subscribers map, shared by sessions and the broker.
pub struct Hub {
    channels: RwLock<HashMap<String, Channel>>,
    changes: Arc<Inbox>,
    unconfirmed: AtomicUsize,
    metrics: Arc<Metrics>,
    shards: Shards,
}

impl Hub {
    /// An empty hub whose messages go out through `shards`.
    pub fn new(metrics: Arc<Metrics>, shards: Shards) -> Self {
        Self {
            channels: RwLock::default(),
            changes: Arc::default(),
            unconfirmed: AtomicUsize::new(0),
            metrics,
            shards,
        }
    }

    /// Adds a session to channels; the ack is queued once all are confirmed.
    pub fn subscribe(&self, join: Join<'_>) {
        let mut created = Vec::new();
        let mut added = 0;
        // One extra count, released below, so the ack cannot fire early.
        let remaining = AtomicUsize::new(1);
        let mut waiting_on = Vec::new();
        let shard = self.shards.of(join.session);
        {
            let mut map = self.write();
            for name in &join.channels {
                let entry = map.entry(name.clone()).or_insert_with(|| {
                    created.push(name.clone());
                    self.unconfirmed.fetch_add(1, Ordering::Relaxed);
                    Channel::new(self.shards.count())
                });
                added += entry.insert(shard, join.session, join.outbox, join.format) as i64;
                if !entry.confirmed {
                    remaining.fetch_add(1, Ordering::Relaxed);
                    waiting_on.push(name.clone());
                }
            }
            self.metrics.channels_active.set(map.len() as i64);
        }
        let ack = Arc::new(PendingAck {
            send: join.format == Format::Envelope,
            id: join.id,
            channels: join.channels,
            remaining,
            outbox: join.outbox.clone(),
        });
        self.add_waiters(&waiting_on, &ack);
        self.metrics.subscriptions.inc_by(added);
        self.mark_dirty(created);
        ack.complete_one();
    }

    /// Registers `ack` on channels that were unconfirmed a moment ago; a
    /// channel confirmed (or removed) in between releases its count now.
    fn add_waiters(&self, channels: &[String], ack: &Arc<PendingAck>) {
        let mut map = self.write();
        for name in channels {
            match map.get_mut(name) {
                Some(entry) if !entry.confirmed => entry.waiters.push(ack.clone()),
                _ => ack.complete_one(),
            }
        }
    }

    /// Removes a session from channels it had joined.
    pub fn unsubscribe(&self, session: SessionId, channels: &[String]) {
        let mut emptied = Vec::new();
        let mut removed = 0;
        let shard = self.shards.of(session);
        {
            let mut map = self.write();
            for name in channels {
                let Some(entry) = map.get_mut(name) else {
                    continue;
                };
                removed += entry.remove(shard, session) as i64;
                if entry.is_empty() {
                    if let Some(entry) = map.remove(name) {
                        self.drop_channel(entry);
                    }
                    emptied.push(name.clone());
                }
            }
            self.metrics.channels_active.set(map.len() as i64);
        }
        self.metrics.subscriptions.dec_by(removed);
        self.mark_dirty(emptied);
    }

    fn drop_channel(&self, entry: Channel) {
        if !entry.confirmed {
            self.unconfirmed.fetch_sub(1, Ordering::Relaxed);
        }
        // Nobody is left to read these acks, but release them anyway.
        entry.waiters.iter().for_each(|w| w.complete_one());
    }

    /// Plans one Redis message's fan-out: each format its subscribers
    /// need is encoded once, and every shard with subscribers on the
    /// channel gets a job in `plan` (see [`crate::fanout`]).
    pub fn publish(&self, channel: &str, payload: &[u8], received: Instant, plan: &mut Plan) {
        let map = self.read();
        let Some(entry) = map.get(channel) else {
            return;
        };
        let envelope = (entry.envelope > 0)
            .then(|| Arc::new(Outgoing::new(protocol::encode_message(channel, payload))));
        let raw = (entry.raw > 0).then(|| Arc::new(Outgoing::new(protocol::encode_raw(payload))));
        for (shard, _) in entry.sizes.iter().enumerate().filter(|(_, n)| **n > 0) {
            let job = Job {
                parts: entry.parts.clone(),
                envelope: envelope.clone(),
                raw: raw.clone(),
                received,
            };
            plan.add(shard, job);
        }
    }

    /// An empty plan for a burst of messages.
    pub fn plan(&self) -> Plan {
        self.shards.plan()
    }

    /// Hands a burst's plan to the shards, which write it out.
    pub async fn dispatch(&self, plan: &mut Plan) {
        self.shards.dispatch(plan).await
    }

    /// Marks channels as subscribed in Redis and releases their acks.
    pub fn confirm(&self, channels: &[String]) {
        let mut acks = Vec::new();
        {
            let mut map = self.write();
            for name in channels {
                let Some(entry) = map.get_mut(name) else {
                    continue;
                };
                if !entry.confirmed {
                    entry.confirmed = true;
                    self.unconfirmed.fetch_sub(1, Ordering::Relaxed);
                }
                acks.append(&mut entry.waiters);
            }
        }
        acks.iter().for_each(|a| a.complete_one());
    }

    /// After a pub/sub connection is lost (or Redis dropped a
    /// subscription): these channels are not confirmed any more.
    pub fn unconfirm<'a>(&self, channels: impl IntoIterator<Item = &'a String>) {
        let mut map = self.write();
        for name in channels {
            if let Some(entry) = map.get_mut(name) {
                if entry.confirmed {
                    entry.confirmed = false;
                    self.unconfirmed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Whether the channel has local subscribers (what Redis should have).
    pub fn wants(&self, channel: &str) -> bool {
        self.read().contains_key(channel)
    }

    /// Every channel with local subscribers.
    pub fn channel_names(&self) -> Vec<String> {
        self.read().keys().cloned().collect()
    }

    /// Channels with subscribers that Redis has not confirmed yet.
    pub fn unconfirmed(&self) -> usize {
        self.unconfirmed.load(Ordering::Relaxed)
    }

    /// Channels whose Redis state may need changing (created or emptied).
    pub fn changes(&self) -> &Arc<Inbox> {
        &self.changes
    }

    fn mark_dirty(&self, channels: Vec<String>) {
        if !channels.is_empty() {
            self.changes.mark(channels);
        }
    }

    // A poisoned lock means a panic mid-update elsewhere; the map itself
    // is still consistent per entry, so keep serving rather than crash.
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Channel>> {
        self.channels.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Channel>> {
        self.channels.write().unwrap_or_else(|e| e.into_inner())
    }
}
